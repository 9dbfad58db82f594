package overlay_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/overlaytest"
)

// arpFrame builds a broadcast ARP request from (sha, spa) for tpa.
func arpFrame(sha fdb.MAC, spa, tpa netip.Addr) []byte {
	f := make([]byte, 42)
	copy(f[0:6], bytes.Repeat([]byte{0xff}, 6))
	copy(f[6:12], sha[:])
	binary.BigEndian.PutUint16(f[12:14], 0x0806)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], 0x0800)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], 1)
	copy(a[8:14], sha[:])
	s, t := spa.As4(), tpa.As4()
	copy(a[14:18], s[:])
	copy(a[24:28], t[:])
	return f
}

// encapEach runs one encapsulation step per frame injected, n in all,
// and checks how many frames went back to the device and how many
// datagrams crossed the underlay.
func (r *rig) encapEach(t *testing.T, n, wantWritten, wantSent int) {
	t.Helper()
	for range n {
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}
	if w, s := len(r.dev.Written()), len(r.conn.Sent()); w != wantWritten || s != wantSent {
		t.Fatalf("written back %d, sent %d; want %d and %d", w, s, wantWritten, wantSent)
	}
}

func newARPRig(t *testing.T) (*rig, *fdb.Neighbors, *fdb.LocalTable) {
	t.Helper()
	r := &rig{dev: overlaytest.NewDevice(1), conn: overlaytest.NewConn(1), fdb: fdb.New(4789, time.Minute)}
	r.fdb.AddFlood(testVNI, peer1, fdb.SourceStatic)
	n, l := fdb.NewNeighbors(), fdb.NewLocalTable(fdb.LocalLimits{})
	var err error
	r.ov, err = overlay.New(overlay.Config{VNI: testVNI, LocalMAC: localMAC, MTU: 1450, Neighbors: n, Local: l}, []overlay.Queue{{Device: r.dev, Conn: r.conn}}, r.fdb)
	if err != nil {
		t.Fatal(err)
	}
	r.encap = r.ov.EncapStepper()
	return r, n, l
}

var (
	ipA = netip.MustParseAddr("10.200.0.1")
	ipB = netip.MustParseAddr("10.200.0.2")
)

func TestARPSuppressionAnswersKnownAddress(t *testing.T) {
	r, n, _ := newARPRig(t)
	n.Set(ipB, macB)
	r.dev.Inject(arpFrame(macA, ipA, ipB))
	if err := r.encap(); err != nil {
		t.Fatal(err)
	}
	if len(r.conn.Sent()) != 0 {
		t.Fatal("a suppressed ARP request crossed the underlay")
	}
	w := r.dev.Written()
	if len(w) != 1 {
		t.Fatalf("%d frames written back, want the ARP reply", len(w))
	}
	reply := w[0]
	a := reply[14:]
	switch {
	case !bytes.Equal(reply[0:6], macA[:]) || !bytes.Equal(reply[6:12], macB[:]):
		t.Errorf("reply Ethernet %x -> %x, want %v -> %v", reply[6:12], reply[0:6], macB, macA)
	case binary.BigEndian.Uint16(a[6:8]) != 2:
		t.Errorf("op %d, want reply (2)", binary.BigEndian.Uint16(a[6:8]))
	case !bytes.Equal(a[8:14], macB[:]) || netip.AddrFrom4([4]byte(a[14:18])) != ipB:
		t.Errorf("sender %x %v, want %v %v", a[8:14], a[14:18], macB, ipB)
	case !bytes.Equal(a[18:24], macA[:]) || netip.AddrFrom4([4]byte(a[24:28])) != ipA:
		t.Errorf("target %x %v, want %v %v", a[18:24], a[24:28], macA, ipA)
	}
	if s := r.ov.Stats(); s.ARPAnswered != 1 || s.ARPFlooded != 0 {
		t.Errorf("answered %d flooded %d, want 1 and 0", s.ARPAnswered, s.ARPFlooded)
	}
}

func TestARPSuppressionFloodsUnknownAndGratuitous(t *testing.T) {
	r, n, _ := newARPRig(t)
	n.Set(ipB, macB)
	r.dev.Inject(arpFrame(macA, ipA, netip.MustParseAddr("10.200.0.9"))) // unknown
	r.dev.Inject(arpFrame(macB, ipB, ipB))                               // gratuitous
	r.encapEach(t, 2, 0, 2)
	if s := r.ov.Stats(); s.ARPAnswered != 0 || s.ARPFlooded != 2 {
		t.Errorf("answered %d flooded %d, want 0 and 2", s.ARPAnswered, s.ARPFlooded)
	}
}

func TestLocalTableRecordsContainers(t *testing.T) {
	r, _, l := newARPRig(t)
	r.dev.Inject(arpFrame(macA, ipA, ipB))
	r.dev.Inject(udpFrame(t, localMAC, macB, 10)) // from the host's own stack
	r.dev.Inject(udpFrame(t, fdb.MAC{0x01, 0, 0x5e, 0, 0, 1}, macB, 10))
	select {
	case <-l.Changed():
		t.Fatal("changed before any frame")
	default:
	}
	for range 3 {
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}
	snap := l.Snapshot()
	if len(snap) != 1 || snap[0].MAC != macA || len(snap[0].IPs) != 1 || snap[0].IPs[0] != ipA {
		t.Fatalf("local table %+v, want only %v with %v", snap, macA, ipA)
	}
	select {
	case <-l.Changed():
	default:
		t.Fatal("no change signalled for a new fdb.MAC")
	}
	if gone := l.Expire(0); len(gone) != 1 {
		t.Fatalf("Expire(0) removed %v", gone)
	}
}

func TestEncapStepNoAllocsWithControlPlane(t *testing.T) {
	for _, c := range []struct {
		name  string
		frame func(t testing.TB) []byte
	}{
		{"forwarded frame", func(t testing.TB) []byte { return udpFrame(t, macA, macB, 1400) }},
		{"neighbour solicitation answered", nsFromA},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, n, _ := newARPRig(t)
			n.Set(ipB, macB)
			n.Set(ip6B, macB)
			r.fdb.Set(testVNI, macB, peer1, fdb.OriginRemote)
			r.dev.Repeat(c.frame(t))
			r.conn.Discard()
			if err := r.encap(); err != nil { // first sighting of macA allocates
				t.Fatal(err)
			}
			if a := testing.AllocsPerRun(1000, func() {
				if err := r.encap(); err != nil {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Fatalf("%v allocs per %s with local learning on, want 0", a, c.name)
			}
			if s := r.ov.Stats(); s.TxPackets+s.NDAnswered < 1000 {
				t.Fatalf("%d frames sent, %d solicitations answered: the steps did not run", s.TxPackets, s.NDAnswered)
			}
		})
	}
}
