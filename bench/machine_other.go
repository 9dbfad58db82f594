//go:build !linux

package bench

// kernelRelease is empty where the bench cannot run: it needs Linux.
func kernelRelease() (release, version string) { return "", "" }
