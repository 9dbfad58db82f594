package capture

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/offload"
)

var (
	local = netip.MustParseAddrPort("192.0.2.1:4789")
	peer  = netip.MustParseAddrPort("192.0.2.2:4789")
	macA  = fdb.MAC{0x02, 0, 0, 0, 0, 0xa}
	macB  = fdb.MAC{0x02, 0, 0, 0, 0, 0xb}
	macC  = fdb.MAC{0x02, 0, 0, 0, 0, 0xc}
)

// datagram returns a VXLAN datagram carrying a frame from src to dst, and
// the frame.
func datagram(t testing.TB, src, dst fdb.MAC) ([]byte, []byte) {
	t.Helper()
	d := make([]byte, encap.HeaderLen+encap.EthernetHeaderLen+46)
	if err := encap.Encode(d, 42); err != nil {
		t.Fatal(err)
	}
	f := d[encap.HeaderLen:]
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	f[12], f[13] = 0x88, 0xb5 // local experimental EtherType
	return d, f
}

func next(t *testing.T, s *Session) Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return r
}

func TestFilterKeepsOnlyItsMACAndVTEP(t *testing.T) {
	s, err := New(Filter{Inner: true, MAC: macB, HasMAC: true, VTEP: peer.Addr()}, Options{Local: local})
	if err != nil {
		t.Fatal(err)
	}
	other := netip.MustParseAddrPort("192.0.2.3:4789")
	for _, tc := range []struct {
		src, dst fdb.MAC
		vtep     netip.AddrPort
		keep     bool
	}{
		{macA, macB, peer, true},
		{macB, macA, peer, true},
		{macA, macC, peer, false},
		{macA, macB, other, false},
	} {
		d, f := datagram(t, tc.src, tc.dst)
		s.Offer(Tx, tc.vtep, d, f)
		if got := len(s.ready) == 1; got != tc.keep {
			t.Fatalf("%v -> %v via %v: kept %v, want %v", tc.src, tc.dst, tc.vtep, got, tc.keep)
		}
		if tc.keep {
			r := next(t, s)
			if string(r.Data) != string(f) || r.Outer || r.Length != len(f) {
				t.Fatalf("record %+v, want the inner frame", r)
			}
			s.Release(r)
		}
	}
}

// A reader that does not keep up loses packets, counted; forwarding is
// never held up.
func TestFullSessionDropsAndCounts(t *testing.T) {
	s, err := New(Filter{Inner: true}, Options{Local: local, Buffers: 2})
	if err != nil {
		t.Fatal(err)
	}
	d, f := datagram(t, macA, macB)
	for range 5 {
		s.Offer(Rx, peer, d, f)
	}
	if s.Dropped() != 3 || len(s.ready) != 2 {
		t.Fatalf("dropped %d, ready %d; want 3 and 2", s.Dropped(), len(s.ready))
	}
	s.Release(next(t, s))
	s.Offer(Rx, peer, d, f)
	if s.Dropped() != 3 || len(s.ready) != 2 {
		t.Fatalf("after a release: dropped %d, ready %d; want 3 and 2", s.Dropped(), len(s.ready))
	}
}

// An outer record is a frame that decodes as the VXLAN packet a wire
// would carry, from the sender to the receiver.
func TestOuterRecordDecodes(t *testing.T) {
	for _, tc := range []struct {
		name        string
		local, peer netip.AddrPort
	}{
		{"IPv4", local, peer},
		{"IPv6", netip.MustParseAddrPort("[2001:db8::1]:4789"), netip.MustParseAddrPort("[2001:db8::2]:4789")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Filter{Outer: true, Inner: true}, Options{Local: tc.local})
			if err != nil {
				t.Fatal(err)
			}
			d, f := datagram(t, macA, macB)
			s.Offer(Rx, tc.peer, d, f)
			inner, outer := next(t, s), next(t, s)
			if inner.Outer || !outer.Outer || string(inner.Data) != string(f) {
				t.Fatalf("records %+v, %+v: want the inner frame, then the outer packet", inner, outer)
			}
			p := gopacket.NewPacket(outer.Data, layers.LayerTypeEthernet, gopacket.Default)
			var src, dst string
			if ip4, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
				src, dst = ip4.SrcIP.String(), ip4.DstIP.String()
				if sum := offload.Checksum(outer.Data[encap.EthernetHeaderLen:encap.EthernetHeaderLen+20], 0); sum != 0xffff {
					t.Fatalf("IPv4 header checksum does not verify (sum %#x)", sum)
				}
			} else if ip6, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
				src, dst = ip6.SrcIP.String(), ip6.DstIP.String()
			}
			if src != tc.peer.Addr().String() || dst != tc.local.Addr().String() {
				t.Fatalf("outer %s -> %s, want %v -> %v (a received packet)", src, dst, tc.peer.Addr(), tc.local.Addr())
			}
			vx, ok := p.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
			if !ok || vx.VNI != 42 {
				t.Fatalf("no VXLAN layer with VNI 42 in %v", p)
			}
			eth, ok := gopacket.NewPacket(vx.Payload, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if !ok || eth.SrcMAC.String() != macA.String() {
				t.Fatalf("inner frame %v, want from %v", eth, macA)
			}
			if outer.Length != len(outer.Data) || outer.Length != encap.EthernetHeaderLen+len(d)+map[bool]int{true: 28, false: 48}[tc.local.Addr().Is4()] {
				t.Fatalf("outer length %d (data %d) for a datagram of %d", outer.Length, len(outer.Data), len(d))
			}
		})
	}
}

func TestSnaplenCutsData(t *testing.T) {
	s, err := New(Filter{Inner: true}, Options{Local: local, Snaplen: 20})
	if err != nil {
		t.Fatal(err)
	}
	d, f := datagram(t, macA, macB)
	s.Offer(Tx, peer, d, f)
	r := next(t, s)
	if len(r.Data) != 20 || r.Length != len(f) {
		t.Fatalf("data %d bytes, length %d; want 20 and %d", len(r.Data), r.Length, len(f))
	}
}

// Offer runs on the forwarding threads: it allocates nothing, whether it
// keeps, filters out or drops a packet.
func TestOfferNoAllocs(t *testing.T) {
	s, err := New(Filter{Inner: true, Outer: true, MAC: macB, HasMAC: true}, Options{Local: local, Buffers: 4})
	if err != nil {
		t.Fatal(err)
	}
	d, f := datagram(t, macA, macB)
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		s.Offer(Tx, peer, d, f)
		for range 2 { // the inner frame and the outer packet
			r, err := s.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.Release(r)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per kept packet, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { s.Offer(Tx, peer, d, f) }); n != 0 {
		t.Fatalf("%v allocations per dropped packet, want 0", n)
	}
}

func TestCloseEndsNext(t *testing.T) {
	s, err := New(Filter{Inner: true}, Options{Local: local})
	if err != nil {
		t.Fatal(err)
	}
	d, f := datagram(t, macA, macB)
	s.Offer(Tx, peer, d, f)
	s.Close()
	if _, err := s.Next(context.Background()); err != nil {
		t.Fatalf("a record offered before Close is lost: %v", err)
	}
	if _, err := s.Next(context.Background()); err != ErrClosed {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
	if _, err := New(Filter{}, Options{}); err != ErrNothingToCapture {
		t.Fatalf("New with an empty filter = %v", err)
	}
}
