package offload

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// groFuzzInput encodes frames for FuzzGRO: per frame a byte whose low bit is
// the partial flag, a big-endian 16-bit length and the frame.
func groFuzzInput(frames [][]byte, partial []bool) []byte {
	var b []byte
	for i, f := range frames {
		var flag byte
		if partial[i] {
			flag = 1
		}
		b = append(b, flag)
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

func decodeGROFuzzInput(b []byte, max int) (frames [][]byte, partial []bool) {
	for len(b) >= 3 && len(frames) < max {
		n := min(int(binary.BigEndian.Uint16(b[1:3])), len(b)-3)
		partial = append(partial, b[0]&1 != 0)
		frames = append(frames, b[3:3+n])
		b = b[3+n:]
	}
	return frames, partial
}

// groFuzzSeeds are short streams: the fuzzer mutates sequence numbers,
// flags, lengths and addresses from there.
func groFuzzSeeds(tb testing.TB) [][]byte {
	a := stream(tb, frameSpec{tcpOptions: true, psh: true}, []int{40, 40, 40, 17})
	b := stream(tb, frameSpec{ipv6: true}, []int{30, 30, 30})
	c := stream(tb, frameSpec{tcpOptions: true, cwr: true, ece: true}, []int{20, 20})
	for i := range c {
		c[i] = edited(tb, c[i], func(f []byte, l layout) { f[l.l4+1]++ })
	}
	noDF := stream(tb, frameSpec{}, []int{25, 25, 25})
	for i := range noDF {
		noDF[i] = edited(tb, noDF[i], func(f []byte, l layout) { f[l.ip+6] = 0 })
	}
	partialOf := func(f []byte) []byte {
		f = bytes.Clone(f)
		makePartial(tb, f)
		return f
	}
	no := func(n int) []bool { return make([]bool, n) }
	return [][]byte{
		groFuzzInput(a, no(len(a))),
		groFuzzInput([][]byte{a[0], b[0], a[1], arpFrame(tb), b[1], a[2], c[0], b[2], c[1], a[3]}, no(10)),
		groFuzzInput([][]byte{partialOf(a[0]), a[2], a[1], a[3]}, []bool{true, false, false, false}),
		groFuzzInput([][]byte{b[0], b[1], buildFrame(tb, frameSpec{ipv6: true, fin: true}), b[2]}, no(4)),
		groFuzzInput(noDF, no(len(noDF))),
	}
}

func FuzzGRO(f *testing.F) {
	for _, s := range groFuzzSeeds(f) {
		f.Add(s)
	}
	const maxFrames = 16
	g := NewGRO(maxFrames / 2) // small enough to fill up
	out, sizes := makeOut(groMaxSegments, 1<<16)

	f.Fuzz(func(t *testing.T, data []byte) {
		frames, partial := decodeGROFuzzInput(data, maxFrames)
		inputs := make([][]byte, len(frames))
		for i := range frames {
			inputs[i] = bytes.Clone(frames[i])
		}
		g.Reset()

		// Per flow, the payloads of the frames Add took, in order.
		want := map[groFlow][]byte{}
		pending := map[groFlow]bool{}
		for i, fr := range frames {
			var s groSegment
			hasFlow := parseGROSegment(fr, &s)
			full := g.Full()
			took := g.Add(fr, partial[i])
			if !bytes.Equal(fr, inputs[i]) {
				t.Fatalf("Add modified frame %d", i)
			}
			switch {
			case took && !hasFlow:
				t.Fatalf("Add took frame %d, which has no TCP flow", i)
			case !took && hasFlow && !full && (pending[s.flow] || s.coalescible):
				t.Fatalf("Add refused frame %d (coalescible %v, flow pending %v), the table not full", i, s.coalescible, pending[s.flow])
			case took:
				pending[s.flow] = true
				want[s.flow] = append(want[s.flow], fr[s.p.l4+s.tcpHeaderLen:s.p.end]...)
			}
		}

		got := map[groFlow][]byte{}
		for i, b := range g.Frames() {
			var h VirtioNetHdr
			if err := h.Decode(b); err != nil {
				t.Fatal(err)
			}
			frame := b[VirtioNetHdrLen:]
			var s groSegment
			if !parseGROSegment(frame, &s) {
				t.Fatalf("frame %d of Frames has no TCP flow", i)
			}
			payload := frame[s.p.l4+s.tcpHeaderLen : s.p.end]
			if s.p.end != len(frame) {
				t.Fatalf("frame %d: IP packet ends at %d, frame at %d", i, s.p.end, len(frame))
			}
			got[s.flow] = append(got[s.flow], payload...)
			if h.GSOType == VirtioNetHdrGSONone {
				if h.Flags&^VirtioNetHdrFNeedsCsum != 0 || (h.Flags != 0 && (int(h.CsumStart) != s.p.l4 || h.CsumOffset != 16)) {
					t.Fatalf("frame %d: header %+v", i, h)
				}
				continue
			}
			checkFuzzSuperFrame(t, h, frame, &s, out, sizes)
		}
		for flow, p := range want {
			if !bytes.Equal(got[flow], p) {
				t.Fatalf("flow %v: %d payload bytes out, %d in, or out of order", flow, len(got[flow]), len(p))
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%d flows out, %d in", len(got), len(want))
		}
	})
}

func checkFuzzSuperFrame(t *testing.T, h VirtioNetHdr, frame []byte, s *groSegment, out [][]byte, sizes []int) {
	t.Helper()
	l := readLayout(t, frame)
	wantType := uint8(VirtioNetHdrGSOTCPv4)
	if l.v6 {
		wantType = VirtioNetHdrGSOTCPv6
	}
	if s.flags&tcpFlagCWR != 0 {
		wantType |= VirtioNetHdrGSOECN
	}
	payload := l.end - l.hdrLen
	if h.Flags != VirtioNetHdrFNeedsCsum || h.GSOType != wantType || int(h.HdrLen) != l.hdrLen ||
		int(h.CsumStart) != l.l4 || h.CsumOffset != 16 || h.GSOSize == 0 || int(h.GSOSize) >= payload ||
		payload > groMaxSegments*int(h.GSOSize) || l.end-l.ip > groMaxIPLen {
		t.Fatalf("super-frame header %+v for a %d-byte payload", h, payload)
	}
	if !l.v6 && refSum(frame[l.ip:l.l4], 0) != 0xffff {
		t.Fatal("bad IPv4 header checksum")
	}
	if got, want := binary.BigEndian.Uint16(frame[l.field:]), refPseudo(frame, l); got != want {
		t.Fatalf("TCP checksum field %#04x, pseudo-header sum %#04x", got, want)
	}
	n, err := SegmentGSO(h, frame, out, sizes, 0)
	if err != nil || n < 2 {
		t.Fatalf("SegmentGSO = %d, %v", n, err)
	}
	var joined []byte
	for i := range n {
		seg := out[i][:sizes[i]]
		sl := readLayout(t, seg)
		chunk := seg[sl.hdrLen:]
		if len(chunk) > int(h.GSOSize) || (i < n-1 && len(chunk) != int(h.GSOSize)) {
			t.Fatalf("segment %d of %d: %d payload bytes, gso_size %d", i, n, len(chunk), h.GSOSize)
		}
		joined = append(joined, chunk...)
	}
	if !bytes.Equal(joined, frame[l.hdrLen:]) {
		t.Fatal("segments do not give back the payload")
	}
	completed := bytes.Clone(frame)
	if err := h.Complete(completed); err != nil || !refL4Valid(completed, l) {
		t.Fatalf("completed super-frame does not verify (%v)", err)
	}
}

// FuzzSegmentGSO feeds SegmentGSO and Complete a virtio-net header and a
// frame as a TAP would hand them out.
func FuzzSegmentGSO(f *testing.F) {
	tcp4 := buildFrame(f, frameSpec{tcpOptions: true, psh: true, payload: randomPayload(300, 700)})
	tcp6 := buildFrame(f, frameSpec{ipv6: true, cwr: true, payload: randomPayload(301, 500)})
	udp := buildFrame(f, frameSpec{udp: true, payload: randomPayload(302, 100)})
	for _, s := range []struct {
		h     VirtioNetHdr
		frame []byte
	}{
		{VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv4, HdrLen: 66, GSOSize: 200, CsumStart: 34, CsumOffset: 16}, tcp4},
		{VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: VirtioNetHdrGSOTCPv6 | VirtioNetHdrGSOECN, HdrLen: 74, GSOSize: 100, CsumStart: 54, CsumOffset: 16}, tcp6},
		{VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 6}, udp},
		{VirtioNetHdr{GSOType: VirtioNetHdrGSOUDPL4, GSOSize: 10}, udp},
	} {
		b := make([]byte, VirtioNetHdrLen)
		if err := s.h.Encode(b); err != nil {
			f.Fatal(err)
		}
		f.Add(append(b, s.frame...))
	}
	out, sizes := makeOut(groMaxSegments, 1<<16)
	f.Fuzz(func(t *testing.T, data []byte) {
		var h VirtioNetHdr
		if h.Decode(data) != nil {
			return
		}
		frame := data[VirtioNetHdrLen:]
		input := bytes.Clone(frame)
		for i := range sizes {
			sizes[i] = -1
		}
		n, err := SegmentGSO(h, frame, out, sizes, 0)
		if !bytes.Equal(frame, input) {
			t.Fatal("SegmentGSO modified its input")
		}
		if err != nil {
			if n != 0 || sizes[0] != -1 {
				t.Fatalf("%d segments, sizes[0] = %d, with error %v", n, sizes[0], err)
			}
			return
		}
		if h.GSOType == VirtioNetHdrGSONone {
			want := bytes.Clone(frame)
			if h.Complete(want) != nil || n != 1 || !bytes.Equal(out[0][:sizes[0]], want) {
				t.Fatal("GSO_NONE frame not copied and completed")
			}
			return
		}
		in := readLayout(t, frame)
		var joined []byte
		for i := range n {
			seg := out[i][:sizes[i]]
			l := readLayout(t, seg)
			if got := l.end - l.hdrLen; got > int(h.GSOSize) || (i < n-1 && got != int(h.GSOSize)) {
				t.Fatalf("segment %d of %d: %d payload bytes, gso_size %d", i, n, got, h.GSOSize)
			}
			if !refL4Valid(seg, l) {
				t.Fatalf("segment %d: bad checksum", i)
			}
			joined = append(joined, seg[l.hdrLen:]...)
		}
		if !bytes.Equal(joined, frame[in.hdrLen:in.end]) {
			t.Fatal("segments do not give back the payload")
		}
	})
}
