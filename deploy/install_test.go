package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstall stages `make install` in a temporary DESTDIR as a
// distribution's package build would, with PREFIX=/usr, and checks the
// tree: the binary runs and says the version it was built with, the
// units start it from PREFIX, the env files are in /etc/vxland, and a
// second install keeps an env file that was edited.
func TestMakeInstall(t *testing.T) {
	dest := installVxland(t)
	dir := filepath.Dir(dest)
	var files []string
	filepath.WalkDir(dest, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, strings.TrimPrefix(path, dest))
		}
		return err
	})
	want := []string{
		"/etc/vxland/vxland-flannel.env",
		"/etc/vxland/vxland.env",
		"/usr/bin/vxland",
		"/usr/lib/systemd/system/vxland-flannel.service",
		"/usr/lib/systemd/system/vxland.service",
	}
	if strings.Join(files, "\n") != strings.Join(want, "\n") {
		t.Fatalf("installed:\n%s\nwant:\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}

	out, err := exec.Command(filepath.Join(dest, "usr/bin/vxland"), "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "vxland "+testVersion {
		t.Errorf("installed vxland --version: %q, %v; want \"vxland %s\"", out, err, testVersion)
	}
	for _, u := range units {
		keys := readUnit(t, filepath.Join(dest, "usr/lib/systemd/system", u.unit))
		if exec := keys["ExecStart"]; len(exec) != 1 || !strings.HasPrefix(exec[0], "/usr/bin/vxland ") {
			t.Errorf("installed %s: ExecStart=%q, want /usr/bin/vxland", u.unit, exec)
		}
		env := filepath.Join(dest, "etc/vxland", u.env)
		if fi, err := os.Stat(env); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("installed %s: %v, want mode 0600: it may hold the etcd password", env, err)
		}
	}

	edited := filepath.Join(dest, "etc/vxland/vxland.env")
	if err := os.WriteFile(edited, []byte("VXLAND_ARGS=\"--vni 7\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("make", append([]string{"-C", repoRoot}, installArgs(dir)...)...).CombinedOutput(); err != nil {
		t.Fatalf("make install again: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(edited); string(b) != "VXLAND_ARGS=\"--vni 7\"\n" {
		t.Errorf("a second make install overwrote the edited %s:\n%s", edited, b)
	}
}
