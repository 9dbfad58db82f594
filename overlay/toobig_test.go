package overlay_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/offload"
)

// dfFrame is udpFrame with DF set in its IPv4 header.
func dfFrame(t testing.TB, src, dst fdb.MAC, payload int) []byte {
	f := udpFrame(t, src, dst, payload)
	ip := f[14:34]
	ip[6] |= 0x40
	binary.BigEndian.PutUint16(ip[10:12], 0)
	binary.BigEndian.PutUint16(ip[10:12], ^offload.Checksum(ip, 0))
	return f
}

// A packet larger than the MTU never crosses the underlay: with DF it is
// answered with "fragmentation needed" through the device, without DF it
// is dropped; both are counted. A packet of exactly the MTU goes.
func TestEncapTooBig(t *testing.T) {
	r := newRig(t)
	r.fdb.Set(testVNI, macB, peer2, fdb.OriginStatic)
	for _, f := range [][]byte{
		dfFrame(t, macA, macB, 1450-28+1),
		udpFrame(t, macA, macB, 1450-28+1),
		dfFrame(t, macA, macB, 1450-28),
	} {
		r.dev.Inject(f)
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}
	if sent := r.conn.Sent(); len(sent) != 1 || len(sent[0].Data) != 8+14+1450 {
		t.Errorf("underlay got %d datagrams, want only the one that fits the MTU", len(sent))
	}
	w := r.dev.Written()
	if len(w) != 1 {
		t.Fatalf("device got %d frames, want one ICMP answer", len(w))
	}
	icmp := w[0][14+20:]
	if fdb.MAC(w[0][0:6]) != macA || fdb.MAC(w[0][6:12]) != localMAC || icmp[0] != 3 || icmp[1] != 4 || binary.BigEndian.Uint16(icmp[6:8]) != 1450 {
		t.Errorf("answer %x, want fragmentation needed, MTU 1450, from the TAP to the sender", w[0][:42])
	}
	s := r.ov.Stats()
	if s.Drops["too_big"] != 2 || s.ICMPTooBigSent != 1 {
		t.Errorf("too_big %d, icmp_too_big_sent %d; want 2 and 1", s.Drops["too_big"], s.ICMPTooBigSent)
	}
}

// A sender that ignores the answers gets them at a bounded rate; whatever
// is not answered is counted.
func TestEncapTooBigRateLimited(t *testing.T) {
	r := newRig(t)
	r.dev.Repeat(dfFrame(t, macA, macB, 1500))
	r.dev.Discard()
	const n = 1000
	start := time.Now()
	for range n {
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}
	// The bucket's bound, however long the loop took: the burst, and one
	// a millisecond after it.
	most := 50 + uint64(time.Since(start)/time.Millisecond) + 1
	s := r.ov.Stats()
	if s.Drops["too_big"] != n || s.ICMPTooBigSent+s.ICMPTooBigLimited != n || s.ICMPTooBigSent < 50 || s.ICMPTooBigSent > most {
		t.Errorf("too_big %d, sent %d, rate limited %d; want %d = sent + rate limited, and 50 to %d sent",
			s.Drops["too_big"], s.ICMPTooBigSent, s.ICMPTooBigLimited, n, most)
	}
	if a := testing.AllocsPerRun(1000, func() {
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("%v allocs per frame too big, want 0", a)
	}
}
