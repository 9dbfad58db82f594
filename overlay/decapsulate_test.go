package overlay

import (
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
