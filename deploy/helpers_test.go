package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the vxland repository this module sits in.
const repoRoot = ".."

// testVersion is the version the tests link into vxland, to see it come
// back from --version.
const testVersion = "v0.0.0-deploytest"

// build is one build of vxland, made once per test binary.
type build struct {
	once sync.Once
	dir  string // temporary, removed by TestMain
	out  []byte
	err  error
}

var installed, static build

// run runs make with args once, in a temporary directory that $DIR in
// args names, and returns that directory.
func (b *build) run(t *testing.T, args ...string) string {
	t.Helper()
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "vxland-deploy-")
		if b.err != nil {
			return
		}
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "$DIR", b.dir)
		}
		b.out, b.err = exec.Command("make", append([]string{"-C", repoRoot}, args...)...).CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), b.err, b.out)
	}
	return b.dir
}

// installArgs is `make install` as a distribution's package build runs
// it: PREFIX=/usr, staged in a DESTDIR.
func installArgs(dir string) []string {
	return []string{"install", "DESTDIR=" + filepath.Join(dir, "root"), "PREFIX=/usr", "BIN=" + filepath.Join(dir, "bin"), "VERSION=" + testVersion}
}

// installVxland runs `make install` once per test binary and returns its
// DESTDIR.
func installVxland(t *testing.T) string {
	t.Helper()
	return filepath.Join(installed.run(t, installArgs("$DIR")...), "root")
}

// vxlandBinary returns the vxland that `make install` installed.
func vxlandBinary(t *testing.T) string {
	t.Helper()
	return filepath.Join(installVxland(t), "usr/bin/vxland")
}

// staticVxland builds vxland once per test binary with `make static`, the
// target the Dockerfile runs, and returns the binary's path.
func staticVxland(t *testing.T) string {
	t.Helper()
	return filepath.Join(static.run(t, "static", "BIN=$DIR/bin", "VERSION="+testVersion), "bin/vxland")
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, b := range []*build{&installed, &static} {
		if b.dir != "" {
			os.RemoveAll(b.dir)
		}
	}
	os.Exit(code)
}

// flagLine is a flag in `vxland --help`: "  --local-ip string ...".
var flagLine = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`)

// vxlandFlags returns the flags that vxland's --help lists.
func vxlandFlags(t *testing.T, vxland string) map[string]bool {
	t.Helper()
	out, err := exec.Command(vxland, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("vxland --help: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, m := range flagLine.FindAllSubmatch(out, -1) {
		flags[string(m[1])] = true
	}
	if !flags["vni"] || !flags["etcd-endpoints"] {
		t.Fatalf("vxland --help lists no --vni or --etcd-endpoints; parsed %v from:\n%s", flags, out)
	}
	return flags
}

// checkArgs checks that vxland takes args: every flag exists and every
// value parses. --help after them stops vxland before it validates values
// against the system (files, interfaces), which a test host does not have.
func checkArgs(t *testing.T, vxland string, args []string) {
	t.Helper()
	cmd := exec.Command(vxland, append(append([]string{}, args...), "--help")...)
	cmd.Env = []string{} // no VXLAND_* from the test's environment
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		first, _, _ := strings.Cut(stderr.String(), "\n")
		t.Errorf("vxland %s: %v: %s", strings.Join(args, " "), err, first)
	}
}

// checkEnvNames checks that every VXLAND_* variable in names sets one of
// vxland's flags (VXLAND_LOCAL_IP: --local-ip), or is one of the
// variables that set no flag.
func checkEnvNames(t *testing.T, flags map[string]bool, names []string, notFlags ...string) {
	t.Helper()
	for _, n := range names {
		if !strings.HasPrefix(n, "VXLAND_") || slices.Contains(notFlags, n) {
			continue
		}
		flag := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(n, "VXLAND_"), "_", "-"))
		if !flags[flag] {
			t.Errorf("%s sets no flag: vxland has no --%s", n, flag)
		}
	}
}
