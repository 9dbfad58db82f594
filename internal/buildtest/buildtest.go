// Package buildtest builds this module's commands for tests that run them
// as processes, in network namespaces or beside the test.
package buildtest

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Vxland builds the daemon from this source tree into a temporary
// directory of t and returns its path. It uses the go command that runs
// the test (go test puts its own first in PATH), else the one of the
// toolchain that built the test.
func Vxland(t testing.TB) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		goTool = p
	}
	exe := filepath.Join(t.TempDir(), "vxland")
	cmd := exec.Command(goTool, "build", "-o", exe, "github.com/vxland/vxland/cmd/vxland")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build vxland: %v\n%s", err, out)
	}
	return exe
}
