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
			r.encapEach(t, 1, 1, 0)
			w := r.dev.Written()
			if icmpv6Type(w[0]) != 136 || fdb.MAC(w[0][0:6]) != macA || fdb.MAC(w[0][6:12]) != macB {
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
	r.encapEach(t, 2, 0, 2)
	if s := r.ov.Stats(); s.NDAnswered != 0 || s.NDFlooded != 2 {
		t.Errorf("answered %d flooded %d, want 0 and 2", s.NDAnswered, s.NDFlooded)
	}
}

func TestLocalTableRecordsIPv6Claims(t *testing.T) {
	r, _, l := newARPRig(t)
	r.dev.Inject(nsFrame(t, macA, unspec6, solicitB, ip6A, nil)) // DAD: not yet A's
	r.dev.Inject(overlay.NDFrame(t, layers.ICMPv6TypeNeighborAdvertisement, macA, ip6A, ip6B, ip6A, 0x60, &macA))
	r.dev.Inject(nsFrame(t, macB, ip6B, solicitB, ip6A, &macB))
	r.encapEach(t, 3, 0, 3) // nobody known: all flooded
	got := map[fdb.MAC][]netip.Addr{}
	for _, e := range l.Snapshot() {
		got[e.MAC] = e.IPs
	}
	if len(got) != 2 || len(got[macA]) != 1 || got[macA][0] != ip6A || len(got[macB]) != 1 || got[macB][0] != ip6B {
		t.Fatalf("local table %v, want %v with %v and %v with %v", got, macA, ip6A, macB, ip6B)
	}
}
