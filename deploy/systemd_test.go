package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The units and env files of contrib/systemd, and the env file each
// unit reads.
var units = []struct{ unit, env string }{
	{"vxland.service", "vxland.env"},
	{"vxland-flannel.service", "vxland-flannel.env"},
}

const systemdDir = repoRoot + "/contrib/systemd"

// installedBinary is the ExecStart path the units carry; `make install`
// rewrites it to $(BINDIR)/vxland.
const installedBinary = "/usr/local/bin/vxland"

// TestSystemdVerify runs systemd-analyze verify on copies of the units
// whose ExecStart is the vxland just built (verify wants the binary to
// exist), and fails on anything it says about them.
func TestSystemdVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the units are not verified")
	}
	vxland := vxlandBinary(t)
	dir := t.TempDir()
	var paths []string
	for _, u := range units {
		b, err := os.ReadFile(filepath.Join(systemdDir, u.unit))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart="+installedBinary+" ") {
			t.Fatalf("%s: no ExecStart=%s", u.unit, installedBinary)
		}
		p := filepath.Join(dir, u.unit)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), installedBinary, vxland)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Unknown keys and bad values are warnings: verify still exits 0.
	for _, line := range strings.Split(string(out), "\n") {
		for _, u := range units {
			if strings.Contains(line, u.unit) {
				t.Errorf("systemd-analyze verify: %s", line)
			}
		}
	}
}

// TestSystemdUnits checks what the units promise vxland: sd_notify, the
// capabilities it needs and the TUN device, and an env file whose
// VXLAND_ARGS vxland takes.
func TestSystemdUnits(t *testing.T) {
	vxland := vxlandBinary(t)
	flags := vxlandFlags(t, vxland)
	for _, u := range units {
		t.Run(u.unit, func(t *testing.T) {
			keys := readUnit(t, filepath.Join(systemdDir, u.unit))
			for key, want := range map[string]string{
				"Type":                     "notify",
				"NotifyAccess":             "main",
				"Restart":                  "on-failure",
				"RestartPreventExitStatus": "2",
				"CapabilityBoundingSet":    "CAP_NET_ADMIN",
				"NoNewPrivileges":          "yes",
				"DevicePolicy":             "closed",
				"DeviceAllow":              "/dev/net/tun rw",
				"EnvironmentFile":          "/etc/vxland/" + u.env,
				"ExecReload":               "/bin/kill -HUP $MAINPID",
			} {
				if got := keys[key]; len(got) != 1 || got[0] != want {
					t.Errorf("%s=%q, want %q", key, got, want)
				}
			}
			if len(keys["WatchdogSec"]) != 1 {
				t.Errorf("no WatchdogSec: vxland pings the watchdog")
			}
			if len(keys["User"]) != 0 {
				t.Errorf("User=%q: vxland refuses to run as anyone but root", keys["User"])
			}
			exec := keys["ExecStart"]
			if len(exec) != 1 || !strings.HasSuffix(exec[0], " $VXLAND_ARGS") {
				t.Fatalf("ExecStart=%q, want vxland's command line to end in $VXLAND_ARGS", exec)
			}
			fixed := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(exec[0], installedBinary), "$VXLAND_ARGS"))

			vars := readEnvFile(t, filepath.Join(systemdDir, u.env))
			if len(vars["VXLAND_ARGS"]) == 0 {
				t.Fatalf("%s sets no VXLAND_ARGS", u.env)
			}
			// The active VXLAND_ARGS and the commented alternatives.
			for _, args := range vars["VXLAND_ARGS"] {
				checkArgs(t, vxland, append(fixed, strings.Fields(args)...))
			}
			var names []string
			for n := range vars {
				names = append(names, n)
			}
			checkEnvNames(t, flags, names, "VXLAND_ARGS", "VXLAND_ETCD_PASSWORD")
		})
	}
}

// readUnit returns a unit file's keys and their values.
func readUnit(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is no key=value", path, line)
		}
		keys[k] = append(keys[k], v)
	}
	return keys
}

// readEnvFile returns the variables an env file sets, the commented-out
// ones ("#VXLAND_ARGS=...") included, with quotes removed.
func readEnvFile(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "#")
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			continue
		}
		vars[k] = append(vars[k], strings.Trim(v, `"`))
	}
	return vars
}
