package flannel

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vxland/vxland/overlay/fdb"
)

var testKeys = NewKeys(DefaultPrefix)

func TestLeaseKeys(t *testing.T) {
	if k := testKeys.Subnet(pfx("10.244.1.0/24")); k != "/coreos.com/network/subnets/10.244.1.0-24" {
		t.Fatalf("key %q", k)
	}
	if k := NewKeys("/x/").Config(); k != "/x/config" {
		t.Fatalf("config key %q", k)
	}
	for key, want := range map[string]string{
		"/coreos.com/network/subnets/10.244.1.0-24":                    "10.244.1.0/24",
		"/coreos.com/network/subnets/10.244.1.0-24&fd00:10:244:1::-64": "10.244.1.0/24",
		"/coreos.com/network/subnets/10.244.1.128-25":                  "10.244.1.128/25",
	} {
		p, err := testKeys.ParseSubnet(key)
		if err != nil || p.String() != want {
			t.Errorf("ParseSubnet(%s) = %v, %v; want %s", key, p, err, want)
		}
	}
	for _, key := range []string{
		"/coreos.com/network/config",
		"/coreos.com/network/subnets/",
		"/coreos.com/network/subnets/10.244.1.0",
		"/coreos.com/network/subnets/10.244.1.1-24",  // not a network address
		"/coreos.com/network/subnets/10.244.1.0-33",  // no such length
		"/coreos.com/network/subnets/10.244.1.0-024", // not canonical
		"/coreos.com/network/subnets/fd00::-64",
		"/coreos.com/network/subnets/10.244.1.0-24&10.0.0.0-8",
		"/coreos.com/network/subnets/10.244.1.0-24/x",
		"/other/subnets/10.244.1.0-24",
	} {
		if p, err := testKeys.ParseSubnet(key); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseSubnet(%s) = %v, %v; want ErrMalformed", key, p, err)
		}
	}
}

// The value flannel's own vxlan backend writes parses, and ours is the
// same bytes.
func TestLeaseValueIsFlannels(t *testing.T) {
	const flannelValue = `{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`
	key := testKeys.Subnet(pfx("10.244.1.0/24"))
	l, err := testKeys.ParseLease(key, []byte(flannelValue))
	if err != nil {
		t.Fatal(err)
	}
	want := Lease{Subnet: pfx("10.244.1.0/24"), PublicIP: addr("192.168.64.3"), BackendType: "vxlan", VNI: 1,
		VtepMAC: fdb.MAC{0xc6, 0xd2, 0x32, 0x6f, 0x8f, 0x44}}
	if l != want {
		t.Fatalf("parsed %+v, want %+v", l, want)
	}
	if got := string(l.Value()); got != flannelValue {
		t.Fatalf("Value()\n got %s\nwant %s", got, flannelValue)
	}
}

func TestParseLeaseRejects(t *testing.T) {
	key := testKeys.Subnet(pfx("10.244.1.0/24"))
	for _, v := range []string{
		``,
		`[]`,
		`{"PublicIP":"","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`,
		`{"PublicIP":"fd00::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`,
		`{"PublicIP":"0.0.0.0","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`,
		`{"PublicIP":"224.0.0.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`,
		`{"PublicIP":"192.168.64.3","BackendType":"vxlan"}`,
		`{"PublicIP":"192.168.64.3","BackendType":"vxlan","BackendData":{"VNI":1}}`,
		`{"PublicIP":"192.168.64.3","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"}}`,
		`{"PublicIP":"192.168.64.3","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"00:00:00:00:00:00"}}`,
		`{"PublicIP":"192.168.64.3","BackendType":"vxlan","BackendData":{"VNI":16777216,"VtepMAC":"c6:d2:32:6f:8f:44"}}`,
		`{"PublicIP":"192.168.64.3","BackendType":"vxlan","BackendData":"x"}`,
	} {
		if l, err := testKeys.ParseLease(key, []byte(v)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseLease(%s) = %+v, %v; want ErrMalformed", v, l, err)
		}
	}
	// Another backend's lease parses, so that it can be reported and
	// skipped, not called malformed.
	l, err := testKeys.ParseLease(key, []byte(`{"PublicIP":"192.168.64.3","BackendType":"host-gw"}`))
	if err != nil || l.BackendType != "host-gw" {
		t.Fatalf("host-gw lease: %+v, %v", l, err)
	}
}

func TestVtepMAC(t *testing.T) {
	a := VtepMAC(addr("10.0.0.1"), 1)
	if a != VtepMAC(addr("10.0.0.1"), 1) {
		t.Fatal("VtepMAC is not deterministic")
	}
	if a == VtepMAC(addr("10.0.0.2"), 1) || a == VtepMAC(addr("10.0.0.1"), 2) {
		t.Fatal("VtepMAC ignores its inputs")
	}
	for _, ip := range []string{"10.0.0.1", "192.168.1.7", "172.16.0.9", "10.77.0.3"} {
		m := VtepMAC(addr(ip), 1)
		if m.IsMulticast() || m.IsZero() || m[0]&0x02 == 0 {
			t.Errorf("VtepMAC(%s) = %s: want a locally administered unicast address", ip, m)
		}
	}
}

// FuzzParseLease checks that parsing untrusted etcd values never panics,
// and that whatever parses survives a round trip through Value.
func FuzzParseLease(f *testing.F) {
	f.Add("10.244.1.0-24", `{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`)
	f.Add("10.244.1.0-24&fd00:10:244:1::-64", `{"PublicIP":"192.168.64.3","PublicIPv6":"fd00::3","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"},"BackendV6Data":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:45"}}`)
	f.Add("10.244.1.0-24", `{"PublicIP":"192.168.64.3","BackendType":"host-gw"}`)
	f.Add("10.244.1.1-24", `{}`)
	f.Fuzz(func(t *testing.T, name, value string) {
		key := testKeys.Subnets() + name
		l, err := testKeys.ParseLease(key, []byte(value))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !l.Subnet.IsValid() || l.Subnet.Masked() != l.Subnet || !l.Subnet.Addr().Is4() || !l.PublicIP.Is4() {
			t.Fatalf("parsed an invalid lease %+v", l)
		}
		if l.BackendType != "vxlan" {
			return
		}
		if l.VtepMAC.IsMulticast() || l.VtepMAC.IsZero() || l.VNI > 1<<24-1 {
			t.Fatalf("parsed an unusable vxlan lease %+v", l)
		}
		back, err := testKeys.ParseLease(testKeys.Subnet(l.Subnet), l.Value())
		if err != nil || back != l {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", l, l.Value(), back, err)
		}
		if _, err := netip.ParsePrefix(l.Subnet.String()); err != nil {
			t.Fatal(err)
		}
	})
}
