package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

const (
	testMTU    = 1450
	testOffset = 16 // headroom, as the receive path reserves for VXLAN
)

// makeOut returns n output buffers with room for an MTU-sized frame at
// testOffset, VLAN tag included, and sizes filled with -1 to show writes.
func makeOut(n, mtu int) ([][]byte, []int) {
	out := make([][]byte, n)
	sizes := make([]int, n)
	for i := range out {
		out[i] = make([]byte, testOffset+18+mtu)
		sizes[i] = -1
	}
	return out, sizes
}

func TestSegmentTCP(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec frameSpec
	}{
		{"ipv4", frameSpec{tcpOptions: true, psh: true, fin: true, cwr: true, ece: true, payload: randomPayload(40, 60000)}},
		{"ipv6", frameSpec{ipv6: true, tcpOptions: true, psh: true, fin: true, cwr: true, ece: true, payload: randomPayload(41, 60000)}},
		{"vlan-ipv4-no-options", frameSpec{vlan: true, psh: true, payload: randomPayload(42, 20000)}},
		{"ipv4-exact-multiple", frameSpec{tcpOptions: true, payload: randomPayload(43, 3*(testMTU-20-32))}},
		{"ipv6-one-byte-over", frameSpec{ipv6: true, payload: randomPayload(44, testMTU-40-20+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := buildFrame(t, tc.spec)
			makePartial(t, frame)
			input := bytes.Clone(frame)

			out, sizes := makeOut(64, testMTU)
			n, err := SegmentTCP(frame, testMTU, out, sizes, testOffset)
			if err != nil {
				t.Fatalf("SegmentTCP: %v", err)
			}
			if !bytes.Equal(frame, input) {
				t.Fatal("SegmentTCP modified its input")
			}
			in := readLayout(t, frame)
			mss := testMTU - (in.hdrLen - in.ip)
			wantN := (len(tc.spec.payload) + mss - 1) / mss
			if n != wantN {
				t.Fatalf("%d segments, want %d", n, wantN)
			}
			for i := n; i < len(sizes); i++ {
				if sizes[i] != -1 {
					t.Fatalf("sizes[%d] = %d written beyond the %d segments", i, sizes[i], n)
				}
			}

			var joined []byte
			for i := range n {
				seg := out[i][testOffset : testOffset+sizes[i]]
				payload := checkSegment(t, seg, frame, tc.spec, i, n, len(joined))
				if i < n-1 && len(payload) != mss {
					t.Errorf("segment %d: %d payload bytes, want the full %d", i, len(payload), mss)
				}
				joined = append(joined, payload...)
			}
			if !bytes.Equal(joined, tc.spec.payload) {
				t.Fatal("concatenated segment payloads differ from the original payload")
			}
		})
	}
}

// checkSegment verifies segment i of n against the frame it was cut from and
// returns its TCP payload. done is the number of payload bytes before it.
func checkSegment(t *testing.T, seg, frame []byte, spec frameSpec, i, n, done int) []byte {
	t.Helper()
	pkt := gopacket.NewPacket(seg, layers.LayerTypeEthernet, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("segment %d does not decode: %v", i, el.Error())
	}
	l := readLayout(t, seg)
	if l.end != len(seg) {
		t.Fatalf("segment %d: IP packet ends at %d, frame at %d", i, l.end, len(seg))
	}
	if ipLen := l.end - l.ip; ipLen > testMTU {
		t.Errorf("segment %d: IP packet of %d bytes exceeds MTU %d", i, ipLen, testMTU)
	}
	// Everything before the IP header is copied as is.
	if !bytes.Equal(seg[:l.ip], frame[:l.ip]) {
		t.Errorf("segment %d: Ethernet header differs", i)
	}

	tcpL := pkt.Layer(layers.LayerTypeTCP)
	if tcpL == nil {
		t.Fatalf("segment %d: no TCP layer", i)
	}
	tcp := tcpL.(*layers.TCP)
	var network gopacket.NetworkLayer
	if spec.ipv6 {
		ip := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if ip.FlowLabel != 0x12345 || ip.HopLimit != 64 {
			t.Errorf("segment %d: IPv6 header fields not copied", i)
		}
		network = ip
	} else {
		ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if want := uint16(testIPv4ID + i); ip.Id != want {
			t.Errorf("segment %d: IPv4 ID %#04x, want %#04x", i, ip.Id, want)
		}
		if ip.Flags != layers.IPv4DontFragment || ip.TTL != 64 {
			t.Errorf("segment %d: IPv4 header fields not copied", i)
		}
		if refSum(seg[l.ip:l.l4], 0) != 0xffff {
			t.Errorf("segment %d: bad IPv4 header checksum %#04x", i, ip.Checksum)
		}
		network = ip
	}

	// Two independent verifications of the TCP checksum: gopacket's sum
	// over the segment with its checksum field (0 when it verifies) and
	// the test's own reference.
	if err := tcp.SetNetworkLayerForChecksum(network); err != nil {
		t.Fatal(err)
	}
	if c, err := tcp.ComputeChecksum(); err != nil || c != 0 {
		t.Errorf("segment %d: gopacket says the TCP checksum %#04x is off by %#04x (err %v)", i, tcp.Checksum, c, err)
	}
	if !refL4Valid(seg, l) {
		t.Errorf("segment %d: TCP checksum does not verify", i)
	}

	if want := uint32(testTCPSeq) + uint32(done); tcp.Seq != want {
		t.Errorf("segment %d: seq %#08x, want %#08x", i, tcp.Seq, want)
	}
	if tcp.Ack != testTCPAck || !tcp.ACK || tcp.Window != testTCPWin ||
		tcp.SrcPort != testSrcPort || tcp.DstPort != testDstPort || tcp.ECE != spec.ece {
		t.Errorf("segment %d: TCP header fields not copied", i)
	}
	last := i == n-1
	if tcp.FIN != (spec.fin && last) || tcp.PSH != (spec.psh && last) || tcp.CWR != (spec.cwr && i == 0) {
		t.Errorf("segment %d of %d: FIN %v PSH %v CWR %v", i, n, tcp.FIN, tcp.PSH, tcp.CWR)
	}
	if spec.tcpOptions {
		if len(tcp.Options) != 3 || !bytes.Equal(tcp.Options[2].OptionData, testTimestamps) {
			t.Errorf("segment %d: TCP options not copied: %v", i, tcp.Options)
		}
	}
	return tcp.Payload
}

// A frame that already fits comes out unchanged but for a completed
// checksum; flags stay, as the only segment is both first and last.
func TestSegmentTCPFrameThatFits(t *testing.T) {
	for _, spec := range []frameSpec{
		{tcpOptions: true, fin: true, psh: true, cwr: true, payload: randomPayload(50, testMTU-20-32)},
		{ipv6: true, payload: randomPayload(51, 100)},
		{fin: true}, // no payload; gopacket pads the frame to 60 bytes
	} {
		good := buildFrame(t, spec)
		l := readLayout(t, good)
		partial := bytes.Clone(good)
		makePartial(t, partial)
		out, sizes := makeOut(1, testMTU)
		n, err := SegmentTCP(partial, testMTU, out, sizes, testOffset)
		if err != nil || n != 1 {
			t.Fatalf("SegmentTCP = %d, %v; want 1, nil", n, err)
		}
		if got := out[0][testOffset : testOffset+sizes[0]]; !bytes.Equal(got, good[:l.end]) {
			t.Errorf("single segment differs from the original frame without padding:\n got %x\nwant %x", got, good[:l.end])
		}
	}
}

func TestSegmentTCPErrors(t *testing.T) {
	big := buildFrame(t, frameSpec{tcpOptions: true, payload: randomPayload(60, 5000)})
	// 20 IPv4 + 32 TCP header bytes leave 1398 per segment: 4 segments.
	const bigSegments = 4
	udp := buildFrame(t, frameSpec{udp: true, payload: randomPayload(61, 5000)})

	mutated := func(f []byte, mutate func([]byte)) []byte {
		f = bytes.Clone(f)
		mutate(f)
		return f
	}
	for _, tc := range []struct {
		name    string
		frame   []byte
		mtu     int
		nOut    int
		nSizes  int
		bufLen  int // 0: room for an MTU-sized frame
		offset  int
		wantErr error
	}{
		{name: "udp", frame: udp, wantErr: ErrNotTCP},
		{name: "arp", frame: arpFrame(t), wantErr: ErrNotTCP},
		{name: "ipv4-fragment", frame: mutated(big, func(f []byte) { f[14+6] |= 0x20 }), wantErr: ErrFragment},
		{name: "truncated-ip", frame: big[:len(big)-1], wantErr: ErrMalformed},
		{name: "truncated-ethernet", frame: big[:13], wantErr: ErrMalformed},
		{name: "tcp-data-offset-too-small", frame: mutated(big, func(f []byte) { f[14+20+12] = 0x40 }), wantErr: ErrMalformed},
		{name: "tcp-header-past-ip-end", frame: mutated(big, func(f []byte) { binary.BigEndian.PutUint16(f[14+2:], 20+31) }), wantErr: ErrMalformed},
		{name: "mtu-headers-only", frame: big, mtu: 20 + 32, wantErr: ErrMTUTooSmall},
		{name: "mtu-negative", frame: big, mtu: -1, wantErr: ErrMTUTooSmall},
		{name: "mtu-min-int", frame: big, mtu: math.MinInt, wantErr: ErrMTUTooSmall},
		{name: "too-few-out", frame: big, nOut: bigSegments - 1, wantErr: ErrTooManySegments},
		{name: "too-few-sizes", frame: big, nSizes: bigSegments - 1, wantErr: ErrTooManySegments},
		{name: "buffer-too-small", frame: big, bufLen: testOffset + 14 + testMTU - 1, wantErr: ErrBufferTooSmall},
		{name: "offset-past-buffer", frame: big, offset: 1 << 20, wantErr: ErrBufferTooSmall},
		{name: "offset-negative", frame: big, offset: -1, wantErr: ErrBufferTooSmall},
		// One segment of the whole frame, which out[0] cannot hold.
		{name: "mtu-max-int", frame: big, mtu: math.MaxInt, wantErr: ErrBufferTooSmall},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mtu := tc.mtu
			if mtu == 0 {
				mtu = testMTU
			}
			nOut, nSizes := tc.nOut, tc.nSizes
			if nOut == 0 {
				nOut = 8
			}
			if nSizes == 0 {
				nSizes = 8
			}
			out, _ := makeOut(nOut, testMTU)
			if tc.bufLen != 0 {
				// Only a later buffer, one for a full-sized
				// segment, is short, so a segmenter that writes
				// before measuring would be caught.
				out[bigSegments-2] = make([]byte, tc.bufLen)
			}
			_, sizes := makeOut(nSizes, testMTU)
			offset := tc.offset
			if offset == 0 {
				offset = testOffset
			}
			n, err := SegmentTCP(tc.frame, mtu, out, sizes, offset)
			if !errors.Is(err, tc.wantErr) || n != 0 {
				t.Fatalf("SegmentTCP = %d, %v; want 0, %v", n, err, tc.wantErr)
			}
			for i, s := range sizes {
				if s != -1 {
					t.Fatalf("sizes[%d] = %d written on error", i, s)
				}
			}
			for i, b := range out {
				if bytes.ContainsFunc(b, func(r rune) bool { return r != 0 }) {
					t.Fatalf("out[%d] written on error", i)
				}
			}
		})
	}
}

func TestSegmentTCPNoAllocs(t *testing.T) {
	frame := buildFrame(t, frameSpec{tcpOptions: true, payload: randomPayload(70, 60000)})
	makePartial(t, frame)
	out, sizes := makeOut(64, testMTU)
	if n := testing.AllocsPerRun(20, func() {
		if _, err := SegmentTCP(frame, testMTU, out, sizes, testOffset); err != nil {
			panic(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}

func BenchmarkSegmentTCP(b *testing.B) {
	for _, tc := range []struct {
		name string
		spec frameSpec
	}{
		// The largest TCP payload an IPv4 packet carries with
		// timestamps: 65535 - 20 - 32.
		{"ipv4-64KB", frameSpec{tcpOptions: true, payload: randomPayload(80, 65535-20-32)}},
		{"ipv6-64KB", frameSpec{ipv6: true, tcpOptions: true, payload: randomPayload(81, 65535-32)}},
	} {
		frame := buildFrame(b, tc.spec)
		makePartial(b, frame)
		out, sizes := makeOut(64, testMTU)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := SegmentTCP(frame, testMTU, out, sizes, testOffset); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
