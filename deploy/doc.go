// Package deploy holds vxland's deployment files and the tests that check
// them against the daemon they deploy: the Kubernetes manifest
// (kube-vxland.yml), the systemd units and their env files
// (contrib/systemd), `make install`, the static build that the Dockerfile
// ships, and the paths the deployment docs name.
//
// It is a module of its own so that the Kubernetes API types it decodes
// the manifest into stay out of vxland's own go.mod. `make test` runs it.
package deploy
