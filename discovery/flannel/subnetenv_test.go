package flannel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSubnetEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "flannel", "subnet.env")
	prev, err := ReadPreviousSubnet(path)
	if err != nil || prev.IsValid() {
		t.Fatalf("missing file: %v, %v", prev, err)
	}
	e := SubnetEnv{Network: pfx("10.244.0.0/16"), Subnet: pfx("10.244.7.0/24"), MTU: 1450}
	if err := WriteSubnetEnv(path, e); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const want = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
	if string(b) != want {
		t.Fatalf("subnet.env:\n%s\nwant:\n%s", b, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode: %v, %v", fi.Mode(), err)
	}
	// Rewriting replaces the file and leaves no temporary behind.
	e.Subnet = pfx("10.244.9.0/24")
	if err := WriteSubnetEnv(path, e); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d files, want only subnet.env: %v", len(entries), entries)
	}
	prev, err = ReadPreviousSubnet(path)
	if err != nil || prev != pfx("10.244.9.0/24") {
		t.Fatalf("ReadPreviousSubnet = %v, %v", prev, err)
	}
	if err := os.WriteFile(path, []byte("FLANNEL_SUBNET=garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPreviousSubnet(path); err == nil {
		t.Fatal("a garbage FLANNEL_SUBNET was accepted")
	}
}

// FuzzPreviousSubnet reads any subnet.env. A subnet it finds is an IPv4
// network address, and a subnet.env that Marshal writes for it reads
// back as the same subnet; a refusal quotes the value.
func FuzzPreviousSubnet(f *testing.F) {
	f.Add(SubnetEnv{Network: pfx("10.244.0.0/16"), Subnet: pfx("10.244.7.0/24"), MTU: 1450}.Marshal())
	for _, seed := range []string{"FLANNEL_SUBNET=garbage\n", "  FLANNEL_SUBNET=10.1.2.3/8  \r\nFLANNEL_SUBNET=x\n", "FLANNEL_SUBNET=fd00::1/64\n", "FLANNEL_MTU=1450\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := previousSubnet(b)
		switch {
		case err != nil:
			if p.IsValid() || !strings.Contains(err.Error(), "FLANNEL_SUBNET=") {
				t.Fatalf("%v with error %q", p, err)
			}
			return
		case !p.IsValid():
			return
		case !p.Addr().Is4() || p != p.Masked():
			t.Fatalf("subnet %v is not an IPv4 network address", p)
		case p.Bits() == 32:
			return // no host address to write
		}
		back, err := previousSubnet(SubnetEnv{Network: p, Subnet: p, MTU: 1450}.Marshal())
		if err != nil || back != p {
			t.Fatalf("%v written and read back: %v, %v", p, back, err)
		}
	})
}
