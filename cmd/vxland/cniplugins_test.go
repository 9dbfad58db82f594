package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cniBuilds are the CNI binaries a kubelet with kube-flannel runs, and
// cnitool to run them as it does, built from their modules at these
// versions. The flannel plugin is the one from before it moved to a module
// of its own, which the module proxy does not serve; the move changed
// neither its configuration nor what it delegates.
var cniBuilds = []struct {
	module, version string
	pkgs            []string
}{
	{"github.com/containernetworking/plugins", "v1.9.0",
		[]string{"plugins/main/bridge", "plugins/ipam/host-local", "plugins/main/loopback", "plugins/meta/portmap"}},
	{"github.com/containernetworking/plugins", "v0.9.1", []string{"plugins/meta/flannel"}},
	{"github.com/containernetworking/cni", "v1.3.0", []string{"cnitool"}},
}

// cniBuildTimeout bounds the first build: downloading the modules and
// compiling six programs, on a busy machine.
const cniBuildTimeout = 5 * time.Minute

// cniPlugins returns the directory that holds the binaries of cniBuilds,
// building them on the first run into a per-user cache keyed by their
// versions. It skips t, naming what failed, when they cannot be built here
// (no Go command, no module proxy).
func cniPlugins(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "vxland-cni", cniBuildKey())
	if missing := missingCNIBinaries(dir); len(missing) == 0 {
		return dir
	}
	t.Logf("building the CNI plugins into %s (once; at most %s)", dir, cniBuildTimeout)
	ctx, cancel := context.WithTimeout(t.Context(), cniBuildTimeout)
	defer cancel()
	start := time.Now()
	if err := buildCNIPlugins(ctx, dir); err != nil {
		t.Skipf("skipping: cannot build the CNI plugins: %v", err)
	}
	t.Logf("built the CNI plugins in %s", time.Since(start).Round(time.Second))
	return dir
}

// cniBuildKey names a set of versions, e.g.
// "plugins-v1.9.0_plugins-v0.9.1_cni-v1.3.0".
func cniBuildKey() string {
	var parts []string
	for _, b := range cniBuilds {
		parts = append(parts, filepath.Base(b.module)+"-"+b.version)
	}
	return strings.Join(parts, "_")
}

// missingCNIBinaries lists the binaries of cniBuilds that dir lacks.
func missingCNIBinaries(dir string) []string {
	var missing []string
	for _, b := range cniBuilds {
		for _, p := range b.pkgs {
			if _, err := os.Stat(filepath.Join(dir, filepath.Base(p))); err != nil {
				missing = append(missing, filepath.Base(p))
			}
		}
	}
	return missing
}

// buildCNIPlugins installs cniBuilds into dir with "go install
// module/pkg@version", outside this module so that its go.mod does not
// learn of them. It builds into a fresh directory beside dir and renames
// it into place, so a concurrent run never sees half a set.
func buildCNIPlugins(ctx context.Context, dir string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("no go command: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bin")
	for _, b := range cniBuilds {
		args := []string{"install"}
		for _, p := range b.pkgs {
			args = append(args, b.module+"/"+p+"@"+b.version)
		}
		cmd := exec.CommandContext(ctx, goCmd, args...)
		cmd.Dir = tmp
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
		cmd.WaitDelay = 10 * time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", err, ctx.Err())
			}
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	if err := os.Rename(bin, dir); err != nil {
		if missing := missingCNIBinaries(dir); len(missing) > 0 {
			return fmt.Errorf("%w (and %s lacks %v)", err, dir, missing)
		}
		// Another run put a complete set there first.
	}
	if missing := missingCNIBinaries(dir); len(missing) > 0 {
		return errors.New("go install did not make " + strings.Join(missing, ", "))
	}
	return nil
}

// The pinned plugins build, and each speaks the CNI version of
// kube-flannel's conflist. make test runs this first, so that the first
// build is not paid inside the suite's time bound.
func TestCNIPlugins(t *testing.T) {
	dir := cniPlugins(t)
	for _, b := range cniBuilds {
		for _, p := range b.pkgs {
			name := filepath.Base(p)
			if name == "cnitool" {
				continue
			}
			cmd := exec.Command(filepath.Join(dir, name))
			cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
			cmd.Stdin = strings.NewReader(`{"cniVersion": "0.3.1"}`)
			out, err := cmd.Output()
			if err != nil || !strings.Contains(string(out), `"0.3.1"`) {
				t.Errorf("%s %s: CNI_COMMAND=VERSION answered %q (%v), want 0.3.1 among its versions", name, b.version, out, err)
			}
		}
	}
}
