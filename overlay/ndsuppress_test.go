package overlay_test

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
)

var (
	ip6A     = netip.MustParseAddr("fd00::a")
	ip6B     = netip.MustParseAddr("fd00::b")
	solicitB = netip.MustParseAddr("ff02::1:ff00:b") // ip6B's solicited-node address
	unspec6  = netip.IPv6Unspecified()
)

// nsFromA is A's solicitation for B, multicast, as the kernel sends it.
func nsFromA(t testing.TB) []byte { return nsFrame(t, macA, ip6A, solicitB, ip6B, &macA) }

// icmpv6Type is the ICMPv6 type of an Ethernet frame with a bare IPv6 header.
func icmpv6Type(frame []byte) uint8 { return frame[14+40] }

// nsFrame builds a neighbour solicitation for target from (ethSrc, src)
// to dst, with a source link-layer option when ll is not nil.
func nsFrame(t testing.TB, ethSrc fdb.MAC, src, dst, target netip.Addr, ll *fdb.MAC) []byte {
	return overlay.NDFrame(t, layers.ICMPv6TypeNeighborSolicitation, ethSrc, src, dst, target, 0, ll)
}

func TestNDSuppressionAnswersKnownAddress(t *testing.T) {
	for _, c := range []struct {
		name string
		ns   func(t testing.TB) []byte
	}{
		{"multicast", nsFromA},
		{"unicast", func(t testing.TB) []byte { return nsFrame(t, macA, ip6A, ip6B, ip6B, nil) }},
		{"duplicate address detection", func(t testing.TB) []byte { return nsFrame(t, macA, unspec6, solicitB, ip6B, nil) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, n, _ := newARPRig(t)
			n.Set(ip6B, macB)
			r.dev.Inject(c.ns(t))
			if err := r.encap(); err != nil {
				t.Fatal(err)
			}
			if len(r.conn.Sent()) != 0 {
				t.Fatal("a suppressed neighbour solicitation crossed the underlay")
			}
			w := r.dev.Written()
			if len(w) != 1 || icmpv6Type(w[0]) != 136 || fdb.MAC(w[0][0:6]) != macA || fdb.MAC(w[0][6:12]) != macB {
				t.Fatalf("written back %x, want one advertisement from %v to %v", w, macB, macA)
			}
			if s := r.ov.Stats(); s.NDAnswered != 1 || s.NDFlooded != 0 {
				t.Errorf("answered %d flooded %d, want 1 and 0", s.NDAnswered, s.NDFlooded)
			}
		})
	}
}

func TestNDSuppressionFloodsUnknownAndOwn(t *testing.T) {
	r, n, _ := newARPRig(t)
	n.Set(ip6B, macB)
	r.dev.Inject(nsFrame(t, macA, ip6A, solicitB, netip.MustParseAddr("fd00::9"), &macA)) // unknown
	r.dev.Inject(nsFrame(t, macB, unspec6, solicitB, ip6B, nil))                          // the owner checking its address
	for range 2 {
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.dev.Written()) != 0 || len(r.conn.Sent()) != 2 {
		t.Fatalf("written back %d, sent %d; want 0 and 2", len(r.dev.Written()), len(r.conn.Sent()))
	}
	if s := r.ov.Stats(); s.NDAnswered != 0 || s.NDFlooded != 2 {
		t.Errorf("answered %d flooded %d, want 0 and 2", s.NDAnswered, s.NDFlooded)
	}
}

func TestLocalTableRecordsIPv6Claims(t *testing.T) {
	r, _, l := newARPRig(t)
	r.dev.Inject(nsFrame(t, macA, unspec6, solicitB, ip6A, nil)) // DAD: not yet A's
	r.dev.Inject(overlay.NDFrame(t, layers.ICMPv6TypeNeighborAdvertisement, macA, ip6A, ip6B, ip6A, 0x60, &macA))
	r.dev.Inject(nsFrame(t, macB, ip6B, solicitB, ip6A, &macB))
	for range 3 {
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}
	got := map[fdb.MAC][]netip.Addr{}
	for _, e := range l.Snapshot() {
		got[e.MAC] = e.IPs
	}
	if len(got) != 2 || len(got[macA]) != 1 || got[macA][0] != ip6A || len(got[macB]) != 1 || got[macB][0] != ip6B {
		t.Fatalf("local table %v, want %v with %v and %v with %v", got, macA, ip6A, macB, ip6B)
	}
}

func TestEncapNDAnswerNoAllocs(t *testing.T) {
	r, n, _ := newARPRig(t)
	n.Set(ip6B, macB)
	r.dev.Repeat(nsFromA(t))
	if err := r.encap(); err != nil { // first sighting of macA allocates
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(1000, func() {
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("%v allocs per neighbour solicitation answered, want 0", a)
	}
	if s := r.ov.Stats(); s.NDAnswered < 1000 {
		t.Fatalf("%d solicitations answered, want every one", s.NDAnswered)
	}
}
