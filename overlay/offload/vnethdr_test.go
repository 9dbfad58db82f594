package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func TestVirtioNetHdrRoundTrip(t *testing.T) {
	h := VirtioNetHdr{
		Flags:      VirtioNetHdrFNeedsCsum,
		GSOType:    VirtioNetHdrGSOTCPv6 | VirtioNetHdrGSOECN,
		HdrLen:     0x0102,
		GSOSize:    0x0304,
		CsumStart:  0x0506,
		CsumOffset: 0x0708,
	}
	b := bytes.Repeat([]byte{0xee}, VirtioNetHdrLen+2)
	if err := h.Encode(b); err != nil {
		t.Fatal(err)
	}
	// The layout of struct virtio_net_hdr, 16-bit fields in host order.
	want := []byte{VirtioNetHdrFNeedsCsum, VirtioNetHdrGSOTCPv6 | VirtioNetHdrGSOECN}
	for _, v := range []uint16{0x0102, 0x0304, 0x0506, 0x0708} {
		want = binary.NativeEndian.AppendUint16(want, v)
	}
	want = append(want, 0xee, 0xee)
	if !bytes.Equal(b, want) {
		t.Fatalf("encoded % x, want % x", b, want)
	}
	var got VirtioNetHdr
	if err := got.Decode(b); err != nil || got != h {
		t.Fatalf("Decode = %+v, %v; want %+v", got, err, h)
	}

	short := make([]byte, VirtioNetHdrLen-1)
	if err := h.Encode(short); !errors.Is(err, ErrShortVirtioNetHdr) || !bytes.Equal(short, make([]byte, len(short))) {
		t.Errorf("Encode into %d bytes: %v, wrote % x", len(short), err, short)
	}
	got = VirtioNetHdr{}
	if err := got.Decode(b[:VirtioNetHdrLen-1]); !errors.Is(err, ErrShortVirtioNetHdr) || got != (VirtioNetHdr{}) {
		t.Errorf("Decode of %d bytes: %+v, %v", VirtioNetHdrLen-1, got, err)
	}
}

// partialHdr is the header a TAP puts in front of a frame whose transport
// checksum is left to the NIC.
func partialHdr(tb testing.TB, frame []byte) VirtioNetHdr {
	l := readLayout(tb, frame)
	return VirtioNetHdr{
		Flags:      VirtioNetHdrFNeedsCsum,
		CsumStart:  uint16(l.l4),
		CsumOffset: uint16(l.field - l.l4),
	}
}

func TestComplete(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec frameSpec
	}{
		{"ipv4-tcp", frameSpec{tcpOptions: true, payload: randomPayload(100, 1398)}},
		{"ipv6-tcp-odd", frameSpec{ipv6: true, payload: randomPayload(101, 999)}},
		{"vlan-ipv4-tcp", frameSpec{vlan: true, psh: true, payload: randomPayload(102, 300)}},
		{"ipv4-udp", frameSpec{udp: true, payload: randomPayload(103, 1000)}},
		{"ipv6-udp", frameSpec{ipv6: true, udp: true, payload: randomPayload(104, 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := buildFrame(t, tc.spec) // checksum by gopacket
			l := readLayout(t, good)
			good = good[:l.end] // a TAP hands out frames without padding
			frame := bytes.Clone(good)
			makePartial(t, frame)
			h := partialHdr(t, frame)
			if err := h.Complete(frame); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(frame, good) {
				t.Fatalf("checksum %#04x, gopacket computed %#04x",
					binary.BigEndian.Uint16(frame[l.field:]), binary.BigEndian.Uint16(good[l.field:]))
			}
			// Without the flag nothing happens.
			makePartial(t, frame)
			partial := bytes.Clone(frame)
			h.Flags = VirtioNetHdrFDataValid
			if err := h.Complete(frame); err != nil || !bytes.Equal(frame, partial) {
				t.Fatalf("Complete without NEEDS_CSUM: %v, frame changed %v", err, !bytes.Equal(frame, partial))
			}
		})
	}
}

func TestCompleteZeroIsStoredAsFFFF(t *testing.T) {
	// The data sums to 0xffff, so the checksum is 0, which UDP reserves.
	frame := []byte{0xff, 0xff, 0x00, 0x00}
	h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 0, CsumOffset: 2}
	if err := h.Complete(frame); err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint16(frame[2:]); got != 0xffff {
		t.Fatalf("stored %#04x, want 0xffff", got)
	}
}

func TestCompleteOutOfRange(t *testing.T) {
	frame := buildFrame(t, frameSpec{payload: randomPayload(105, 10)})
	l := readLayout(t, frame)
	frame = frame[:l.end]
	for _, h := range []VirtioNetHdr{
		{Flags: VirtioNetHdrFNeedsCsum, CsumStart: uint16(len(frame)), CsumOffset: 0},
		{Flags: VirtioNetHdrFNeedsCsum, CsumStart: uint16(len(frame) - 1), CsumOffset: 0},
		{Flags: VirtioNetHdrFNeedsCsum, CsumStart: uint16(l.l4), CsumOffset: uint16(len(frame) - l.l4 - 1)},
		{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 0xffff, CsumOffset: 0xffff},
	} {
		f := bytes.Clone(frame)
		if err := h.Complete(f); !errors.Is(err, ErrCsumOutOfRange) || !bytes.Equal(f, frame) {
			t.Errorf("%+v: %v, frame changed %v", h, err, !bytes.Equal(f, frame))
		}
	}
	// The last two bytes are a valid field.
	h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: uint16(l.l4), CsumOffset: uint16(len(frame) - l.l4 - 2)}
	if err := h.Complete(bytes.Clone(frame)); err != nil {
		t.Errorf("field at the end: %v", err)
	}
}

func TestSegmentGSO(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec frameSpec
		gso  uint8
	}{
		{"ipv4", frameSpec{tcpOptions: true, psh: true, payload: randomPayload(110, 65483)}, VirtioNetHdrGSOTCPv4},
		{"ipv4-ecn", frameSpec{tcpOptions: true, cwr: true, ece: true, payload: randomPayload(111, 20000)}, VirtioNetHdrGSOTCPv4 | VirtioNetHdrGSOECN},
		{"ipv6", frameSpec{ipv6: true, tcpOptions: true, fin: true, psh: true, payload: randomPayload(112, 60000)}, VirtioNetHdrGSOTCPv6},
		{"vlan-ipv6-no-options", frameSpec{vlan: true, ipv6: true, payload: randomPayload(113, 5000)}, VirtioNetHdrGSOTCPv6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := buildFrame(t, tc.spec)
			makePartial(t, frame) // as the kernel hands it out
			l := readLayout(t, frame)
			h := VirtioNetHdr{
				Flags:      VirtioNetHdrFNeedsCsum,
				GSOType:    tc.gso,
				HdrLen:     uint16(l.hdrLen),
				GSOSize:    uint16(testMTU - (l.hdrLen - l.ip)),
				CsumStart:  uint16(l.l4),
				CsumOffset: 16,
			}
			out, sizes, n := segmentGSOLikeTCP(t, h, frame)
			var joined []byte
			for i := range n {
				seg := out[i][testOffset : testOffset+sizes[i]]
				payload := checkSegment(t, seg, frame, tc.spec, i, n, len(joined))
				if i < n-1 && len(payload) != int(h.GSOSize) {
					t.Fatalf("segment %d: %d payload bytes, gso_size %d", i, len(payload), h.GSOSize)
				}
				joined = append(joined, payload...)
			}
			if !bytes.Equal(joined, tc.spec.payload) {
				t.Fatal("payloads differ")
			}
		})
	}
}

func TestSegmentGSONone(t *testing.T) {
	good := buildFrame(t, frameSpec{ipv6: true, udp: true, payload: randomPayload(120, 777)})
	good = good[:readLayout(t, good).end]
	partial := bytes.Clone(good)
	makePartial(t, partial)
	out, sizes := makeOut(1, testMTU)
	n, err := SegmentGSO(partialHdr(t, partial), partial, out, sizes, testOffset)
	if err != nil || n != 1 {
		t.Fatalf("SegmentGSO = %d, %v", n, err)
	}
	if got := out[0][testOffset : testOffset+sizes[0]]; !bytes.Equal(got, good) {
		t.Fatal("GSO_NONE frame not copied with its checksum completed")
	}
	if pkt := gopacket.NewPacket(out[0][testOffset:testOffset+sizes[0]], layers.LayerTypeEthernet, gopacket.Default); pkt.ErrorLayer() != nil {
		t.Fatal(pkt.ErrorLayer().Error())
	}
	// Without NEEDS_CSUM the frame is copied as it is; ARP too.
	arp := arpFrame(t)
	n, err = SegmentGSO(VirtioNetHdr{}, arp, out, sizes, testOffset)
	if err != nil || n != 1 || !bytes.Equal(out[0][testOffset:testOffset+sizes[0]], arp) {
		t.Fatalf("ARP: %d, %v", n, err)
	}
}

func TestSegmentGSOErrors(t *testing.T) {
	tcp4 := buildFrame(t, frameSpec{tcpOptions: true, payload: randomPayload(130, 5000)})
	tcp6 := buildFrame(t, frameSpec{ipv6: true, payload: randomPayload(131, 5000)})
	udp4 := buildFrame(t, frameSpec{udp: true, payload: randomPayload(132, 5000)})
	gso4 := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 1398, CsumStart: 34, CsumOffset: 16}
	with := func(h VirtioNetHdr, edit func(*VirtioNetHdr)) VirtioNetHdr { edit(&h); return h }
	for _, tc := range []struct {
		name    string
		h       VirtioNetHdr
		frame   []byte
		nOut    int
		bufLen  int
		wantErr error
	}{
		{"udp-ufo", with(gso4, func(h *VirtioNetHdr) { h.GSOType = VirtioNetHdrGSOUDP }), udp4, 64, 0, ErrGSOUnsupported},
		{"udp-l4-ecn", with(gso4, func(h *VirtioNetHdr) { h.GSOType = VirtioNetHdrGSOUDPL4 | VirtioNetHdrGSOECN }), udp4, 64, 0, ErrGSOUnsupported},
		{"udp-l4-on-tcp", with(gso4, func(h *VirtioNetHdr) { h.GSOType = VirtioNetHdrGSOUDPL4 }), tcp4, 64, 0, ErrGSOMismatch},
		{"udp-l4-size-zero", with(gso4, func(h *VirtioNetHdr) { h.GSOType, h.GSOSize = VirtioNetHdrGSOUDPL4, 0 }), udp4, 64, 0, ErrGSOSizeZero},
		{"unknown-type", with(gso4, func(h *VirtioNetHdr) { h.GSOType = 2 }), tcp4, 64, 0, ErrGSOUnsupported},
		{"ecn-without-type", with(gso4, func(h *VirtioNetHdr) { h.GSOType = VirtioNetHdrGSOECN }), tcp4, 64, 0, ErrGSOUnsupported},
		{"tcpv4-on-ipv6", gso4, tcp6, 64, 0, ErrGSOMismatch},
		{"tcpv6-on-ipv4", with(gso4, func(h *VirtioNetHdr) { h.GSOType = VirtioNetHdrGSOTCPv6 }), tcp4, 64, 0, ErrGSOMismatch},
		{"tcpv4-on-udp", gso4, udp4, 64, 0, ErrGSOMismatch},
		{"arp", gso4, arpFrame(t), 64, 0, ErrNotTCP},
		{"gso-size-zero", with(gso4, func(h *VirtioNetHdr) { h.GSOSize = 0 }), tcp4, 64, 0, ErrGSOSizeZero},
		{"truncated", gso4, tcp4[:len(tcp4)-1], 64, 0, ErrMalformed},
		{"too-few-out", with(gso4, func(h *VirtioNetHdr) { h.GSOSize = 100 }), tcp4, 49, 0, ErrTooManySegments},
		{"none-no-out", VirtioNetHdr{}, tcp4, 0, 0, ErrTooManySegments},
		{"none-buffer-too-small", VirtioNetHdr{}, tcp4, 1, testOffset + len(tcp4) - 1, ErrBufferTooSmall},
		{"none-csum-out-of-range", VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: uint16(len(tcp4) - 1)}, tcp4, 1, 0, ErrCsumOutOfRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, sizes := makeOut(tc.nOut, testMTU)
			if tc.bufLen == 0 {
				for i := range out {
					out[i] = make([]byte, testOffset+len(tc.frame))
				}
			} else {
				out[0] = make([]byte, tc.bufLen)
			}
			input := bytes.Clone(tc.frame)
			n, err := SegmentGSO(tc.h, tc.frame, out, sizes, testOffset)
			if !errors.Is(err, tc.wantErr) || n != 0 {
				t.Fatalf("SegmentGSO = %d, %v; want 0, %v", n, err, tc.wantErr)
			}
			if !bytes.Equal(tc.frame, input) {
				t.Fatal("input modified")
			}
			for i, b := range out {
				if sizes[i] != -1 || bytes.ContainsFunc(b, func(r rune) bool { return r != 0 }) {
					t.Fatalf("out[%d] written on error", i)
				}
			}
		})
	}
}

// SegmentLen is the IP length of a full segment: the frame's own IP and
// TCP or UDP headers, options and extension headers included, and the
// gso_size; 0 where SegmentGSO would not cut.
func TestSegmentLen(t *testing.T) {
	tcp4 := buildFrame(t, frameSpec{tcpOptions: true, payload: randomPayload(150, 5000)}) // 20 + 32
	tcp6 := buildFrame(t, frameSpec{ipv6: true, payload: randomPayload(151, 5000)})       // 40 + 20
	vlan6 := buildFrame(t, frameSpec{vlan: true, ipv6: true, payload: randomPayload(152, 5000)})
	udp4 := buildFrame(t, frameSpec{udp: true, payload: randomPayload(153, 5000)}) // 20 + 8
	for _, tc := range []struct {
		name  string
		h     VirtioNetHdr
		frame []byte
		want  int
	}{
		{"tcpv4-options", VirtioNetHdr{GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 1448}, tcp4, 20 + 32 + 1448},
		{"tcpv4-ecn", VirtioNetHdr{GSOType: VirtioNetHdrGSOTCPv4 | VirtioNetHdrGSOECN, GSOSize: 1398}, tcp4, 20 + 32 + 1398},
		{"tcpv6", VirtioNetHdr{GSOType: VirtioNetHdrGSOTCPv6, GSOSize: 1440}, tcp6, 40 + 20 + 1440},
		{"vlan-tcpv6", VirtioNetHdr{GSOType: VirtioNetHdrGSOTCPv6, GSOSize: 1000}, vlan6, 40 + 20 + 1000},
		{"udp-l4", VirtioNetHdr{GSOType: VirtioNetHdrGSOUDPL4, GSOSize: 1472}, udp4, 20 + 8 + 1472},
		{"none", VirtioNetHdr{}, tcp4, 0},
		{"tcpv4-on-ipv6", VirtioNetHdr{GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 1448}, tcp6, 0},
		{"udp-l4-on-tcp", VirtioNetHdr{GSOType: VirtioNetHdrGSOUDPL4, GSOSize: 1448}, tcp4, 0},
		{"size-zero", VirtioNetHdr{GSOType: VirtioNetHdrGSOTCPv4}, tcp4, 0},
		{"udp-ufo", VirtioNetHdr{GSOType: VirtioNetHdrGSOUDP, GSOSize: 1448}, udp4, 0},
		{"not-ip", VirtioNetHdr{GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 1448}, arpFrame(t), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SegmentLen(tc.h, tc.frame); got != tc.want {
				t.Fatalf("SegmentLen = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestVirtioNetHdrNoAllocs(t *testing.T) {
	frame := buildFrame(t, frameSpec{tcpOptions: true, payload: randomPayload(140, 65483)})
	makePartial(t, frame)
	l := readLayout(t, frame)
	gso := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 1398,
		CsumStart: uint16(l.l4), CsumOffset: 16}
	small := buildFrame(t, frameSpec{payload: randomPayload(141, 1000)})
	small = small[:readLayout(t, small).end]
	makePartial(t, small)
	partial := partialHdr(t, small)
	field := binary.BigEndian.Uint16(small[readLayout(t, small).field:])
	out, sizes := makeOut(64, testMTU)
	hdr := make([]byte, VirtioNetHdrLen)
	if n := testing.AllocsPerRun(20, func() {
		var h VirtioNetHdr
		if gso.Encode(hdr) != nil || h.Decode(hdr) != nil || h != gso {
			panic("round trip")
		}
		if n, err := SegmentGSO(h, frame, out, sizes, testOffset); err != nil || n != 47 {
			panic(err)
		}
		if n, err := SegmentGSO(partial, small, out, sizes, testOffset); err != nil || n != 1 {
			panic(err)
		}
		binary.BigEndian.PutUint16(small[partial.CsumStart+partial.CsumOffset:], field)
		if err := partial.Complete(small); err != nil {
			panic(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}

func BenchmarkSegmentGSO(b *testing.B) {
	frame := buildFrame(b, frameSpec{tcpOptions: true, payload: randomPayload(150, 65483)})
	makePartial(b, frame)
	h := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv4, GSOSize: 1398, CsumStart: 34, CsumOffset: 16}
	out, sizes := makeOut(64, testMTU)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := SegmentGSO(h, frame, out, sizes, testOffset); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkComplete(b *testing.B) {
	frame := buildFrame(b, frameSpec{tcpOptions: true, payload: randomPayload(151, 1384)})
	makePartial(b, frame)
	h := partialHdr(b, frame)
	field := binary.BigEndian.Uint16(frame[h.CsumStart+h.CsumOffset:])
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		binary.BigEndian.PutUint16(frame[h.CsumStart+h.CsumOffset:], field)
		if err := h.Complete(frame); err != nil {
			b.Fatal(err)
		}
	}
}
