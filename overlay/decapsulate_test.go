package overlay

import (
	"bytes"
	"testing"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay/fdb"
)

// checkDatagram is the whole verdict on a received datagram: each case
// fails exactly one check, and the first failing check in the order of
// the RFC and of the Linux driver gives the reason.
func TestCheckDatagram(t *testing.T) {
	const vni = 42
	own := fdb.MAC{0x02, 0xaa, 0, 0, 0, 1}
	frame := func(src fdb.MAC) []byte {
		f := make([]byte, encap.EthernetHeaderLen+20)
		copy(f[0:6], own[:])
		copy(f[6:12], src[:])
		return f
	}
	good := frame(fdb.MAC{0x02, 0xbb, 0, 0, 0, 2})
	pkt := func(vni uint32, f []byte) []byte {
		p := make([]byte, encap.HeaderLen+len(f))
		if err := encap.Encode(p, vni); err != nil {
			t.Fatal(err)
		}
		copy(p[encap.HeaderLen:], f)
		return p
	}
	noI := pkt(vni, good)
	noI[0] = 0
	reserved := pkt(vni, good)
	reserved[7] = 1
	for _, tc := range []struct {
		name   string
		pkt    []byte
		known  bool
		reason DropReason
		ok     bool
	}{
		{"good", pkt(vni, good), true, 0, true},
		{"short", pkt(vni, good)[:encap.HeaderLen-1], true, DropShort, false},
		{"short from a stranger", pkt(vni, good)[:3], false, DropShort, false},
		{"I flag clear", noI, true, DropNoIFlag, false},
		{"reserved bits", reserved, true, DropReservedBits, false},
		{"wrong VNI", pkt(vni+1, good), true, DropVNI, false},
		{"wrong VNI from a stranger", pkt(vni+1, good), false, DropVNI, false},
		{"stranger", pkt(vni, good), false, DropUnknownVTEP, false},
		{"stranger with a short frame", pkt(vni, good[:13]), false, DropUnknownVTEP, false},
		{"inner short", pkt(vni, good[:13]), true, DropInnerShort, false},
		{"own MAC", pkt(vni, frame(own)), true, DropOwnMAC, false},
		{"multicast source", pkt(vni, frame(fdb.MAC{0x01, 0, 0x5e, 0, 0, 1})), true, DropMulticastSource, false},
		{"zero source", pkt(vni, frame(fdb.MAC{})), true, DropZeroSource, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, reason, ok := checkDatagram(tc.pkt, vni, tc.known, own)
			if ok != tc.ok || (!ok && reason != tc.reason) {
				t.Fatalf("checkDatagram = %v, %v; want %v, %v", reason, ok, tc.reason, tc.ok)
			}
			if ok && &f[0] != &tc.pkt[encap.HeaderLen] {
				t.Fatal("the frame is not the datagram's payload")
			}
		})
	}
}

// FuzzCheckDatagram holds checkDatagram to its contract on any datagram:
// it changes nothing, an accepted datagram has exactly the header Encode
// writes for the VNI and a frame whose source may be learned, and a
// rejection names the first check that fails, so that passing that one
// check leads to a later verdict, never to an earlier one.
func FuzzCheckDatagram(f *testing.F) {
	const vni = 42
	own := fdb.MAC{0x02, 0xaa, 0, 0, 0, 1}
	good := make([]byte, encap.HeaderLen+encap.EthernetHeaderLen+20)
	_ = encap.Encode(good, vni)
	copy(good[encap.HeaderLen:], own[:])
	copy(good[encap.HeaderLen+6:], []byte{0x02, 0xbb, 0, 0, 0, 2})
	for _, seed := range [][]byte{good, good[:encap.HeaderLen+13], good[:5], {0, 0, 0, 0, 0, 0, 42, 0}, {0x08, 0, 0, 0, 0, 0, 43, 0}} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, known bool) {
		orig := bytes.Clone(pkt)
		frame, reason, ok := checkDatagram(pkt, vni, known, own)
		if !bytes.Equal(pkt, orig) {
			t.Fatal("checkDatagram modified the datagram")
		}
		if !ok {
			if frame != nil || reason < DropShort || reason > DropZeroSource {
				t.Fatalf("rejected with frame of %d bytes, reason %v", len(frame), reason)
			}
			checkLaterVerdict(t, pkt, vni, known, own, reason)
			return
		}
		var hdr [encap.HeaderLen]byte
		_ = encap.Encode(hdr[:], vni)
		switch src := fdb.MAC(pkt[encap.HeaderLen+6 : encap.HeaderLen+12]); {
		case !known:
			t.Fatal("accepted from an unknown VTEP")
		case !bytes.Equal(pkt[:encap.HeaderLen], hdr[:]):
			t.Fatalf("accepted header % x, want % x", pkt[:encap.HeaderLen], hdr)
		case len(frame) < encap.EthernetHeaderLen || &frame[0] != &pkt[encap.HeaderLen] || len(frame) != len(pkt)-encap.HeaderLen:
			t.Fatal("the frame is not the whole payload of the datagram")
		case src == own || src.IsMulticast() || src.IsZero():
			t.Fatalf("accepted inner source %v", src)
		}
	})
}

// checkLaterVerdict checks that fixing what reason is about in pkt gives
// a verdict later in the order of the checks, or acceptance.
func checkLaterVerdict(t *testing.T, pkt []byte, vni uint32, known bool, own fdb.MAC, reason DropReason) {
	t.Helper()
	fixed := bytes.Clone(pkt)
	switch reason {
	case DropShort:
		if len(pkt) >= encap.HeaderLen {
			t.Fatalf("%d bytes dropped as short", len(pkt))
		}
		return
	case DropNoIFlag:
		fixed[0] |= 0x08
	case DropReservedBits:
		_ = encap.Encode(fixed, uint32(pkt[4])<<16|uint32(pkt[5])<<8|uint32(pkt[6]))
	case DropVNI:
		fixed[4], fixed[5], fixed[6] = byte(vni>>16), byte(vni>>8), byte(vni)
	case DropUnknownVTEP:
		known = true
	case DropInnerShort:
		if len(pkt) >= encap.HeaderLen+encap.EthernetHeaderLen {
			t.Fatalf("frame of %d bytes dropped as short", len(pkt)-encap.HeaderLen)
		}
		return
	case DropOwnMAC, DropMulticastSource, DropZeroSource:
		copy(fixed[encap.HeaderLen+6:], []byte{0x02, 0xbb, 0, 0, 0, 2})
	}
	_, again, ok := checkDatagram(fixed, vni, known, own)
	if !ok && again <= reason {
		t.Fatalf("dropped as %v; with that fixed, as %v", reason, again)
	}
}
