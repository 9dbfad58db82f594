package encap

import "testing"

// innerDatagram is a VXLAN datagram whose inner frame has etherType and
// then ip.
func innerDatagram(etherType uint16, ip ...byte) []byte {
	d := make([]byte, HeaderLen+EthernetHeaderLen, HeaderLen+EthernetHeaderLen+40)
	d[HeaderLen+12], d[HeaderLen+13] = byte(etherType>>8), byte(etherType)
	d = append(d, ip...)
	return append(d, make([]byte, 40-len(ip))...)
}

func TestInnerTTLTOS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		datagram []byte
		ttl, tos uint8
		ok       bool
	}{
		{"IPv4", innerDatagram(0x0800, 0x45, 0xb8, 0, 0, 0, 0, 0x40, 0, 17), 17, 0xb8, true},
		{"IPv4 ECT(1) kept", innerDatagram(0x0800, 0x45, 0x29, 0, 0, 0, 0, 0, 0, 3), 3, 0x29, true},
		{"IPv4 CE as ECT(0)", innerDatagram(0x0800, 0x45, 0x2b, 0, 0, 0, 0, 0, 0, 3), 3, 0x2a, true},
		{"IPv4 TTL 0", innerDatagram(0x0800, 0x45, 0, 0, 0, 0, 0, 0, 0, 0), 0, 0, true},
		// Traffic class 0xb8 is split over the first two bytes.
		{"IPv6", innerDatagram(0x86dd, 0x6b, 0x80, 0, 0, 0, 0, 58, 33), 33, 0xb8, true},
		{"IPv6 CE as ECT(0)", innerDatagram(0x86dd, 0x60, 0x30, 0, 0, 0, 0, 58, 1), 1, 0x02, true},
		{"ARP", innerDatagram(0x0806, 0x45, 0xb8, 0, 0, 0, 0, 0, 0, 17), 0, 0, false},
		{"VLAN tag", innerDatagram(0x8100, 0, 1, 0x08, 0, 0x45, 0, 0, 0, 0, 0, 0, 0, 17), 0, 0, false},
		{"IPv4 type, version 6", innerDatagram(0x0800, 0x65, 0xb8, 0, 0, 0, 0, 0, 0, 17), 0, 0, false},
		{"short", innerDatagram(0x0800, 0x45)[:HeaderLen+EthernetHeaderLen+4], 0, 0, false},
		{"empty", nil, 0, 0, false},
	} {
		ttl, tos, ok := InnerTTLTOS(tc.datagram)
		if ttl != tc.ttl || tos != tc.tos || ok != tc.ok {
			t.Errorf("%s: TTL %d TOS %#x ok %v, want %d %#x %v", tc.name, ttl, tos, ok, tc.ttl, tc.tos, tc.ok)
		}
	}
	d := innerDatagram(0x0800, 0x45, 0xb8, 0, 0, 0, 0, 0x40, 0, 17)
	if a := testing.AllocsPerRun(1000, func() { InnerTTLTOS(d) }); a != 0 {
		t.Fatalf("%v allocations, want 0", a)
	}
}
