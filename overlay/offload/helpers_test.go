package offload

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// frameSpec describes a test frame. Frames are built with gopacket, whose
// checksum code shares nothing with this package.
type frameSpec struct {
	ipv6       bool
	udp        bool
	vlan       bool
	tcpOptions bool // NOP, NOP, timestamps: what Linux sends on every segment
	payload    []byte
	// TCP flags besides ACK, which is always set.
	fin, psh, cwr, ece bool
}

const (
	testIPv4ID  = 0xfffe     // wraps after two segments
	testTCPSeq  = 0xffff8000 // wraps within a 64 KB frame
	testTCPAck  = 0x01020304
	testTCPWin  = 501
	testSrcPort = 41000
	testDstPort = 5201
)

var testTimestamps = []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77}

// buildFrame returns a frame with correct lengths and checksums.
func buildFrame(tb testing.TB, s frameSpec) []byte {
	tb.Helper()
	eth := &layers.Ethernet{
		SrcMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01},
		DstMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02},
	}
	ls := []gopacket.SerializableLayer{eth}
	ipType := layers.EthernetTypeIPv4
	if s.ipv6 {
		ipType = layers.EthernetTypeIPv6
	}
	if s.vlan {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: 42, Type: ipType})
	} else {
		eth.EthernetType = ipType
	}
	proto := layers.IPProtocolTCP
	if s.udp {
		proto = layers.IPProtocolUDP
	}
	var network gopacket.NetworkLayer
	if s.ipv6 {
		ip := &layers.IPv6{
			Version:    6,
			FlowLabel:  0x12345,
			NextHeader: proto,
			HopLimit:   64,
			SrcIP:      net.ParseIP("fd00:1::10"),
			DstIP:      net.ParseIP("fd00:2::20"),
		}
		network = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{
			Version:  4,
			TTL:      64,
			Id:       testIPv4ID,
			Flags:    layers.IPv4DontFragment,
			Protocol: proto,
			SrcIP:    net.IPv4(10, 244, 1, 10),
			DstIP:    net.IPv4(10, 244, 2, 20),
		}
		network = ip
		ls = append(ls, ip)
	}
	if s.udp {
		udp := &layers.UDP{SrcPort: testSrcPort, DstPort: testDstPort}
		if err := udp.SetNetworkLayerForChecksum(network); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, udp)
	} else {
		tcp := &layers.TCP{
			SrcPort: testSrcPort,
			DstPort: testDstPort,
			Seq:     testTCPSeq,
			Ack:     testTCPAck,
			ACK:     true,
			FIN:     s.fin,
			PSH:     s.psh,
			CWR:     s.cwr,
			ECE:     s.ece,
			Window:  testTCPWin,
		}
		if s.tcpOptions {
			tcp.Options = []layers.TCPOption{
				{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
				{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: testTimestamps},
			}
		}
		if err := tcp.SetNetworkLayerForChecksum(network); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, tcp)
	}
	ls = append(ls, gopacket.Payload(s.payload))
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func randomPayload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// layout is the test's own reading of a frame's headers, written from the
// RFCs independently of parseIP. Only what the tests need is handled.
type layout struct {
	ip, l4, end int // offsets into the frame
	v6          bool
	protocol    uint8
	field       int // offset of the transport checksum field in the frame
	l4Len       int // bytes covered by the transport checksum
	hdrLen      int // Ethernet, IP and TCP or UDP header bytes
}

func readLayout(tb testing.TB, frame []byte) layout {
	tb.Helper()
	var l layout
	l.ip = 14
	etherType := binary.BigEndian.Uint16(frame[12:])
	if etherType == 0x8100 {
		l.ip = 18
		etherType = binary.BigEndian.Uint16(frame[16:])
	}
	switch etherType {
	case 0x0800:
		l.l4 = l.ip + int(frame[l.ip]&0xf)*4
		l.end = l.ip + int(binary.BigEndian.Uint16(frame[l.ip+2:]))
		l.protocol = frame[l.ip+9]
	case 0x86dd:
		l.v6 = true
		l.l4 = l.ip + 40
		l.end = l.l4 + int(binary.BigEndian.Uint16(frame[l.ip+4:]))
		l.protocol = frame[l.ip+6]
	default:
		tb.Fatalf("ethertype %#04x in a test frame", etherType)
	}
	l.l4Len = l.end - l.l4
	switch l.protocol {
	case 6:
		l.field = l.l4 + 16
		l.hdrLen = l.l4 + int(frame[l.l4+12]>>4)*4
	case 17:
		l.field = l.l4 + 6
		l.l4Len = int(binary.BigEndian.Uint16(frame[l.l4+4:]))
		l.hdrLen = l.l4 + 8
	}
	return l
}

// refSum is RFC 1071 written as plainly as possible, to check the fast code
// against: 16-bit big-endian words, end-around carry.
func refSum(b []byte, initial uint32) uint16 {
	sum := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// refPseudo is the pseudo-header sum of the frame's transport segment: what
// a Linux sender with checksum offload leaves in the checksum field.
func refPseudo(frame []byte, l layout) uint16 {
	var ph []byte
	if l.v6 {
		ph = append(ph, frame[l.ip+8:l.ip+40]...)
		ph = binary.BigEndian.AppendUint32(ph, uint32(l.l4Len))
		ph = append(ph, 0, 0, 0, l.protocol)
	} else {
		ph = append(ph, frame[l.ip+12:l.ip+20]...)
		ph = append(ph, 0, l.protocol)
		ph = binary.BigEndian.AppendUint16(ph, uint16(l.l4Len))
	}
	return refSum(ph, 0)
}

// refL4Valid reports whether the transport checksum of frame verifies.
func refL4Valid(frame []byte, l layout) bool {
	return refSum(frame[l.l4:l.l4+l.l4Len], uint32(refPseudo(frame, l))) == 0xffff
}

// makePartial replaces the transport checksum with the partial sum a sender
// using checksum offload leaves behind.
func makePartial(tb testing.TB, frame []byte) {
	tb.Helper()
	l := readLayout(tb, frame)
	binary.BigEndian.PutUint16(frame[l.field:], refPseudo(frame, l))
}

// segmentGSOLikeTCP cuts frame by its virtio-net header h with SegmentGSO,
// checks that it gives at least two segments and exactly those SegmentTCP
// cuts at testMTU (the MTU the gso_size implies), and returns them.
func segmentGSOLikeTCP(t *testing.T, h VirtioNetHdr, frame []byte) (out [][]byte, sizes []int, n int) {
	t.Helper()
	out, sizes = makeOut(64, testMTU)
	n, err := SegmentGSO(h, frame, out, sizes, testOffset)
	if err != nil {
		t.Fatal(err)
	}
	want, wantSizes := makeOut(64, testMTU)
	wantN, err := SegmentTCP(frame, testMTU, want, wantSizes, testOffset)
	if err != nil || n != wantN || n < 2 {
		t.Fatalf("SegmentGSO made %d segments, SegmentTCP %d (%v)", n, wantN, err)
	}
	for i := range n {
		if !bytes.Equal(out[i][testOffset:testOffset+sizes[i]], want[i][testOffset:testOffset+wantSizes[i]]) {
			t.Fatalf("segment %d differs from SegmentTCP's", i)
		}
	}
	return out, sizes, n
}
