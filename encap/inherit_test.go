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

func TestInnerFields(t *testing.T) {
	for _, tc := range []struct {
		name     string
		datagram []byte
		ttl, tos uint8
		df, ok   bool
	}{
		{"IPv4", innerDatagram(0x0800, 0x45, 0xb8, 0, 0, 0, 0, 0x40, 0, 17), 17, 0xb8, true, true},
		{"IPv4 ECT(1) kept", innerDatagram(0x0800, 0x45, 0x29, 0, 0, 0, 0, 0, 0, 3), 3, 0x29, false, true},
		{"IPv4 CE as ECT(0)", innerDatagram(0x0800, 0x45, 0x2b, 0, 0, 0, 0, 0, 0, 3), 3, 0x2a, false, true},
		{"IPv4 MF and offset, no DF", innerDatagram(0x0800, 0x45, 0, 0, 0, 0, 0, 0x3f, 0xff, 9), 9, 0, false, true},
		{"IPv4 TTL 0", innerDatagram(0x0800, 0x45, 0, 0, 0, 0, 0, 0, 0, 0), 0, 0, false, true},
		// Traffic class 0xb8 is split over the first two bytes.
		{"IPv6", innerDatagram(0x86dd, 0x6b, 0x80, 0, 0, 0, 0, 58, 33), 33, 0xb8, true, true},
		{"IPv6 CE as ECT(0)", innerDatagram(0x86dd, 0x60, 0x30, 0, 0, 0, 0, 58, 1), 1, 0x02, true, true},
		{"ARP", innerDatagram(0x0806, 0x45, 0xb8, 0, 0, 0, 0, 0x40, 0, 17), 0, 0, false, false},
		{"VLAN tag", innerDatagram(0x8100, 0, 1, 0x08, 0, 0x45, 0, 0, 0, 0, 0, 0, 0, 17), 0, 0, false, false},
		{"IPv4 type, version 6", innerDatagram(0x0800, 0x65, 0xb8, 0, 0, 0, 0, 0, 0, 17), 0, 0, false, false},
		{"short", innerDatagram(0x0800, 0x45)[:HeaderLen+EthernetHeaderLen+4], 0, 0, false, false},
		{"empty", nil, 0, 0, false, false},
		{"IPv4 cut before its TTL", innerDatagram(0x0800, 0x45, 0xb8, 0, 0, 0, 0, 0x40, 0, 17)[:HeaderLen+EthernetHeaderLen+8], 0, 0, false, false},
	} {
		ttl, tos, df, ok := InnerFields(tc.datagram)
		if ttl != tc.ttl || tos != tc.tos || df != tc.df || ok != tc.ok {
			t.Errorf("%s: TTL %d TOS %#x DF %v ok %v, want %d %#x %v %v", tc.name, ttl, tos, df, ok, tc.ttl, tc.tos, tc.df, tc.ok)
		}
	}
	d := innerDatagram(0x0800, 0x45, 0xb8, 0, 0, 0, 0, 0x40, 0, 17)
	if a := testing.AllocsPerRun(1000, func() { InnerFields(d) }); a != 0 {
		t.Fatalf("%v allocations, want 0", a)
	}
}

// FuzzInnerFields: whatever a container sends, reading the inner fields
// never panics.
func FuzzInnerFields(f *testing.F) {
	f.Add(innerDatagram(0x0800, 0x45, 0xb8, 0, 0, 0, 0, 0x40, 0, 17))
	f.Add(innerDatagram(0x86dd, 0x6b, 0x80, 0, 0, 0, 0, 58, 33))
	f.Fuzz(func(t *testing.T, datagram []byte) { InnerFields(datagram) })
}
