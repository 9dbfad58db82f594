package encap_test

import (
	"bytes"
	"errors"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vxland/vxland/encap"
)

// sameView reports whether a and b are the same view of the same memory:
// equal length and capacity and, when there is any backing array, the same
// first element. Comparing contents alone would also pass for a copy.
func sameView(a, b []byte) bool {
	if len(a) != len(b) || cap(a) != cap(b) {
		return false
	}
	if cap(a) == 0 {
		return true
	}
	return &a[:1][0] == &b[:1][0]
}

// refDecode is the wire format of RFC 7348 §5 spelled out byte by byte, as an
// oracle that shares no code or masks with Decode.
func refDecode(pkt []byte) (vni uint32, err error) {
	switch {
	case len(pkt) < 8:
		return 0, encap.ErrShort
	case pkt[0]&0x08 == 0:
		return 0, encap.ErrNoIFlag
	case pkt[0] != 0x08, pkt[1] != 0, pkt[2] != 0, pkt[3] != 0, pkt[7] != 0:
		return 0, encap.ErrReservedBits
	}
	return uint32(pkt[4])<<16 | uint32(pkt[5])<<8 | uint32(pkt[6]), nil
}

func TestEncode(t *testing.T) {
	tests := []struct {
		vni  uint32
		want [8]byte
	}{
		{0, [8]byte{0x08, 0, 0, 0, 0x00, 0x00, 0x00, 0}},
		{1, [8]byte{0x08, 0, 0, 0, 0x00, 0x00, 0x01, 0}},
		{42, [8]byte{0x08, 0, 0, 0, 0x00, 0x00, 0x2a, 0}},
		{0xABCDEF, [8]byte{0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0}},
		{encap.MaxVNI, [8]byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0}},
	}
	for _, tt := range tests {
		// Start from garbage: Encode writes in place into reused buffers,
		// so it must overwrite every header byte, reserved ones included.
		var buf [16]byte
		for i := range buf {
			buf[i] = 0xa5
		}
		// len 16: Encode may only touch the first 8 bytes.
		if err := encap.Encode(buf[:], tt.vni); err != nil {
			t.Errorf("Encode(vni=%#x) = %v, want nil", tt.vni, err)
			continue
		}
		if got := [8]byte(buf[:8]); got != tt.want {
			t.Errorf("Encode(vni=%#x) wrote % x, want % x", tt.vni, got, tt.want)
		}
		if !bytes.Equal(buf[8:], bytes.Repeat([]byte{0xa5}, 8)) {
			t.Errorf("Encode(vni=%#x) wrote beyond b[:8]: % x", tt.vni, buf[8:])
		}

		// len 8, cap 16: nor may it reslice into the spare capacity.
		for i := range buf {
			buf[i] = 0xa5
		}
		if err := encap.Encode(buf[:8], tt.vni); err != nil {
			t.Errorf("Encode(buf[:8], vni=%#x) = %v, want nil", tt.vni, err)
			continue
		}
		if got := [8]byte(buf[:8]); got != tt.want {
			t.Errorf("Encode(buf[:8], vni=%#x) wrote % x, want % x", tt.vni, got, tt.want)
		}
		if !bytes.Equal(buf[8:], bytes.Repeat([]byte{0xa5}, 8)) {
			t.Errorf("Encode(buf[:8], vni=%#x) wrote into spare capacity: % x", tt.vni, buf[8:])
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		len  int
		vni  uint32
		want error
	}{
		{"vni MaxVNI+1", 8, encap.MaxVNI + 1, encap.ErrVNIRange},
		{"vni 1<<31", 8, 1 << 31, encap.ErrVNIRange},
		{"vni MaxUint32", 8, 1<<32 - 1, encap.ErrVNIRange},
		{"len 0", 0, 42, encap.ErrShort},
		{"len 1", 1, 42, encap.ErrShort},
		{"len 7", 7, 42, encap.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf [16]byte
			for i := range buf {
				buf[i] = 0xa5
			}
			err := encap.Encode(buf[:tt.len], tt.vni)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Encode(len=%d, vni=%#x) = %v, want %v", tt.len, tt.vni, err, tt.want)
			}
			// A failed Encode must leave no half-written header behind.
			if !bytes.Equal(buf[:], bytes.Repeat([]byte{0xa5}, 16)) {
				t.Errorf("failed Encode modified the buffer: % x", buf)
			}
		})
	}
	if err := encap.Encode(nil, 42); !errors.Is(err, encap.ErrShort) {
		t.Errorf("Encode(nil, 42) = %v, want %v", err, encap.ErrShort)
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
		vni  uint32
	}{
		{"vni 0 no payload", []byte{0x08, 0, 0, 0, 0, 0, 0, 0}, 0},
		{"vni 1", []byte{0x08, 0, 0, 0, 0, 0, 1, 0, 0xde, 0xad}, 1},
		{"vni 42", []byte{0x08, 0, 0, 0, 0, 0, 0x2a, 0, 0xff}, 42},
		{"vni 0xABCDEF", []byte{0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0, 1, 2, 3}, 0xABCDEF},
		{"vni 0x010203", []byte{0x08, 0, 0, 0, 0x01, 0x02, 0x03, 0, 4}, 0x010203},
		{"vni MaxVNI", []byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0, 0}, encap.MaxVNI},
		{"MTU-sized", append([]byte{0x08, 0, 0, 0, 0, 0x10, 0, 0}, make([]byte, 1464)...), 0x1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.pkt)
			h := encap.Header{VNI: 0xdeadbeef} // stale value must be overwritten
			payload, err := encap.Decode(tt.pkt, &h)
			if err != nil {
				t.Fatalf("Decode(% x) = %v, want nil", tt.pkt[:8], err)
			}
			if h.VNI != tt.vni {
				t.Errorf("VNI = %#x, want %#x", h.VNI, tt.vni)
			}
			if !bytes.Equal(payload, tt.pkt[8:]) {
				t.Errorf("payload = % x, want % x", payload, tt.pkt[8:])
			}
			if !sameView(payload, tt.pkt[8:]) {
				t.Errorf("payload is not a view of pkt[8:] (len %d cap %d, want len %d cap %d)",
					len(payload), cap(payload), len(tt.pkt)-8, cap(tt.pkt)-8)
			}
			if !bytes.Equal(tt.pkt, orig) {
				t.Errorf("Decode modified pkt")
			}
		})
	}
}

func TestDecodePayloadSharesMemory(t *testing.T) {
	pkt := []byte{0x08, 0, 0, 0, 0, 0, 7, 0, 0x11, 0x22}
	var h encap.Header
	payload, err := encap.Decode(pkt, &h)
	if err != nil {
		t.Fatal(err)
	}
	payload[0] = 0x99
	if pkt[8] != 0x99 {
		t.Errorf("write through payload not visible in pkt: payload is a copy")
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"nil", nil, encap.ErrShort},
		{"empty", []byte{}, encap.ErrShort},
		{"1 byte", []byte{0x08}, encap.ErrShort},
		{"7 bytes", []byte{0x08, 0, 0, 0, 0, 0, 1}, encap.ErrShort},
		// The order of checks is documented: length, I flag, reserved.
		{"7 bytes of garbage", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, encap.ErrShort},
		{"all zero", make([]byte, 8), encap.ErrNoIFlag},
		{"I flag clear", []byte{0x00, 0, 0, 0, 0, 0, 42, 0, 0xaa}, encap.ErrNoIFlag},
		{"I flag clear, reserved set", []byte{0xf7, 0xff, 0xff, 0xff, 0, 0, 42, 0xff}, encap.ErrNoIFlag},
		// Extensions we do not speak must not be mistaken for plain VXLAN.
		{"GBP G bit and policy", []byte{0x88, 0x00, 0x12, 0x34, 0, 0, 42, 0}, encap.ErrReservedBits},
		{"GPE P bit, next proto IPv4", []byte{0x0c, 0, 0, 0x01, 0, 0, 42, 0}, encap.ErrReservedBits},
		{"all ones", bytes.Repeat([]byte{0xff}, 8), encap.ErrReservedBits},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := encap.Header{VNI: 99}
			payload, err := encap.Decode(tt.pkt, &h)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode(% x) = %v, want %v", tt.pkt, err, tt.want)
			}
			if payload != nil {
				t.Errorf("Decode returned payload % x with error", payload)
			}
		})
	}
}

func TestPeekVNI(t *testing.T) {
	for _, tc := range []struct {
		pkt  []byte
		vni  uint32
		want error
	}{
		{[]byte{0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0}, 0xabcdef, nil},
		// The rest of the header is Decode's to check.
		{[]byte{0x00, 0xff, 0xff, 0xff, 0, 0, 42, 0xff, 1, 2}, 42, nil},
		{[]byte{0x08, 0, 0, 0, 0, 0, 42}, 0, encap.ErrShort},
		{nil, 0, encap.ErrShort},
	} {
		if vni, err := encap.PeekVNI(tc.pkt); vni != tc.vni || !errors.Is(err, tc.want) {
			t.Errorf("PeekVNI(% x) = %d, %v; want %d, %v", tc.pkt, vni, err, tc.vni, tc.want)
		}
	}
}

// TestDecodeEveryBit flips each of the 64 header bits of valid headers one
// at a time and checks that every bit is classified as RFC 7348 §5 says:
// the I flag, 24 VNI bits, and 39 reserved bits (7 in byte 0, 24 in
// bytes 1–3, 8 in byte 7).
func TestDecodeEveryBit(t *testing.T) {
	for _, base := range []uint32{0, 0x5a5a5a, encap.MaxVNI} {
		var hdr [8]byte
		if err := encap.Encode(hdr[:], base); err != nil {
			t.Fatal(err)
		}
		var nFlag, nVNI, nReserved int
		for bit := range 64 {
			byteIdx, mask := bit/8, byte(0x80)>>(bit%8)
			pkt := hdr
			pkt[byteIdx] ^= mask

			var h encap.Header
			payload, err := encap.Decode(pkt[:], &h)
			switch {
			case byteIdx == 0 && mask == encap.FlagI:
				nFlag++
				if !errors.Is(err, encap.ErrNoIFlag) {
					t.Errorf("base %#x, I flag cleared (% x): err = %v, want %v", base, pkt, err, encap.ErrNoIFlag)
				}
			case byteIdx >= 4 && byteIdx <= 6:
				nVNI++
				want := base ^ uint32(mask)<<(8*(6-byteIdx))
				if err != nil || h.VNI != want || len(payload) != 0 {
					t.Errorf("base %#x, VNI bit %d flipped (% x): VNI %#x, err %v; want VNI %#x, nil",
						base, bit, pkt, h.VNI, err, want)
				}
			default:
				nReserved++
				if !errors.Is(err, encap.ErrReservedBits) {
					t.Errorf("base %#x, reserved bit %d (byte %d mask %#02x) set (% x): err = %v, want %v",
						base, bit, byteIdx, mask, pkt, err, encap.ErrReservedBits)
				}
			}
		}
		if nFlag != 1 || nVNI != 24 || nReserved != 39 {
			t.Fatalf("bit classification is off: %d flag, %d VNI, %d reserved", nFlag, nVNI, nReserved)
		}
	}
}

// TestEncodeDecodeRoundTrip walks VNIs across the whole 24-bit range: every
// single bit, its neighbours, and a stride that touches all three bytes.
func TestEncodeDecodeRoundTrip(t *testing.T) {
	vnis := []uint32{0, 1, encap.MaxVNI - 1, encap.MaxVNI}
	for i := range 24 {
		v := uint32(1) << i
		vnis = append(vnis, v, v-1, v+1)
	}
	for v := uint32(0); v <= encap.MaxVNI; v += 65537 {
		vnis = append(vnis, v)
	}
	for _, vni := range vnis {
		var buf [encap.HeaderLen]byte
		if err := encap.Encode(buf[:], vni); err != nil {
			t.Fatalf("Encode(%#x) = %v", vni, err)
		}
		var h encap.Header
		if _, err := encap.Decode(buf[:], &h); err != nil || h.VNI != vni {
			t.Fatalf("Decode(Encode(%#x)) = VNI %#x, %v", vni, h.VNI, err)
		}
	}
}

// Cross-checks against gopacket, a VXLAN implementation nobody on this team
// wrote. gopacket decodes UDP port 4789 as VXLAN.

var (
	outerSrcMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	outerDstMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
	innerSrcMAC = net.HardwareAddr{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01}
	innerDstMAC = net.HardwareAddr{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02}
)

// innerFrame serializes an ARP request in Ethernet, as a VM behind a VTEP
// would send it.
func innerFrame(t *testing.T) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: innerSrcMAC, DstMAC: innerDstMAC, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType:          layers.LinkTypeEthernet,
		Protocol:          layers.EthernetTypeIPv4,
		HwAddressSize:     6,
		ProtAddressSize:   4,
		Operation:         layers.ARPRequest,
		SourceHwAddress:   innerSrcMAC,
		SourceProtAddress: []byte{10, 244, 1, 2},
		DstHwAddress:      make([]byte, 6),
		DstProtAddress:    []byte{10, 244, 2, 3},
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, arp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// underlay describes an outer network layer for the cross-check.
type underlay struct {
	name     string
	ethType  layers.EthernetType
	network  func() gopacket.NetworkLayer
	overhead int
}

var underlays = []underlay{
	{"IPv4", layers.EthernetTypeIPv4, func() gopacket.NetworkLayer {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: net.IPv4(192, 0, 2, 1), DstIP: net.IPv4(192, 0, 2, 2)}
	}, encap.OverheadIPv4},
	{"IPv6", layers.EthernetTypeIPv6, func() gopacket.NetworkLayer {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
			SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	}, encap.OverheadIPv6},
}

func TestGopacketDecodesEncode(t *testing.T) {
	inner := innerFrame(t)
	for _, u := range underlays {
		for _, vni := range []uint32{0, 1, 42, 0xABCDEF, encap.MaxVNI} {
			// Encapsulate as the hot path does: the frame sits after
			// HeaderLen bytes of headroom and Encode writes in place.
			vx := make([]byte, encap.HeaderLen+len(inner))
			copy(vx[encap.HeaderLen:], inner)
			if err := encap.Encode(vx, vni); err != nil {
				t.Fatal(err)
			}

			l3 := u.network()
			udp := &layers.UDP{SrcPort: 49152, DstPort: encap.DefaultPort}
			if err := udp.SetNetworkLayerForChecksum(l3); err != nil {
				t.Fatal(err)
			}
			outer := &layers.Ethernet{SrcMAC: outerSrcMAC, DstMAC: outerDstMAC, EthernetType: u.ethType}
			buf := gopacket.NewSerializeBuffer()
			opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
			if err := gopacket.SerializeLayers(buf, opts,
				outer, l3.(gopacket.SerializableLayer), udp, gopacket.Payload(vx)); err != nil {
				t.Fatal(err)
			}

			p := gopacket.NewPacket(buf.Bytes(), layers.LayerTypeEthernet, gopacket.Default)
			if el := p.ErrorLayer(); el != nil {
				t.Fatalf("%s vni %#x: gopacket decode error: %v", u.name, vni, el.Error())
			}
			var got []gopacket.LayerType
			for _, l := range p.Layers() {
				got = append(got, l.LayerType())
			}
			// gopacket reports the inner frame's padding to the 60-byte
			// Ethernet minimum as a trailing Payload layer.
			if n := len(got); n > 0 && got[n-1] == gopacket.LayerTypePayload {
				got = got[:n-1]
			}
			want := []gopacket.LayerType{layers.LayerTypeEthernet, l3.LayerType(),
				layers.LayerTypeUDP, layers.LayerTypeVXLAN, layers.LayerTypeEthernet, layers.LayerTypeARP}
			if !equalLayerTypes(got, want) {
				t.Fatalf("%s vni %#x: layers %v, want %v", u.name, vni, got, want)
			}

			vxl := p.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
			if !vxl.ValidIDFlag || vxl.VNI != vni {
				t.Errorf("%s vni %#x: gopacket sees ValidIDFlag %v VNI %#x", u.name, vni, vxl.ValidIDFlag, vxl.VNI)
			}
			if vxl.GBPExtension || vxl.GBPDontLearn || vxl.GBPApplied || vxl.GBPGroupPolicyID != 0 {
				t.Errorf("%s vni %#x: gopacket sees GBP fields in our header: %+v", u.name, vni, vxl)
			}

			innerEth := p.Layers()[4].(*layers.Ethernet)
			if !bytes.Equal(innerEth.SrcMAC, innerSrcMAC) || !bytes.Equal(innerEth.DstMAC, innerDstMAC) {
				t.Errorf("%s vni %#x: inner MACs %v -> %v, want %v -> %v",
					u.name, vni, innerEth.SrcMAC, innerEth.DstMAC, innerSrcMAC, innerDstMAC)
			}
			if arp := p.Layer(layers.LayerTypeARP).(*layers.ARP); !bytes.Equal(arp.SourceHwAddress, innerSrcMAC) {
				t.Errorf("%s vni %#x: inner ARP sender %v, want %v",
					u.name, vni, net.HardwareAddr(arp.SourceHwAddress), innerSrcMAC)
			}

			// The overhead constants: outer packet minus inner L3 payload.
			outerL3 := len(buf.Bytes()) - 14
			if got := outerL3 - len(innerEth.Payload); got != u.overhead {
				t.Errorf("%s: measured overhead %d, constant says %d", u.name, got, u.overhead)
			}
		}
	}
}

func equalLayerTypes(a, b []gopacket.LayerType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecodeAcceptsGopacket(t *testing.T) {
	inner := innerFrame(t)
	for _, vni := range []uint32{0, 1, 42, 0xABCDEF, encap.MaxVNI} {
		buf := gopacket.NewSerializeBuffer()
		vx := &layers.VXLAN{ValidIDFlag: true, VNI: vni}
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, vx, gopacket.Payload(inner)); err != nil {
			t.Fatal(err)
		}
		pkt := buf.Bytes()
		var h encap.Header
		payload, err := encap.Decode(pkt, &h)
		if err != nil {
			t.Fatalf("Decode(gopacket VXLAN vni %#x: % x) = %v", vni, pkt[:8], err)
		}
		if h.VNI != vni {
			t.Errorf("Decode(gopacket VXLAN vni %#x) VNI = %#x", vni, h.VNI)
		}
		if !bytes.Equal(payload, inner) {
			t.Errorf("Decode(gopacket VXLAN vni %#x) payload differs from inner frame", vni)
		}

		// And byte for byte what we would have written.
		var ours [encap.HeaderLen]byte
		if err := encap.Encode(ours[:], vni); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours[:], pkt[:8]) {
			t.Errorf("vni %#x: gopacket wrote % x, Encode writes % x", vni, pkt[:8], ours)
		}
	}
}

func TestDecodeRejectsGopacketVariants(t *testing.T) {
	tests := []struct {
		name string
		vx   layers.VXLAN
		want error
	}{
		{"I flag clear", layers.VXLAN{VNI: 42}, encap.ErrNoIFlag},
		{"GBP G bit", layers.VXLAN{ValidIDFlag: true, VNI: 42, GBPExtension: true}, encap.ErrReservedBits},
		{"GBP policy ID", layers.VXLAN{ValidIDFlag: true, VNI: 42, GBPGroupPolicyID: 0x1234}, encap.ErrReservedBits},
		{"GBP D bit", layers.VXLAN{ValidIDFlag: true, VNI: 42, GBPDontLearn: true}, encap.ErrReservedBits},
		{"GBP A bit", layers.VXLAN{ValidIDFlag: true, VNI: 42, GBPApplied: true}, encap.ErrReservedBits},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := gopacket.NewSerializeBuffer()
			if err := tt.vx.SerializeTo(buf, gopacket.SerializeOptions{}); err != nil {
				t.Fatal(err)
			}
			var h encap.Header
			if _, err := encap.Decode(buf.Bytes(), &h); !errors.Is(err, tt.want) {
				t.Errorf("Decode(% x) = %v, want %v", buf.Bytes(), err, tt.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x00, 0, 0, 0, 0, 0, 42, 0})
	f.Add([]byte{0x88, 0x40, 0x12, 0x34, 0, 0, 42, 0})
	f.Add([]byte{0x0c, 0, 0, 0x03, 0, 0, 42, 0})
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 42, 0x01})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		orig := bytes.Clone(pkt)
		var h encap.Header
		payload, err := encap.Decode(pkt, &h)
		if !bytes.Equal(pkt, orig) {
			t.Fatalf("Decode modified its input")
		}
		// A receiver of several VNIs picks one by PeekVNI, then Decodes:
		// both read the same VNI, and only a short packet names none.
		peeked, peekErr := encap.PeekVNI(pkt)
		if (peekErr != nil) != (len(pkt) < encap.HeaderLen) || (err == nil && peeked != h.VNI) {
			t.Fatalf("PeekVNI(% x) = %d, %v; Decode = %d, %v", pkt, peeked, peekErr, h.VNI, err)
		}

		wantVNI, wantErr := refDecode(pkt)
		if err != nil {
			if !errors.Is(err, encap.ErrShort) && !errors.Is(err, encap.ErrNoIFlag) && !errors.Is(err, encap.ErrReservedBits) {
				t.Fatalf("Decode(% x) = %v, not a sentinel", pkt, err)
			}
			if !errors.Is(err, wantErr) {
				t.Fatalf("Decode(% x) = %v, want %v", pkt, err, wantErr)
			}
			return
		}
		if wantErr != nil {
			t.Fatalf("Decode(% x) succeeded with VNI %#x, want %v", pkt, h.VNI, wantErr)
		}
		if h.VNI != wantVNI || h.VNI > encap.MaxVNI {
			t.Fatalf("Decode(% x) VNI = %#x, want %#x", pkt, h.VNI, wantVNI)
		}
		if !sameView(payload, pkt[encap.HeaderLen:]) {
			t.Fatalf("payload is not the view pkt[8:]: len %d cap %d, pkt len %d cap %d",
				len(payload), cap(payload), len(pkt), cap(pkt))
		}

		// Round trip: re-encoding the VNI reproduces the header exactly,
		// so Decode accepts only headers that Encode can write.
		var hdr [encap.HeaderLen]byte
		if err := encap.Encode(hdr[:], h.VNI); err != nil {
			t.Fatalf("Encode(%#x) = %v", h.VNI, err)
		}
		if !bytes.Equal(hdr[:], pkt[:encap.HeaderLen]) {
			t.Fatalf("Encode(Decode(% x)) = % x", pkt[:encap.HeaderLen], hdr)
		}

		// gopacket agrees on anything we accept.
		var vx layers.VXLAN
		if err := vx.DecodeFromBytes(pkt, gopacket.NilDecodeFeedback); err != nil {
			t.Fatalf("gopacket rejects % x: %v", pkt, err)
		}
		if !vx.ValidIDFlag || vx.VNI != h.VNI || vx.GBPExtension || vx.GBPGroupPolicyID != 0 {
			t.Fatalf("gopacket decodes % x as %+v, we as VNI %#x", pkt[:8], vx, h.VNI)
		}
	})
}

func FuzzEncode(f *testing.F) {
	f.Add(uint32(0), byte(0))
	f.Add(uint32(42), byte(0xff))
	f.Add(uint32(encap.MaxVNI), byte(0xa5))
	f.Add(uint32(encap.MaxVNI+1), byte(0xff))
	f.Add(uint32(1<<32-1), byte(0))
	f.Fuzz(func(t *testing.T, vni uint32, fill byte) {
		var buf [2 * encap.HeaderLen]byte
		for i := range buf {
			buf[i] = fill
		}
		err := encap.Encode(buf[:], vni)
		if vni > encap.MaxVNI {
			if !errors.Is(err, encap.ErrVNIRange) {
				t.Fatalf("Encode(%#x) = %v, want %v", vni, err, encap.ErrVNIRange)
			}
			if !bytes.Equal(buf[:], bytes.Repeat([]byte{fill}, len(buf))) {
				t.Fatalf("failed Encode(%#x) modified the buffer: % x", vni, buf)
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode(%#x) = %v", vni, err)
		}
		if !bytes.Equal(buf[encap.HeaderLen:], bytes.Repeat([]byte{fill}, encap.HeaderLen)) {
			t.Fatalf("Encode(%#x) wrote beyond the header: % x", vni, buf)
		}
		var h encap.Header
		payload, err := encap.Decode(buf[:], &h)
		if err != nil || h.VNI != vni {
			t.Fatalf("Decode(Encode(%#x)) = VNI %#x, %v", vni, h.VNI, err)
		}
		if !sameView(payload, buf[encap.HeaderLen:]) {
			t.Fatalf("payload is not the view buf[8:]")
		}
	})
}

func TestNoAllocs(t *testing.T) {
	var (
		buf      [encap.HeaderLen]byte
		short    [encap.HeaderLen - 1]byte
		valid    = []byte{0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0, 0xca, 0xfe}
		noIFlag  = []byte{0x00, 0, 0, 0, 0xab, 0xcd, 0xef, 0}
		reserved = []byte{0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 1}
		h        encap.Header
	)
	tests := []struct {
		name string
		fn   func()
	}{
		{"Encode", func() { _ = encap.Encode(buf[:], 0xABCDEF) }},
		{"Encode/ErrShort", func() { _ = encap.Encode(short[:], 0xABCDEF) }},
		{"Encode/ErrVNIRange", func() { _ = encap.Encode(buf[:], encap.MaxVNI+1) }},
		{"Decode", func() { _, _ = encap.Decode(valid, &h) }},
		{"Decode/ErrShort", func() { _, _ = encap.Decode(short[:], &h) }},
		{"Decode/ErrNoIFlag", func() { _, _ = encap.Decode(noIFlag, &h) }},
		{"Decode/ErrReservedBits", func() { _, _ = encap.Decode(reserved, &h) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(1000, tt.fn); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tt.name, n)
		}
	}
}

// The benchmarks work on an MTU-sized packet: the UDP payload of a
// 1500-byte IPv4 datagram (1500 - 20 IP - 8 UDP). SetBytes reports packet
// throughput, which is what the overlay is sized by; the work itself is
// constant in the packet length.
const benchPacketLen = 1500 - 20 - 8

var (
	sinkErr     error
	sinkPayload []byte
	sinkHeader  encap.Header
)

func BenchmarkEncode(b *testing.B) {
	pkt := make([]byte, benchPacketLen)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	var vni uint32
	for b.Loop() {
		sinkErr = encap.Encode(pkt, vni&encap.MaxVNI)
		vni++
	}
}

func BenchmarkDecode(b *testing.B) {
	pkt := make([]byte, benchPacketLen)
	if err := encap.Encode(pkt, 0xABCDEF); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		sinkPayload, sinkErr = encap.Decode(pkt, &sinkHeader)
	}
	if sinkErr != nil || sinkHeader.VNI != 0xABCDEF {
		b.Fatalf("Decode = VNI %#x, %v", sinkHeader.VNI, sinkErr)
	}
}
