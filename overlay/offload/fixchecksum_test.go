package offload

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var checksumFrames = []struct {
	name string
	spec frameSpec
}{
	{"ipv4-tcp", frameSpec{tcpOptions: true, psh: true, payload: randomPayload(10, 1000)}},
	{"ipv4-tcp-odd", frameSpec{payload: randomPayload(11, 1001)}},
	{"ipv4-tcp-empty", frameSpec{fin: true}},
	{"ipv6-tcp", frameSpec{ipv6: true, tcpOptions: true, payload: randomPayload(12, 1387)}},
	{"ipv4-udp", frameSpec{udp: true, payload: randomPayload(13, 1400)}},
	{"ipv6-udp", frameSpec{ipv6: true, udp: true, payload: randomPayload(14, 7)}},
	{"vlan-ipv4-tcp", frameSpec{vlan: true, payload: randomPayload(15, 512)}},
	{"vlan-ipv6-udp", frameSpec{vlan: true, ipv6: true, udp: true, payload: randomPayload(16, 100)}},
}

func TestFixChecksum(t *testing.T) {
	for _, tc := range checksumFrames {
		t.Run(tc.name, func(t *testing.T) {
			good := buildFrame(t, tc.spec)
			l := readLayout(t, good)
			if !refL4Valid(good, l) {
				t.Fatal("test setup: gopacket built a frame with a bad checksum")
			}

			t.Run("valid", func(t *testing.T) {
				f := bytes.Clone(good)
				if got := FixChecksum(f); got != ChecksumValid {
					t.Fatalf("FixChecksum = %v, want %v", got, ChecksumValid)
				}
				if !bytes.Equal(f, good) {
					t.Fatal("valid frame was modified")
				}
			})

			t.Run("partial", func(t *testing.T) {
				f := bytes.Clone(good)
				makePartial(t, f)
				if bytes.Equal(f, good) {
					t.Fatal("test setup: partial sum equals the full checksum")
				}
				if got := FixChecksum(f); got != ChecksumCompleted {
					t.Fatalf("FixChecksum = %v, want %v", got, ChecksumCompleted)
				}
				// gopacket computed the correct checksum; nothing else
				// may have changed.
				if !bytes.Equal(f, good) {
					t.Fatalf("completed checksum %#04x, gopacket's %#04x",
						binary.BigEndian.Uint16(f[l.field:]), binary.BigEndian.Uint16(good[l.field:]))
				}
				if got := FixChecksum(f); got != ChecksumValid {
					t.Fatalf("second FixChecksum = %v, want %v", got, ChecksumValid)
				}
			})

			t.Run("corrupt-payload", func(t *testing.T) {
				f := bytes.Clone(good)
				f[l.l4+l.l4Len-1] ^= 0x40
				before := bytes.Clone(f)
				if got := FixChecksum(f); got != ChecksumBad {
					t.Fatalf("FixChecksum = %v, want %v", got, ChecksumBad)
				}
				if !bytes.Equal(f, before) {
					t.Fatal("bad frame was modified")
				}
			})

			t.Run("corrupt-partial", func(t *testing.T) {
				// A partial frame corrupted in flight: the field no
				// longer matches the pseudo-header of the (changed)
				// addresses, so it must not be "completed".
				f := bytes.Clone(good)
				makePartial(t, f)
				if l.v6 {
					f[l.ip+8+15] ^= 1 // last byte of the source address
				} else {
					f[l.ip+12+3] ^= 1
					binary.BigEndian.PutUint16(f[l.ip+10:], 0)
					binary.BigEndian.PutUint16(f[l.ip+10:], ^refSum(f[l.ip:l.l4], 0))
				}
				if got := FixChecksum(f); got != ChecksumBad {
					t.Fatalf("FixChecksum = %v, want %v", got, ChecksumBad)
				}
			})

			t.Run("truncated", func(t *testing.T) {
				// Every prefix shorter than the IP packet must be
				// noticed from the IP length instead of read past.
				for n := range l.end {
					f := bytes.Clone(good[:n])
					if got := FixChecksum(f); got != ChecksumNotApplicable {
						t.Fatalf("prefix of %d bytes: FixChecksum = %v, want %v", n, got, ChecksumNotApplicable)
					}
					if !bytes.Equal(f, good[:n]) {
						t.Fatalf("prefix of %d bytes was modified", n)
					}
				}
			})
		})
	}
}

func TestFixChecksumNotApplicable(t *testing.T) {
	udp4 := buildFrame(t, frameSpec{udp: true, payload: randomPayload(20, 200)})
	udp6 := buildFrame(t, frameSpec{ipv6: true, udp: true, payload: randomPayload(21, 200)})
	tcp4 := buildFrame(t, frameSpec{payload: randomPayload(22, 200)})
	tcp6 := buildFrame(t, frameSpec{ipv6: true, payload: randomPayload(23, 200)})

	zeroUDPChecksum := func(f []byte) {
		l := readLayout(t, f)
		binary.BigEndian.PutUint16(f[l.field:], 0)
	}
	for _, tc := range []struct {
		name   string
		frame  []byte
		mutate func([]byte)
	}{
		{"udp4-no-checksum", udp4, zeroUDPChecksum},
		{"udp6-zero-checksum", udp6, zeroUDPChecksum},
		{"arp", arpFrame(t), nil},
		{"ipv4-more-fragments", tcp4, func(f []byte) { f[14+6] |= 0x20 }},
		{"ipv4-fragment-offset", tcp4, func(f []byte) { f[14+7] = 1 }},
		{"ipv4-icmp", tcp4, func(f []byte) { f[14+9] = 1 }},
		{"ipv6-hop-by-hop", tcp6, func(f []byte) { f[14+6] = 0 }},
		{"ipv4-wrong-version", tcp4, func(f []byte) { f[14] = 0x65 }},
		{"ipv4-ihl-too-small", tcp4, func(f []byte) { f[14] = 0x44 }},
		{"ipv4-total-length-too-big", tcp4, func(f []byte) { binary.BigEndian.PutUint16(f[14+2:], uint16(len(f)-14+1)) }},
		{"ipv4-total-length-below-header", tcp4, func(f []byte) { binary.BigEndian.PutUint16(f[14+2:], 19) }},
		{"ipv6-jumbo", tcp6, func(f []byte) { binary.BigEndian.PutUint16(f[14+4:], 0) }},
		{"tcp-data-offset-too-small", tcp4, func(f []byte) { f[14+20+12] = 0x40 }},
		{"tcp-data-offset-past-end", tcp4, func(f []byte) { binary.BigEndian.PutUint16(f[14+2:], 20+20); f[14+20+12] = 0x60 }},
		{"tcp-shorter-than-header", tcp4, func(f []byte) { binary.BigEndian.PutUint16(f[14+2:], 20+19) }},
		{"udp-length-past-end", udp4, func(f []byte) { binary.BigEndian.PutUint16(f[14+20+4:], uint16(len(f)-34+1)) }},
		{"udp-length-below-header", udp4, func(f []byte) { binary.BigEndian.PutUint16(f[14+20+4:], 7) }},
		{"runt", []byte{1, 2, 3}, nil},
		{"vlan-runt", tcp4[:16], func(f []byte) { binary.BigEndian.PutUint16(f[12:], 0x8100) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := bytes.Clone(tc.frame)
			if tc.mutate != nil {
				tc.mutate(f)
			}
			before := bytes.Clone(f)
			if got := FixChecksum(f); got != ChecksumNotApplicable {
				t.Fatalf("FixChecksum = %v, want %v", got, ChecksumNotApplicable)
			}
			if !bytes.Equal(f, before) {
				t.Fatal("frame was modified")
			}
		})
	}
}

// A frame shorter than Ethernet's 60-byte minimum is padded; the checksum
// covers the IP packet only, so the padding must be ignored.
func TestFixChecksumIgnoresEthernetPadding(t *testing.T) {
	for _, spec := range []frameSpec{
		{udp: true, payload: []byte{1, 2, 3}},
		{fin: true},
	} {
		good := buildFrame(t, spec) // gopacket pads to 60 bytes
		l := readLayout(t, good)
		if l.end >= len(good) {
			t.Fatalf("test setup: frame of %d bytes has no padding", len(good))
		}
		// Non-zero padding, or it would not change any sum.
		for i := l.end; i < len(good); i++ {
			good[i] = 0xa5
		}
		f := bytes.Clone(good)
		if got := FixChecksum(f); got != ChecksumValid {
			t.Errorf("valid padded frame: FixChecksum = %v, want %v", got, ChecksumValid)
		}
		makePartial(t, f)
		if got := FixChecksum(f); got != ChecksumCompleted {
			t.Errorf("partial padded frame: FixChecksum = %v, want %v", got, ChecksumCompleted)
		}
		if !bytes.Equal(f, good) {
			t.Error("completed padded frame differs from gopacket's")
		}
	}
}

// When the complemented sum comes out as 0, UDP must send 0xffff: a 0 field
// would tell the receiver there is no checksum (RFC 768). TCP keeps 0.
func TestFixChecksumZeroResult(t *testing.T) {
	for _, spec := range []frameSpec{
		{udp: true, payload: make([]byte, 20)},
		{ipv6: true, udp: true, payload: make([]byte, 20)},
		{payload: make([]byte, 20)},
	} {
		f := buildFrame(t, spec)
		l := readLayout(t, f)
		// Choose the last payload word so that the whole sum, checksum
		// field zero, is 0xffff: the checksum is then ^0xffff = 0.
		binary.BigEndian.PutUint16(f[l.field:], 0)
		last := l.l4 + l.l4Len - 2
		binary.BigEndian.PutUint16(f[last:], 0)
		binary.BigEndian.PutUint16(f[last:], ^refSum(f[l.l4:l.l4+l.l4Len], uint32(refPseudo(f, l))))
		makePartial(t, f)
		if got := FixChecksum(f); got != ChecksumCompleted {
			t.Fatalf("FixChecksum = %v, want %v", got, ChecksumCompleted)
		}
		want := uint16(0xffff)
		if l.protocol == 6 {
			want = 0
		}
		if got := binary.BigEndian.Uint16(f[l.field:]); got != want {
			t.Errorf("protocol %d: completed checksum %#04x, want %#04x", l.protocol, got, want)
		}
		if !refL4Valid(f, l) {
			t.Error("completed frame does not verify")
		}
	}
}

func arpFrame(tb testing.TB) []byte {
	tb.Helper()
	eth := &layers.Ethernet{
		SrcMAC:       net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01},
		DstMAC:       net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		EthernetType: layers.EthernetTypeARP,
	}
	arp := &layers.ARP{
		AddrType:          layers.LinkTypeEthernet,
		Protocol:          layers.EthernetTypeIPv4,
		HwAddressSize:     6,
		ProtAddressSize:   4,
		Operation:         layers.ARPRequest,
		SourceHwAddress:   eth.SrcMAC,
		SourceProtAddress: []byte{10, 244, 1, 10},
		DstHwAddress:      make([]byte, 6),
		DstProtAddress:    []byte{10, 244, 2, 20},
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, arp); err != nil {
		tb.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

func TestFixChecksumNoAllocs(t *testing.T) {
	good := buildFrame(t, frameSpec{tcpOptions: true, payload: randomPayload(30, 1384)})
	partial := bytes.Clone(good)
	makePartial(t, partial)
	l := readLayout(t, partial)
	field := binary.BigEndian.Uint16(partial[l.field:])
	f := bytes.Clone(partial)
	if n := testing.AllocsPerRun(100, func() {
		binary.BigEndian.PutUint16(f[l.field:], field)
		if FixChecksum(f) != ChecksumCompleted || FixChecksum(f) != ChecksumValid {
			panic("unexpected result")
		}
	}); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}

func BenchmarkFixChecksum(b *testing.B) {
	// A 1450-byte frame: Ethernet, IPv4, TCP with timestamps, 1384 bytes
	// of payload.
	good := buildFrame(b, frameSpec{tcpOptions: true, payload: randomPayload(31, 1384)})
	if len(good) != 1450 {
		b.Fatalf("frame is %d bytes, want 1450", len(good))
	}
	l := readLayout(b, good)
	partial := bytes.Clone(good)
	makePartial(b, partial)
	field := binary.BigEndian.Uint16(partial[l.field:])

	b.Run("valid", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(good)))
		for b.Loop() {
			FixChecksum(good)
		}
	})
	b.Run("partial", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(partial)))
		for b.Loop() {
			binary.BigEndian.PutUint16(partial[l.field:], field)
			FixChecksum(partial)
		}
	})
}
