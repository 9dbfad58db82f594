package overlay_test

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/overlaytest"
)

// muxRig is a Mux of VNIs 42 and 43 on one in-memory socket, each VNI
// with a device and an FDB of its own that knows peer2.
type muxRig struct {
	mux   *overlay.Mux
	conn  *overlaytest.Conn
	ovs   map[uint32]*overlay.Overlay
	devs  map[uint32]*overlaytest.Device
	demux func() error
}

func newMuxRig(t testing.TB, batch int) *muxRig {
	t.Helper()
	r := &muxRig{conn: overlaytest.NewConn(batch), ovs: map[uint32]*overlay.Overlay{}, devs: map[uint32]*overlaytest.Device{}}
	var ovs []*overlay.Overlay
	for _, vni := range []uint32{43, 42} {
		table := fdb.New(4789, time.Minute)
		table.AddFlood(vni, peer2, fdb.SourceStatic)
		dev := overlaytest.NewDevice(batch)
		ov, err := overlay.New(overlay.Config{VNI: vni, LocalMAC: localMAC, MTU: 1450}, []overlay.Queue{{Device: dev, Conn: r.conn}}, table)
		if err != nil {
			t.Fatal(err)
		}
		r.ovs[vni], r.devs[vni] = ov, dev
		ovs = append(ovs, ov)
	}
	var err error
	if r.mux, err = overlay.NewMux([]overlay.PacketConn{r.conn}, ovs); err != nil {
		t.Fatal(err)
	}
	r.demux = r.mux.DemuxStepper()
	return r
}

func TestMuxDeliversEachVNIToItsOwnDevice(t *testing.T) {
	r := newMuxRig(t, 8)
	from := netip.AddrPortFrom(peer2, 50000)
	// The same inner addresses in both VNIs: only the VNI tells them apart.
	a1, a2 := udpFrame(t, macB, macA, 10), udpFrame(t, macB, macA, 20)
	b1, b2 := udpFrame(t, macB, macA, 30), udpFrame(t, macB, macA, 40)
	for _, p := range [][]byte{vxlanPacket(42, a1), vxlanPacket(43, b1), vxlanPacket(43, b2), vxlanPacket(44, a1),
		{0x08, 0, 0}, vxlanPacket(42, a2)} {
		r.conn.Inject(p, from)
	}
	if err := r.demux(); err != nil {
		t.Fatal(err)
	}
	for vni, want := range map[uint32][][]byte{42: {a1, a2}, 43: {b1, b2}} {
		got := r.devs[vni].Written()
		if len(got) != len(want) || !bytes.Equal(got[0], want[0]) || !bytes.Equal(got[1], want[1]) {
			t.Errorf("VNI %d's device got %d frames, want its own %d in order", vni, len(got), len(want))
		}
		if s := r.ovs[vni].Stats(); s.RxPackets != 2 || s.Drops["vni_mismatch"] != 0 {
			t.Errorf("VNI %d: rx %d, vni_mismatch %d; want 2, 0", vni, s.RxPackets, s.Drops["vni_mismatch"])
		}
	}
	if s := r.mux.Stats(); s.Drops["vni_mismatch"] != 1 || s.Drops["short"] != 1 {
		t.Errorf("mux drops %v, want vni_mismatch 1 (VNI 44) and short 1", s.Drops)
	}
}

func TestMuxChecksEachVNIsAllowlist(t *testing.T) {
	r := newMuxRig(t, 8)
	r.ovs[43].FDB().RemoveFlood(43, peer2, fdb.SourceStatic)
	frame := udpFrame(t, macB, macA, 10)
	r.conn.Inject(vxlanPacket(42, frame), netip.AddrPortFrom(peer2, 50000))
	r.conn.Inject(vxlanPacket(43, frame), netip.AddrPortFrom(peer2, 50000))
	if err := r.demux(); err != nil {
		t.Fatal(err)
	}
	if s42, s43 := r.ovs[42].Stats(), r.ovs[43].Stats(); s42.RxPackets != 1 || s43.RxPackets != 0 || s43.Drops["unknown_vtep"] != 1 {
		t.Errorf("VNI 42 rx %d (want 1); VNI 43 rx %d, unknown_vtep %d (want 0, 1)", s42.RxPackets, s43.RxPackets, s43.Drops["unknown_vtep"])
	}
}

func TestMuxDemuxNoAllocs(t *testing.T) {
	r := newMuxRig(t, 1)
	r.conn.Repeat(vxlanPacket(43, udpFrame(t, macB, macA, 1400)), netip.AddrPortFrom(peer2, 50000))
	r.devs[43].Discard()
	if n := testing.AllocsPerRun(1000, func() {
		if err := r.demux(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("demux step: %v allocs per run, want 0", n)
	}
}

func TestMuxRunSendsEachVNIWithItsHeader(t *testing.T) {
	r := newMuxRig(t, 1)
	for vni, ov := range r.ovs {
		ov.FDB().Set(vni, macB, peer2, fdb.OriginStatic)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.mux.Run(ctx) }()
	r.devs[42].Inject(udpFrame(t, macA, macB, 42))
	r.devs[43].Inject(udpFrame(t, macA, macB, 43))
	deadline := time.Now().Add(5 * time.Second)
	for r.conn.SendCount() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sent := r.conn.Sent()
	if len(sent) != 2 {
		t.Fatalf("sent %d datagrams, want 2", len(sent))
	}
	for _, d := range sent {
		var h encap.Header
		inner, err := encap.Decode(d.Data, &h)
		// Each frame's UDP payload is as long as its VNI.
		if err != nil || len(inner) != len(udpFrame(t, macA, macB, int(h.VNI))) {
			t.Errorf("datagram of VNI %d carries a %d-byte frame, err %v: not that VNI's frame", h.VNI, len(inner), err)
		}
	}
}

func TestNewMuxRefuses(t *testing.T) {
	conn, other := overlaytest.NewConn(1), overlaytest.NewConn(1)
	ov := func(vni uint32, c overlay.PacketConn) *overlay.Overlay {
		o, err := overlay.New(overlay.Config{VNI: vni, MTU: 1450}, []overlay.Queue{{Device: overlaytest.NewDevice(1), Conn: c}}, fdb.New(4789, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	for name, ovs := range map[string][]*overlay.Overlay{
		"no VNI":             nil,
		"a VNI twice":        {ov(42, conn), ov(42, conn)},
		"another socket":     {ov(42, conn), ov(43, other)},
		"a queue per socket": {ov(42, conn)},
	} {
		conns := []overlay.PacketConn{conn}
		if name == "a queue per socket" {
			conns = append(conns, other)
		}
		if _, err := overlay.NewMux(conns, ovs); err == nil {
			t.Errorf("%s: NewMux accepted it", name)
		}
	}
}

// A VNI added takes its datagrams; a VNI removed gets none, and they are
// counted as of a VNI not served; its device is closed.
func TestMuxAddRemove(t *testing.T) {
	r := newMuxRig(t, 8)
	dev44 := overlaytest.NewDevice(8)
	table := fdb.New(4789, time.Minute)
	table.AddFlood(44, peer2, fdb.SourceStatic)
	ov44, err := overlay.New(overlay.Config{VNI: 44, LocalMAC: localMAC, MTU: 1450}, []overlay.Queue{{Device: dev44, Conn: r.conn}}, table)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.mux.Add(ov44); err != nil {
		t.Fatal(err)
	}
	if err := r.mux.Add(ov44); err == nil {
		t.Error("Add accepted VNI 44 twice")
	}
	if err := r.mux.Remove(43); err != nil {
		t.Fatal(err)
	}
	if got := r.mux.VNIs(); !slices.Equal(got, []uint32{42, 44}) {
		t.Fatalf("VNIs after adding 44 and removing 43: %v", got)
	}
	if _, err := r.devs[43].Read(make([][]byte, 1), make([]int, 1), 0); err == nil {
		t.Error("VNI 43's device is open after its removal")
	}
	frame := udpFrame(t, macB, macA, 10)
	for _, vni := range []uint32{42, 43, 44} {
		r.conn.Inject(vxlanPacket(vni, frame), netip.AddrPortFrom(peer2, 50000))
	}
	if err := r.mux.DemuxStepper()(); err != nil {
		t.Fatal(err)
	}
	if n42, n44 := len(r.devs[42].Written()), len(dev44.Written()); n42 != 1 || n44 != 1 {
		t.Errorf("VNI 42's device got %d frames, VNI 44's %d; want 1 each", n42, n44)
	}
	if s := r.mux.Stats(); s.Drops["vni_mismatch"] != 1 {
		t.Errorf("mux drops %v, want vni_mismatch 1 (VNI 43, removed)", s.Drops)
	}
	if err := r.mux.Remove(43); err == nil {
		t.Error("Remove accepted VNI 43, removed already")
	}
	if err := r.mux.Remove(42); err != nil {
		t.Fatal(err)
	}
	if err := r.mux.Remove(44); err == nil {
		t.Error("Remove accepted the last VNI")
	}
}

func BenchmarkMuxDecapStep(b *testing.B) {
	r := newMuxRig(b, 1)
	frame := udpFrame(b, macB, macA, 1400)
	r.conn.Repeat(vxlanPacket(43, frame), netip.AddrPortFrom(peer2, 50000))
	r.devs[43].Discard()
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := r.demux(); err != nil {
			b.Fatal(err)
		}
	}
}
