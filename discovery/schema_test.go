package discovery

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vxland/vxland/overlay/fdb"
)

var testKeys = NewKeys("/vxland", 42)

func mustMAC(s string) fdb.MAC {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		panic("bad MAC in test: " + s)
	}
	return fdb.MAC(hw)
}

func TestKeys(t *testing.T) {
	for _, prefix := range []string{"/vxland", "/vxland/", "/vxland//"} {
		k := NewKeys(prefix, 42)
		if got, want := k.Prefix(), "/vxland/v1/vni/42/"; got != want {
			t.Errorf("NewKeys(%q, 42).Prefix() = %q, want %q", prefix, got, want)
		}
	}
	if got, want := testKeys.Member(netip.MustParseAddr("192.0.2.1")), "/vxland/v1/vni/42/vtep/192.0.2.1"; got != want {
		t.Errorf("Member = %q, want %q", got, want)
	}
	if got, want := testKeys.Member(netip.MustParseAddr("2001:db8::1")), "/vxland/v1/vni/42/vtep/2001:db8::1"; got != want {
		t.Errorf("Member = %q, want %q", got, want)
	}
	if got, want := testKeys.MAC(mustMAC("02:00:00:AB:CD:EF")), "/vxland/v1/vni/42/mac/02:00:00:ab:cd:ef"; got != want {
		t.Errorf("MAC = %q, want %q", got, want)
	}
	if got, want := NewKeys("/x", 16777215).Prefix(), "/x/v1/vni/16777215/"; got != want {
		t.Errorf("Prefix = %q, want %q", got, want)
	}
}

// TestParse is the reader's side of docs/etcd-schema.md: what a value must
// look like to be applied.
func TestParse(t *testing.T) {
	const (
		memberKey = "/vxland/v1/vni/42/vtep/192.0.2.1"
		macKey    = "/vxland/v1/vni/42/mac/02:00:00:00:00:01"
	)
	started := time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC)
	valid := []struct {
		name   string
		key    string
		value  string
		member *Member
		mac    *MACRecord
	}{
		{"member", memberKey,
			`{"version":1,"addr":"192.0.2.1","port":4789,"hostname":"h1","started":"2026-11-26T01:02:03Z"}`,
			&Member{Version: 1, Addr: netip.MustParseAddr("192.0.2.1"), Port: 4789, Hostname: "h1", Started: started}, nil},
		{"member, optional fields left out", memberKey,
			`{"version":1,"addr":"192.0.2.1","port":8472}`,
			&Member{Version: 1, Addr: netip.MustParseAddr("192.0.2.1"), Port: 8472}, nil},
		{"member on IPv6", "/vxland/v1/vni/42/vtep/2001:db8::1",
			`{"version":1,"addr":"2001:db8::1","port":4789}`,
			&Member{Version: 1, Addr: netip.MustParseAddr("2001:db8::1"), Port: 4789}, nil},
		{"member of a newer version with unknown fields", memberKey,
			`{"version":2,"addr":"192.0.2.1","port":4789,"weight":7,"labels":{"rack":"r1"}}`,
			&Member{Version: 2, Addr: netip.MustParseAddr("192.0.2.1"), Port: 4789}, nil},
		{"MAC", macKey,
			`{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1","ips":["10.1.0.5","10.1.0.6"]}`,
			nil, &MACRecord{Version: 1, MAC: "02:00:00:00:00:01", VTEP: netip.MustParseAddr("192.0.2.1"),
				IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.1.0.6")}}},
		{"MAC with IPv6 addresses", macKey,
			`{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1","ips":["10.1.0.5"],"ipv6":["fd00::5","fe80::5"]}`,
			nil, &MACRecord{Version: 1, MAC: "02:00:00:00:00:01", VTEP: netip.MustParseAddr("192.0.2.1"),
				IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")}, IPv6: []netip.Addr{netip.MustParseAddr("fd00::5"), netip.MustParseAddr("fe80::5")}}},
		{"MAC without addresses", macKey,
			`{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1"}`,
			nil, &MACRecord{Version: 1, MAC: "02:00:00:00:00:01", VTEP: netip.MustParseAddr("192.0.2.1")}},
		{"MAC spelled differently in the value", macKey,
			`{"version":1,"mac":"02-00-00-00-00-01","vtep":"192.0.2.1"}`,
			nil, &MACRecord{Version: 1, MAC: "02-00-00-00-00-01", VTEP: netip.MustParseAddr("192.0.2.1")}},
		{"MAC of a newer version with unknown fields", macKey,
			`{"version":3,"mac":"02:00:00:00:00:01","vtep":"2001:db8::1","ttl":5}`,
			nil, &MACRecord{Version: 3, MAC: "02:00:00:00:00:01", VTEP: netip.MustParseAddr("2001:db8::1")}},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			r, err := testKeys.parse(tc.key, []byte(tc.value))
			if err != nil {
				t.Fatalf("parse(%q, %s): %v", tc.key, tc.value, err)
			}
			switch {
			case tc.member != nil:
				if r.member == nil || r.mac != nil {
					t.Fatalf("parse(%q) = %+v, want a member record", tc.key, r)
				}
				if !r.member.Started.Equal(tc.member.Started) {
					t.Errorf("started = %v, want %v", r.member.Started, tc.member.Started)
				}
				got, want := *r.member, *tc.member
				got.Started, want.Started = time.Time{}, time.Time{}
				if got != want {
					t.Errorf("member = %+v, want %+v", got, want)
				}
			case tc.mac != nil:
				if r.mac == nil || r.member != nil {
					t.Fatalf("parse(%q) = %+v, want a MAC record", tc.key, r)
				}
				if r.macKey != mustMAC("02:00:00:00:00:01") {
					t.Errorf("macKey = %s, want 02:00:00:00:00:01", r.macKey)
				}
				if r.mac.Version != tc.mac.Version || r.mac.MAC != tc.mac.MAC || r.mac.VTEP != tc.mac.VTEP || !slices.Equal(r.mac.IPs, tc.mac.IPs) || !slices.Equal(r.mac.IPv6, tc.mac.IPv6) {
					t.Errorf("mac = %+v, want %+v", *r.mac, *tc.mac)
				}
			}
		})
	}

	malformed := []struct {
		name  string
		key   string
		value string
	}{
		{"member: bad JSON", memberKey, `{"version":1,"addr":"192.0.2.1","port":4789`},
		{"member: not an object", memberKey, `[1,2,3]`},
		{"member: null", memberKey, `null`},
		{"member: empty value", memberKey, ``},
		{"member: version 0", memberKey, `{"version":0,"addr":"192.0.2.1","port":4789}`},
		{"member: no version", memberKey, `{"addr":"192.0.2.1","port":4789}`},
		{"member: negative version", memberKey, `{"version":-1,"addr":"192.0.2.1","port":4789}`},
		{"member: version as a string", memberKey, `{"version":"1","addr":"192.0.2.1","port":4789}`},
		{"member: addr differs from the key", memberKey, `{"version":1,"addr":"192.0.2.2","port":4789}`},
		{"member: no addr", memberKey, `{"version":1,"port":4789}`},
		{"member: addr not an address", memberKey, `{"version":1,"addr":"h1","port":4789}`},
		{"member: no port", memberKey, `{"version":1,"addr":"192.0.2.1"}`},
		{"member: port out of range", memberKey, `{"version":1,"addr":"192.0.2.1","port":65536}`},
		{"member: key names no address", "/vxland/v1/vni/42/vtep/h1", `{"version":1,"addr":"192.0.2.1","port":4789}`},
		{"member: key not in canonical form", "/vxland/v1/vni/42/vtep/2001:DB8:0::1", `{"version":1,"addr":"2001:db8::1","port":4789}`},
		{"MAC: bad JSON", macKey, `{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1"`},
		{"MAC: not an object", macKey, `"02:00:00:00:00:01"`},
		{"MAC: version 0", macKey, `{"version":0,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1"}`},
		{"MAC: no version", macKey, `{"mac":"02:00:00:00:00:01","vtep":"192.0.2.1"}`},
		{"MAC: mac differs from the key", macKey, `{"version":1,"mac":"02:00:00:00:00:02","vtep":"192.0.2.1"}`},
		{"MAC: no mac", macKey, `{"version":1,"vtep":"192.0.2.1"}`},
		{"MAC: mac not a MAC", macKey, `{"version":1,"mac":"zz","vtep":"192.0.2.1"}`},
		{"MAC: EUI-64 in the value", macKey, `{"version":1,"mac":"02:00:00:00:00:01:00:00","vtep":"192.0.2.1"}`},
		{"MAC: EUI-64 key", "/vxland/v1/vni/42/mac/02:00:00:00:00:01:00:00", `{"version":1,"mac":"02:00:00:00:00:01:00:00","vtep":"192.0.2.1"}`},
		{"MAC: key names no MAC", "/vxland/v1/vni/42/mac/h1", `{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1"}`},
		{"MAC: key in upper case", "/vxland/v1/vni/42/mac/02:00:00:00:00:AB", `{"version":1,"mac":"02:00:00:00:00:ab","vtep":"192.0.2.1"}`},
		{"MAC: key with dashes", "/vxland/v1/vni/42/mac/02-00-00-00-00-01", `{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1"}`},
		{"MAC: multicast", "/vxland/v1/vni/42/mac/01:00:5e:00:00:01", `{"version":1,"mac":"01:00:5e:00:00:01","vtep":"192.0.2.1"}`},
		{"MAC: broadcast", "/vxland/v1/vni/42/mac/ff:ff:ff:ff:ff:ff", `{"version":1,"mac":"ff:ff:ff:ff:ff:ff","vtep":"192.0.2.1"}`},
		{"MAC: zero", "/vxland/v1/vni/42/mac/00:00:00:00:00:00", `{"version":1,"mac":"00:00:00:00:00:00","vtep":"192.0.2.1"}`},
		{"MAC: no vtep", macKey, `{"version":1,"mac":"02:00:00:00:00:01"}`},
		{"MAC: empty vtep", macKey, `{"version":1,"mac":"02:00:00:00:00:01","vtep":""}`},
		{"MAC: vtep not an address", macKey, `{"version":1,"mac":"02:00:00:00:00:01","vtep":"h1"}`},
		{"MAC: IPv6 in ips", macKey, `{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1","ips":["10.1.0.5","2001:db8::5"]}`},
		{"MAC: IPv4-mapped IPv6 in ips", macKey, `{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1","ips":["::ffff:10.1.0.5"]}`},
		{"MAC: IPv4 in ipv6", macKey, `{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1","ipv6":["fd00::5","10.1.0.5"]}`},
		{"MAC: IPv4-mapped IPv6 in ipv6", macKey, `{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1","ipv6":["::ffff:10.1.0.5"]}`},
		{"MAC: multicast in ipv6", macKey, `{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1","ipv6":["ff02::1"]}`},
		{"MAC: unspecified in ipv6", macKey, `{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1","ipv6":["::"]}`},
		{"MAC: zone in ipv6", macKey, `{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1","ipv6":["fe80::5%eth0"]}`},
		{"MAC: empty string in ips", macKey, `{"version":1,"mac":"02:00:00:00:00:01","vtep":"192.0.2.1","ips":[""]}`},
		{"unknown kind", "/vxland/v1/vni/42/route/10.0.0.0-8", `{"version":1}`},
		{"kind without a name", "/vxland/v1/vni/42/vtep", `{"version":1,"addr":"192.0.2.1","port":4789}`},
		{"the prefix itself", "/vxland/v1/vni/42/", `{"version":1}`},
		{"key of another VNI", "/vxland/v1/vni/43/vtep/192.0.2.1", `{"version":1,"addr":"192.0.2.1","port":4789}`},
		{"key of a VNI that shares the digits", "/vxland/v1/vni/420/vtep/192.0.2.1", `{"version":1,"addr":"192.0.2.1","port":4789}`},
		{"key under another prefix", "/other/v1/vni/42/vtep/192.0.2.1", `{"version":1,"addr":"192.0.2.1","port":4789}`},
		{"key of another schema version", "/vxland/v2/vni/42/vtep/192.0.2.1", `{"version":1,"addr":"192.0.2.1","port":4789}`},
	}
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			r, err := testKeys.parse(tc.key, []byte(tc.value))
			if err == nil {
				t.Fatalf("parse(%q, %s) = %+v, want an error", tc.key, tc.value, r)
			}
			if !errors.Is(err, errBadRecord) {
				t.Errorf("parse(%q, %s) error %v is not errBadRecord", tc.key, tc.value, err)
			}
			if r.member != nil || r.mac != nil {
				t.Errorf("parse(%q, %s) returned a record with its error: %+v", tc.key, tc.value, r)
			}
		})
	}
}

// TestParseWhatAgentsWrite checks that the values an agent writes are
// read back as they were meant.
func TestParseWhatAgentsWrite(t *testing.T) {
	addr := netip.MustParseAddr("192.0.2.7")
	m := Member{Version: SchemaVersion, Addr: addr, Port: 4789, Hostname: "h7", Started: time.Now().UTC().Truncate(time.Second)}
	v, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	r, err := testKeys.parse(testKeys.Member(addr), v)
	if err != nil {
		t.Fatalf("parse of our own member %s: %v", v, err)
	}
	if got := *r.member; got.Addr != m.Addr || got.Port != m.Port || got.Hostname != m.Hostname || !got.Started.Equal(m.Started) || got.Version != m.Version {
		t.Errorf("member read back as %+v, want %+v", got, m)
	}

	mac := mustMAC("02:42:ac:11:00:02")
	rec := MACRecord{Version: SchemaVersion, MAC: mac.String(), VTEP: addr, IPs: []netip.Addr{netip.MustParseAddr("10.1.0.2")},
		IPv6: []netip.Addr{netip.MustParseAddr("fd00::2")}}
	v, err = json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	r, err = testKeys.parse(testKeys.MAC(mac), v)
	if err != nil {
		t.Fatalf("parse of our own MAC record %s: %v", v, err)
	}
	if r.macKey != mac || r.mac.VTEP != addr || !slices.Equal(r.mac.IPs, rec.IPs) || !slices.Equal(r.mac.IPv6, rec.IPv6) {
		t.Errorf("MAC record read back as %+v (key %s), want %+v", *r.mac, r.macKey, rec)
	}
}

// FuzzParse feeds arbitrary keys and values to the reader. Whatever it
// accepts must be a record that the key names: the key a writer would use
// for the record is exactly the key it was read from, and the record holds
// the invariants the agent relies on.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		r, err := testKeys.parse(key, value)
		if err != nil {
			if !errors.Is(err, errBadRecord) {
				t.Fatalf("parse(%q, %q): error %v is not errBadRecord", key, value, err)
			}
			if r.member != nil || r.mac != nil {
				t.Fatalf("parse(%q, %q): a record with an error", key, value)
			}
			return
		}
		switch {
		case r.member != nil && r.mac == nil:
			m := r.member
			if want := testKeys.Member(m.Addr); key != want {
				t.Fatalf("member %+v read from %q, but its key is %q", *m, key, want)
			}
			if m.Version < 1 || m.Port == 0 || !m.Addr.IsValid() {
				t.Fatalf("accepted member %+v", *m)
			}
			// What we accept, re-encoded, is accepted again as the same.
			v, err := json.Marshal(m)
			if err != nil {
				t.Fatalf("re-encoding %+v: %v", *m, err)
			}
			r2, err := testKeys.parse(key, v)
			if err != nil {
				t.Fatalf("re-encoded member %s rejected: %v", v, err)
			}
			if m2 := r2.member; m2.Addr != m.Addr || m2.Port != m.Port || m2.Version != m.Version || m2.Hostname != m.Hostname || !m2.Started.Equal(m.Started) {
				t.Fatalf("member %+v re-read as %+v", *m, *m2)
			}
		case r.mac != nil && r.member == nil:
			rec := r.mac
			if want := testKeys.MAC(r.macKey); key != want {
				t.Fatalf("MAC record %+v read from %q, but its key is %q", *rec, key, want)
			}
			hw, err := net.ParseMAC(rec.MAC)
			if err != nil || len(hw) != 6 || fdb.MAC(hw) != r.macKey {
				t.Fatalf("MAC record %+v accepted under %s", *rec, r.macKey)
			}
			if r.macKey.IsMulticast() || r.macKey.IsZero() || rec.Version < 1 || !rec.VTEP.IsValid() {
				t.Fatalf("accepted MAC record %+v", *rec)
			}
			for _, ip := range rec.IPs {
				if !ip.Is4() {
					t.Fatalf("accepted MAC record %+v with address %s", *rec, ip)
				}
			}
			for _, ip := range rec.IPv6 {
				if !ip.Is6() || ip.Is4In6() || ip.IsMulticast() || ip.IsUnspecified() || ip.Zone() != "" {
					t.Fatalf("accepted MAC record %+v with IPv6 address %s", *rec, ip)
				}
			}
			v, err := json.Marshal(rec)
			if err != nil {
				t.Fatalf("re-encoding %+v: %v", *rec, err)
			}
			r2, err := testKeys.parse(key, v)
			if err != nil {
				t.Fatalf("re-encoded MAC record %s rejected: %v", v, err)
			}
			if r2.macKey != r.macKey || r2.mac.VTEP != rec.VTEP || !slices.Equal(r2.mac.IPs, rec.IPs) || !slices.Equal(r2.mac.IPv6, rec.IPv6) {
				t.Fatalf("MAC record %+v re-read as %+v", *rec, *r2.mac)
			}
		default:
			t.Fatalf("parse(%q, %q) = %+v: want exactly one of member and MAC", key, value, r)
		}
	})
}
