package main

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// FuzzConfigFile holds the --config file to its promise: it accepts what
// the flags accept and nothing else. Any file either gives a usage error
// that names the file or a flag, or a configuration; the same settings
// given as flags give the same values, and a file of settings that flags
// take is refused only when the flags are.
func FuzzConfigFile(f *testing.F) {
	f.Add([]byte(testConfigFile))
	for _, seed := range []string{"vni: 1\nvnii: 42\n", "port: 80\nvni: 16777216\n", "peer: [192.0.2.2, not-an-ip]\n",
		"vni: 1\nflood-rate: 10\nflood-burst: 0\n", "vni: [1, 2]\n", "vni: {a: 1}\n", "vni: 1\nvni: 2\n",
		"config: other.yaml\n", "- vni\n", "vni: [1\n", "mode: flannel\netcd-endpoints: [http://127.0.0.1:2379]\n",
		"tap: vxbr1\n", "version: true\n", "local-ip: 192.0.2.1\nunderlay-cidr: 198.51.100.0/24\n", "persist: false\nmtu: ~\n", "poll: always\n", "poll: -1s\n"} {
		f.Add([]byte(seed))
	}
	path := filepath.Join(f.TempDir(), "vxland.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cf, readErr := readConfigFile(path)
		if readErr == nil && readsFiles(cf) {
			return // reading a password file is not parsing; /dev/zero would never end
		}
		c, err := parse([]string{"--config", path}, nil)
		var ue *usageError
		switch {
		case err != nil && !errors.As(err, &ue):
			t.Fatalf("error %v (%T) is not a usage error", err, err)
		case err != nil && !strings.HasPrefix(err.Error(), path+":") && !strings.HasPrefix(err.Error(), "--"):
			t.Fatalf("error %q names neither the file nor a flag", err)
		case readErr != nil:
			if err == nil {
				t.Fatalf("readConfigFile refused the file (%v), parseConfig took it", readErr)
			}
			return
		}
		args, asFlags := settingsAsFlags(cf)
		cl, clErr := parse(args, nil)
		if err == nil {
			if clErr != nil {
				t.Fatalf("the file is taken, its settings as flags %q are not: %v", args, clErr)
			}
			delete(c.Values, "config")
			delete(cl.Values, "config")
			if !maps.Equal(c.Values, cl.Values) {
				t.Fatalf("the file gives\n%v\nthe flags %q give\n%v", c.Values, args, cl.Values)
			}
			return
		}
		if asFlags && clErr == nil {
			t.Fatalf("the file is refused (%v), its settings as flags %q are taken", err, args)
		}
	})
}

// settingsAsFlags returns the settings of cf as command-line flags, and
// whether the file sets nothing that a command line could and a file
// may not: unknown keys, another file, --version, a list for a flag of
// one value.
func settingsAsFlags(cf *configFile) (args []string, asFlags bool) {
	fs, _ := newFlagSet(nil)
	asFlags = true
	for _, s := range cf.settings {
		args = append(args, "--"+s.key+"="+s.value)
		fl := fs.Lookup(s.key)
		if fl == nil || s.key == "config" || s.key == "version" {
			asFlags = false
			continue
		}
		if _, slice := fl.Value.(pflag.SliceValue); s.list && !slice {
			asFlags = false
		}
	}
	return args, asFlags
}

// readsFiles reports whether the configuration has vxland read a file
// given by name: a password file, which may be anything (/dev/zero).
func readsFiles(cf *configFile) bool {
	for _, s := range cf.settings {
		if s.key == "etcd-password-file" && s.value != "" {
			return true
		}
	}
	return false
}
