package discovery

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vxland/vxland/overlay/fdb"
)

func TestUnderlayCheck(t *testing.T) {
	u := Underlay{netip.MustParsePrefix("192.0.2.0/25"), netip.MustParsePrefix("2001:db8::/64")}
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"192.0.2.1", true},
		{"192.0.2.127", true},
		{"192.0.2.128", false},
		{"::ffff:192.0.2.1", true}, // IPv4-mapped is the IPv4 address
		{"2001:db8::5", true},
		{"2001:db8:1::5", false},
	} {
		err := u.Check(netip.MustParseAddr(tc.addr))
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrOutsideUnderlay)) {
			t.Errorf("Check(%s) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
	if err := (Underlay(nil)).Check(netip.MustParseAddr("203.0.113.1")); err != nil {
		t.Errorf("an empty underlay refused an address: %v", err)
	}
}

// TestRecordsOutsideUnderlayAreRejected: with --underlay-cidr, a member or
// MAC record whose VTEP lies outside it is logged once with its key and
// never reaches the flood list, the receive allowlist or the FDB; records
// inside it are applied as usual.
func TestRecordsOutsideUnderlayAreRejected(t *testing.T) {
	cli := startEtcd(t)
	b := newHost(t, cli, "192.0.2.2", func(c *Config) {
		c.Underlay = Underlay{netip.MustParsePrefix("192.0.2.0/25")}
	})
	b.start()
	b.waitSynced()

	const outside, inside = "192.0.2.200", "192.0.2.9"
	putMember(t, cli, outside, testPort)
	putMAC(t, cli, "02:00:00:00:00:b1", outside)
	// Changes reach a watcher in order: once B has these, it has seen
	// the records outside.
	putMember(t, cli, inside, testPort)
	putMAC(t, cli, "02:00:00:00:00:b2", inside)
	waitFor(t, "B applies the records inside the underlay only", func() error {
		return snapshot(t, b, nil).compare(dataPlane{
			flood: []netip.AddrPort{vtepOf(inside)},
			fdb:   map[fdb.MAC]netip.AddrPort{mustMAC("02:00:00:00:00:b2"): vtepOf(inside)},
		})
	})
	if isKnown(b.fdb, netip.MustParseAddr(outside)) {
		t.Errorf("B accepts packets from %s, outside the underlay", outside)
	}
	const msg = "rejecting etcd record: its VTEP is outside --underlay-cidr"
	for _, key := range []string{testKeys.Member(netip.MustParseAddr(outside)), testKeys.MAC(mustMAC("02:00:00:00:00:b1"))} {
		if n := b.log.count(t, msg, "key", key); n != 1 {
			t.Errorf("%s logged %d times, want once", key, n)
		}
	}
}
