package offload

import (
	"encoding/binary"
	"testing"
)

// tcpFrame is a minimal Ethernet/IPv4/TCP frame between the given ports,
// with the fragment field fragOff.
func tcpFrame(srcPort, dstPort uint16, seq uint32, fragOff uint16) []byte {
	f := make([]byte, 14+20+20+10)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:]
	ip[0], ip[9] = 0x45, 6
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)))
	binary.BigEndian.PutUint16(ip[6:8], fragOff)
	copy(ip[12:16], []byte{10, 0, 0, 1})
	copy(ip[16:20], []byte{10, 0, 0, 2})
	binary.BigEndian.PutUint16(ip[20:22], srcPort)
	binary.BigEndian.PutUint16(ip[22:24], dstPort)
	binary.BigEndian.PutUint32(ip[24:28], seq)
	return f
}

func TestFlowHash(t *testing.T) {
	a1, a2 := tcpFrame(1000, 80, 1, 0), tcpFrame(1000, 80, 99999, 0)
	if FlowHash(a1) != FlowHash(a2) {
		t.Fatal("two segments of one flow hash differently")
	}
	if FlowHash(a1) == FlowHash(tcpFrame(1001, 80, 1, 0)) {
		t.Fatal("flows that differ in the source port hash alike")
	}
	// A non-first fragment has no ports: it must not read payload as ports.
	if FlowHash(tcpFrame(1000, 80, 1, 100)) != FlowHash(tcpFrame(2000, 80, 1, 100)) {
		t.Fatal("non-first fragments of one IP pair should hash alike")
	}
	// The first fragment (More Fragments set) goes with the others.
	if FlowHash(tcpFrame(1000, 80, 1, 0x2000)) != FlowHash(tcpFrame(2000, 80, 1, 100)) {
		t.Fatal("the first fragment hashes apart from the rest of its datagram")
	}
	for _, short := range [][]byte{nil, {1, 2, 3}, a1[:20], a1[:34]} {
		FlowHash(short) // must not panic
	}
	if n := testing.AllocsPerRun(100, func() { FlowHash(a1) }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}
