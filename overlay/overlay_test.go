package overlay_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/capture"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/overlaytest"
)

const testVNI = 42

var (
	localMAC = fdb.MAC{0x02, 0xaa, 0, 0, 0, 1}
	macA     = fdb.MAC{0x02, 0xaa, 0, 0, 0, 0xa}
	macB     = fdb.MAC{0x02, 0xaa, 0, 0, 0, 0xb}
	peer1    = netip.MustParseAddr("198.51.100.1")
	peer2    = netip.MustParseAddr("198.51.100.2")
	stranger = netip.MustParseAddr("198.51.100.66")
)

type rig struct {
	ov    *overlay.Overlay
	dev   *overlaytest.Device
	conn  *overlaytest.Conn
	fdb   *fdb.Table
	encap func() error
	decap func() error
}

// newRig builds a data plane of one queue on in-memory fakes, with two
// static peers; configure, if any, changes its configuration.
func newRig(t testing.TB, configure ...func(*overlay.Config)) *rig {
	t.Helper()
	r := &rig{dev: overlaytest.NewDevice(1), conn: overlaytest.NewConn(1), fdb: fdb.New(4789, time.Minute)}
	r.fdb.AddFlood(testVNI, peer1, fdb.SourceStatic)
	r.fdb.AddFlood(testVNI, peer2, fdb.SourceStatic)
	cfg := overlay.Config{VNI: testVNI, LocalMAC: localMAC, MTU: 1450}
	for _, f := range configure {
		f(&cfg)
	}
	var err error
	r.ov, err = overlay.New(cfg, []overlay.Queue{{Device: r.dev, Conn: r.conn}}, r.fdb)
	if err != nil {
		t.Fatal(err)
	}
	r.encap, r.decap = r.ov.EncapStepper(), r.ov.DecapStepper()
	return r
}

// udpFrame builds an Ethernet/IPv4/UDP frame with a correct checksum.
func udpFrame(t testing.TB, src, dst fdb.MAC, payload int) []byte {
	t.Helper()
	return udpFrameOver(t, false, src, dst, payload)
}

// udpFrameOver builds an Ethernet/UDP frame over IPv4, or IPv6 if v6,
// with a correct checksum.
func udpFrameOver(t testing.TB, v6 bool, src, dst fdb.MAC, payload int) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: layers.EthernetTypeIPv4}
	var ip interface {
		gopacket.NetworkLayer
		gopacket.SerializableLayer
	} = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2)}
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
			SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(bytes.Repeat([]byte{0x5a}, payload)))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func vxlanPacket(vni uint32, frame []byte) []byte {
	pkt := make([]byte, encap.HeaderLen+len(frame))
	if err := encap.Encode(pkt, vni); err != nil {
		panic(err)
	}
	copy(pkt[encap.HeaderLen:], frame)
	return pkt
}

func TestEncapKnownUnicastGoesToItsVTEP(t *testing.T) {
	r := newRig(t)
	r.fdb.Set(testVNI, macB, peer2, fdb.OriginStatic)
	frame := udpFrame(t, macA, macB, 100)
	r.dev.Inject(frame)
	if err := r.encap(); err != nil {
		t.Fatal(err)
	}
	sent := r.conn.Sent()
	if len(sent) != 1 || sent[0].Addr != netip.AddrPortFrom(peer2, 4789) {
		t.Fatalf("sent %d datagrams to %v, want 1 to %v", len(sent), sent, peer2)
	}
	var h encap.Header
	inner, err := encap.Decode(sent[0].Data, &h)
	if err != nil || h.VNI != testVNI || !bytes.Equal(inner, frame) {
		t.Fatalf("datagram decodes to VNI %d, err %v, inner equal %v", h.VNI, err, bytes.Equal(inner, frame))
	}
	if s := r.ov.Stats(); s.TxPackets != 1 || s.TxBytes != uint64(len(frame)) || s.TxFlooded != 0 {
		t.Fatalf("counters %+v", s)
	}
}

func TestEncapFloodsBroadcastAndUnknown(t *testing.T) {
	for _, tc := range []struct {
		name string
		dst  fdb.MAC
	}{
		{"broadcast", fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"multicast", fdb.MAC{0x01, 0x00, 0x5e, 0, 0, 1}},
		{"unknown unicast", macB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.dev.Inject(udpFrame(t, macA, tc.dst, 10))
			if err := r.encap(); err != nil {
				t.Fatal(err)
			}
			sent := r.conn.Sent()
			if len(sent) != 2 || sent[0].Addr.Addr() != peer1 || sent[1].Addr.Addr() != peer2 {
				t.Fatalf("sent to %v, want one copy to each of %v and %v", sent, peer1, peer2)
			}
			if s := r.ov.Stats(); s.TxFlooded != 1 || s.TxFloodCopies != 2 {
				t.Fatalf("flooded %d frames in %d copies, want 1 in 2", s.TxFlooded, s.TxFloodCopies)
			}
		})
	}
}

func TestEncapDrops(t *testing.T) {
	r := newRig(t)
	r.dev.Inject(make([]byte, 13))
	r.fdb.RemoveFlood(testVNI, peer1, fdb.SourceStatic)
	r.fdb.RemoveFlood(testVNI, peer2, fdb.SourceStatic)
	r.dev.Inject(udpFrame(t, macA, macB, 10))
	for range 2 {
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}
	d := r.ov.Stats().Drops
	if d["tx_short"] != 1 || d["no_destination"] != 1 || len(r.conn.Sent()) != 0 {
		t.Fatalf("tx_short %d, no_destination %d, sent %d; want 1, 1, 0",
			d["tx_short"], d["no_destination"], len(r.conn.Sent()))
	}
}

func TestDecapDeliversAndLearns(t *testing.T) {
	r := newRig(t)
	frame := udpFrame(t, macB, macA, 100)
	r.conn.Inject(vxlanPacket(testVNI, frame), netip.AddrPortFrom(peer2, 50000))
	if err := r.decap(); err != nil {
		t.Fatal(err)
	}
	w := r.dev.Written()
	if len(w) != 1 || !bytes.Equal(w[0], frame) {
		t.Fatalf("device got %d frames, want the inner frame", len(w))
	}
	// Learned with the VTEP's address and the tunnel port, not the
	// sender's (hashed) source port.
	if got, ok := r.fdb.Lookup(testVNI, macB); !ok || got.AddrPort() != netip.AddrPortFrom(peer2, 4789) {
		t.Fatalf("learned %v, %v; want %v:4789", got, ok, peer2)
	}
	if s := r.ov.Stats(); s.RxPackets != 1 || s.RxBytes != uint64(len(frame)) {
		t.Fatalf("counters %+v", s)
	}
}

// Without learning, a frame from an unknown source is delivered, and its
// source stays unknown: a frame to it is flooded.
func TestDecapWithoutLearning(t *testing.T) {
	r := newRig(t, func(c *overlay.Config) { c.NoLearning = true })
	frame := udpFrame(t, macB, macA, 100)
	r.conn.Inject(vxlanPacket(testVNI, frame), netip.AddrPortFrom(peer2, 50000))
	if err := r.decap(); err != nil {
		t.Fatal(err)
	}
	if w := r.dev.Written(); len(w) != 1 || !bytes.Equal(w[0], frame) {
		t.Fatalf("device got %d frames, want the inner frame", len(w))
	}
	if got, ok := r.fdb.Lookup(testVNI, macB); ok {
		t.Fatalf("%v learned behind %v, want not learned", macB, got.AddrPort())
	}
	r.dev.Inject(udpFrame(t, macA, macB, 10))
	if err := r.encap(); err != nil {
		t.Fatal(err)
	}
	if s := r.ov.Stats(); s.RxPackets != 1 || s.TxFlooded != 1 {
		t.Fatalf("received %d, flooded %d; want 1 and the reply flooded", s.RxPackets, s.TxFlooded)
	}
}

func TestDecapDropsByReason(t *testing.T) {
	good := udpFrame(t, macB, macA, 20)
	badSum := bytes.Clone(good)
	badSum[len(badSum)-1] ^= 0xff
	withSrc := func(src fdb.MAC) []byte {
		f := bytes.Clone(good)
		copy(f[6:12], src[:])
		return f
	}
	noI := vxlanPacket(testVNI, good)
	noI[0] = 0
	reserved := vxlanPacket(testVNI, good)
	reserved[7] = 1
	from1 := netip.AddrPortFrom(peer1, 40000)
	for _, tc := range []struct {
		name   string
		pkt    []byte
		src    netip.AddrPort
		reason overlay.DropReason
	}{
		{"short", []byte{8, 0, 0}, from1, overlay.DropShort},
		{"I flag clear", noI, from1, overlay.DropNoIFlag},
		{"reserved bits", reserved, from1, overlay.DropReservedBits},
		{"wrong VNI", vxlanPacket(testVNI+1, good), from1, overlay.DropVNI},
		{"non-peer", vxlanPacket(testVNI, good), netip.AddrPortFrom(stranger, 4789), overlay.DropUnknownVTEP},
		{"inner short", vxlanPacket(testVNI, good[:13]), from1, overlay.DropInnerShort},
		{"own MAC", vxlanPacket(testVNI, withSrc(localMAC)), from1, overlay.DropOwnMAC},
		{"multicast source", vxlanPacket(testVNI, withSrc(fdb.MAC{1, 0, 0x5e, 0, 0, 1})), from1, overlay.DropMulticastSource},
		{"zero source", vxlanPacket(testVNI, withSrc(fdb.MAC{})), from1, overlay.DropZeroSource},
		{"bad inner checksum", vxlanPacket(testVNI, badSum), from1, overlay.DropInnerChecksum},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.conn.Inject(tc.pkt, tc.src)
			if err := r.decap(); err != nil {
				t.Fatal(err)
			}
			drops := r.ov.Stats().Drops
			if _, ok := drops[tc.reason.String()]; !ok {
				t.Fatalf("no drop reason %q in %v", tc.reason, drops)
			}
			for reason, got := range drops {
				want := uint64(0)
				if reason == tc.reason.String() {
					want = 1
				}
				if got != want {
					t.Errorf("drops[%s] = %d, want %d", reason, got, want)
				}
			}
			if n := r.dev.WriteCount(); n != 0 {
				t.Errorf("%d frames reached the device", n)
			}
			if len(r.fdb.Entries()) != 0 {
				t.Errorf("a dropped packet taught the FDB: %v", r.fdb.Entries())
			}
		})
	}
}

func TestForwardStepNoAllocs(t *testing.T) {
	r := newRig(t)
	r.fdb.Set(testVNI, macB, peer2, fdb.OriginStatic)
	r.dev.Repeat(udpFrame(t, macA, macB, 1400))
	r.conn.Repeat(vxlanPacket(testVNI, udpFrame(t, macB, macA, 1400)), netip.AddrPortFrom(peer2, 50000))
	assertStepsNoAllocs(t, r)
}

// assertStepsNoAllocs fails t if a forward step in either direction of r
// allocates.
func assertStepsNoAllocs(t *testing.T, r *rig) {
	t.Helper()
	for name, step := range map[string]func() error{"encap": r.encap, "decap": r.decap} {
		if n := testing.AllocsPerRun(1000, func() {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s step: %v allocs per run, want 0", name, n)
		}
	}
}

func BenchmarkEncapStep(b *testing.B) {
	r := newRig(b)
	r.fdb.Set(testVNI, macB, peer2, fdb.OriginStatic)
	frame := udpFrame(b, macA, macB, 1400)
	r.dev.Repeat(frame)
	r.conn.Discard()
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := r.encap(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecapStep(b *testing.B) {
	r := newRig(b)
	frame := udpFrame(b, macB, macA, 1400)
	r.conn.Repeat(vxlanPacket(testVNI, frame), netip.AddrPortFrom(peer2, 50000))
	r.dev.Discard()
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := r.decap(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRunStopsEveryGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.ov.Run(ctx) }()
	// Let traffic flow through both directions before stopping.
	r.fdb.Set(testVNI, macB, peer2, fdb.OriginStatic)
	r.dev.Inject(udpFrame(t, macA, macB, 10))
	r.conn.Inject(vxlanPacket(testVNI, udpFrame(t, macB, macA, 10)), netip.AddrPortFrom(peer2, 1))
	deadline := time.Now().Add(5 * time.Second)
	for r.conn.SendCount() == 0 || r.dev.WriteCount() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no traffic forwarded")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	// Run returns only after its goroutines end; allow the runtime a
	// moment to retire the one that ran Run itself.
	for i := 0; runtime.NumGoroutine() > before && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Run returned, %d before", n, before)
	}
}

func TestRunReturnsDeviceFailure(t *testing.T) {
	r := newRig(t)
	r.dev.Close() // reads now fail
	err := r.ov.Run(context.Background())
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Run = %v, want the device's error", err)
	}
}

// A capture sees what crosses the data plane each way, and only one runs
// at a time.
func TestCaptureSeesBothDirections(t *testing.T) {
	r := newRig(t)
	r.fdb.Set(testVNI, macB, peer2, fdb.OriginStatic)
	s, err := capture.New(capture.Filter{Inner: true, MAC: macB, HasMAC: true}, capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := r.ov.Capture(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ov.Capture(s); !errors.Is(err, overlay.ErrCaptureRunning) {
		t.Fatalf("a second capture: %v, want ErrCaptureRunning", err)
	}
	out, in := udpFrame(t, macA, macB, 10), udpFrame(t, macB, macA, 20)
	r.dev.Inject(out)
	r.dev.Inject(udpFrame(t, macA, fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 30)) // filtered out
	r.conn.Inject(vxlanPacket(testVNI, in), netip.AddrPortFrom(peer2, 50000))
	for range 2 {
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.decap(); err != nil {
		t.Fatal(err)
	}
	stop()
	ctx := context.Background()
	for _, want := range []struct {
		dir   capture.Direction
		frame []byte
	}{{capture.Tx, out}, {capture.Rx, in}} {
		rec, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Dir != want.dir || !bytes.Equal(rec.Data, want.frame) {
			t.Fatalf("record %v %x, want %v %x", rec.Dir, rec.Data, want.dir, want.frame)
		}
	}
	if _, err := s.Next(ctx); err != capture.ErrClosed {
		t.Fatalf("a third record or %v; want the session closed after two", err)
	}
	if _, err := r.ov.Capture(s); err != nil {
		t.Fatalf("a capture after stop: %v", err)
	}
}

// Each VTEP's record counts what was sent to it (flooded copies too) and
// what was accepted from it, in batches that mix VTEPs.
func TestPerVTEPCounters(t *testing.T) {
	dev, conn := overlaytest.NewDevice(8), overlaytest.NewConn(8)
	table := fdb.New(4789, time.Minute)
	table.AddFlood(testVNI, peer1, fdb.SourceStatic)
	table.AddFlood(testVNI, peer2, fdb.SourceStatic)
	table.Set(testVNI, macB, peer2, fdb.OriginStatic)
	ov, err := overlay.New(overlay.Config{VNI: testVNI, LocalMAC: localMAC, MTU: 1450}, []overlay.Queue{{Device: dev, Conn: conn}}, table)
	if err != nil {
		t.Fatal(err)
	}
	unicast, bcast := udpFrame(t, macA, macB, 100), udpFrame(t, macA, fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 10)
	for _, f := range [][]byte{unicast, unicast, bcast, unicast} {
		dev.Inject(f)
	}
	if err := ov.EncapStepper()(); err != nil {
		t.Fatal(err)
	}
	from := udpFrame(t, fdb.MAC{0x02, 0xbb, 0, 0, 0, 1}, macA, 50)
	for _, src := range []netip.Addr{peer1, peer1, stranger, peer2, peer1} {
		conn.Inject(vxlanPacket(testVNI, from), netip.AddrPortFrom(src, 40000))
	}
	if err := ov.DecapStepper()(); err != nil {
		t.Fatal(err)
	}
	got := map[netip.Addr]fdb.VTEPState{}
	for _, v := range table.VTEPs() {
		got[v.VTEP.Addr()] = v
	}
	u, b, r := uint64(len(unicast)), uint64(len(bcast)), uint64(len(from))
	for _, w := range []struct {
		vtep               netip.Addr
		txP, txB, rxP, rxB uint64
	}{
		{peer1, 1, b, 3, 3 * r},
		{peer2, 4, 3*u + b, 1, r},
	} {
		g := got[w.vtep]
		if g.TxPackets != w.txP || g.TxBytes != w.txB || g.RxPackets != w.rxP || g.RxBytes != w.rxB || !g.Seen {
			t.Errorf("%v: tx %d/%d rx %d/%d seen %v; want tx %d/%d rx %d/%d, seen",
				w.vtep, g.TxPackets, g.TxBytes, g.RxPackets, g.RxBytes, g.Seen, w.txP, w.txB, w.rxP, w.rxB)
		}
	}
}

// A VNI that floods to a multicast group accepts an unknown sender in
// Config.GroupSenders, learns the frame's source behind it and answers
// it by unicast; one outside stays dropped. Steady traffic from an
// admitted sender allocates nothing.
func TestGroupSendersAdmitted(t *testing.T) {
	member, bad := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("203.0.113.8")
	r := newRig(t, func(c *overlay.Config) { c.GroupSenders = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")} })
	// A sender in the prefix whose datagram fails another check (here:
	// another VNI's) is not admitted by it.
	r.conn.Inject(vxlanPacket(testVNI+1, udpFrame(t, macB, macA, 100)), netip.AddrPortFrom(bad, 4789))
	if err := r.decap(); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.fdb.KnownVTEP(bad); ok {
		t.Errorf("%s was admitted by a datagram of another VNI", bad)
	}
	r.conn.Inject(vxlanPacket(testVNI, udpFrame(t, macB, macA, 100)), netip.AddrPortFrom(member, 4789))
	r.conn.Inject(vxlanPacket(testVNI, udpFrame(t, fdb.MAC{0x02, 0xaa, 0, 0, 0, 0xc}, macA, 100)), netip.AddrPortFrom(stranger, 4789))
	for range 2 { // a batch of one datagram each
		if err := r.decap(); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.dev.WriteCount(); n != 1 {
		t.Fatalf("%d frames reached the device, want the member's one", n)
	}
	if got := r.ov.Stats().Drops[overlay.DropUnknownVTEP.String()]; got != 1 {
		t.Errorf("drops[unknown_vtep] = %d, want the stranger's 1", got)
	}
	if v, ok := r.fdb.Lookup(testVNI, macB); !ok || v.AddrPort().Addr() != member {
		t.Errorf("the member's MAC was not learned behind it: %v, %v", v, ok)
	}
	r.dev.Repeat(udpFrame(t, macA, macB, 1400))
	if err := r.encap(); err != nil {
		t.Fatal(err)
	}
	if sent := r.conn.Sent(); len(sent) != 1 || sent[0].Addr.Addr() != member {
		t.Fatalf("the answer went to %v, want the member %s alone", sent, member)
	}
	r.conn.Repeat(vxlanPacket(testVNI, udpFrame(t, macB, macA, 1400)), netip.AddrPortFrom(member, 50000))
	assertStepsNoAllocs(t, r)
}
