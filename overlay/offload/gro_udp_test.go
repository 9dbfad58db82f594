package offload

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// datagrams returns consecutive UDP datagrams of one flow carrying sizes[i]
// payload bytes each, as SegmentUDP would cut them from one frame built
// from spec: IPv4 IDs counting up, valid checksums.
func datagrams(tb testing.TB, spec frameSpec, sizes []int) [][]byte {
	tb.Helper()
	spec.udp = true
	var total int
	for _, n := range sizes {
		total += n
	}
	payload := randomPayload(uint64(total)^uint64(len(sizes))<<40, total)
	var out [][]byte
	var done int
	for i, n := range sizes {
		s := spec
		s.payload = payload[done : done+n]
		f := buildFrame(tb, s)
		l := readLayout(tb, f)
		f = f[:l.end]
		if !l.v6 {
			binary.BigEndian.PutUint16(f[l.ip+4:], uint16(testIPv4ID+i))
		}
		refill(tb, f)
		out = append(out, f)
		done += n
	}
	return out
}

// addAll offers frames to a GRO that merges UDP and returns its frames.
func groUDP(t *testing.T, frames ...[]byte) [][]byte {
	t.Helper()
	g := NewGRO(8)
	g.UDP = true
	for i, f := range frames {
		if !g.Add(f, false) {
			t.Fatalf("Add refused frame %d", i)
		}
	}
	return g.Frames()
}

// checkUDPSuperFrame checks that b (a virtio-net header and frame from
// GRO.Frames) is a USO super-frame that SegmentGSO cuts back into exactly
// the datagrams of group.
func checkUDPSuperFrame(t *testing.T, b []byte, group [][]byte) {
	t.Helper()
	var h VirtioNetHdr
	if err := h.Decode(b); err != nil {
		t.Fatal(err)
	}
	frame := b[VirtioNetHdrLen:]
	first := readLayout(t, group[0])
	want := VirtioNetHdr{
		Flags:      VirtioNetHdrFNeedsCsum,
		GSOType:    VirtioNetHdrGSOUDPL4,
		HdrLen:     uint16(first.hdrLen),
		GSOSize:    uint16(first.end - first.hdrLen),
		CsumStart:  uint16(first.l4),
		CsumOffset: udpChecksumOffset,
	}
	if h != want {
		t.Fatalf("header %+v, want %+v", h, want)
	}
	l := readLayout(t, frame)
	if l.l4Len != l.end-l.l4 {
		t.Fatalf("UDP length %d, IP payload %d", l.l4Len, l.end-l.l4)
	}
	// What a sender using UDP_SEGMENT leaves: the pseudo-header sum over
	// the whole UDP length, for the kernel to finish per datagram.
	if got, want := binary.BigEndian.Uint16(frame[l.field:]), refPseudo(frame, l); got != want {
		t.Fatalf("checksum field %#04x, want the pseudo-header sum %#04x", got, want)
	}
	out, sizes := makeOut(groMaxSegments, 2048)
	n, err := SegmentGSO(h, frame, out, sizes, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(group) {
		t.Fatalf("cut into %d datagrams, want %d", n, len(group))
	}
	for i := range n {
		if got := out[i][:sizes[i]]; !bytes.Equal(got, group[i]) {
			t.Fatalf("datagram %d differs:\n got % x\nwant % x", i, got, group[i])
		}
	}
}

func TestGROUDPRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  frameSpec
		sizes []int
	}{
		{"ipv4-64B", frameSpec{}, repeat(64, 64)},
		{"ipv4-1400B-short-last", frameSpec{}, append(repeat(20, 1400), 99)},
		{"ipv6", frameSpec{ipv6: true}, append(repeat(30, 1000), 1)},
		{"ipv4-ids-wrap", frameSpec{}, repeat(5, 8)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := datagrams(t, tc.spec, tc.sizes)
			frames := groUDP(t, ds...)
			if len(frames) != 1 {
				t.Fatalf("%d frames, want 1", len(frames))
			}
			checkUDPSuperFrame(t, frames[0], ds)
		})
	}
}

func TestGROUDPRules(t *testing.T) {
	ds := datagrams(t, frameSpec{}, repeat(6, 100))
	otherPort := edited(t, ds[1], func(f []byte, l layout) { f[l.l4+1]++ })
	// The UDP length says less than the IP packet carries.
	trailing := edited(t, ds[1], func(f []byte, l layout) {
		binary.BigEndian.PutUint16(f[l.l4+4:], uint16(l.end-l.l4-1))
	})
	noDFGap := func(f []byte, l layout) {
		f[l.ip+6] &^= ipv4FlagDF
		binary.BigEndian.PutUint16(f[l.ip+4:], 7)
	}
	shortThenFull := datagrams(t, frameSpec{}, []int{100, 50, 100})
	longer := datagrams(t, frameSpec{}, []int{100, 101})
	tcp := stream(t, frameSpec{}, []int{100})
	for _, tc := range []struct {
		name   string
		frames [][]byte
		groups [][]int // indices of frames in each output frame
	}{
		{"shorter-ends", shortThenFull, [][]int{{0, 1}, {2}}},
		{"longer-starts-anew", longer, [][]int{{0}, {1}}},
		{"other-port-is-another-flow", [][]byte{ds[0], otherPort, ds[1]}, [][]int{{0, 2}, {1}}},
		{"tcp-on-the-same-ports", [][]byte{ds[0], tcp[0], ds[1]}, [][]int{{0, 2}, {1}}},
		{"udp-length-mismatch", [][]byte{ds[0], trailing}, [][]int{{0}, {1}}},
		{"no-df-id-gap", [][]byte{edited(t, ds[0], func(f []byte, l layout) { f[l.ip+6] &^= ipv4FlagDF }), edited(t, ds[1], noDFGap)}, [][]int{{0}, {1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames := groUDP(t, tc.frames...)
			if len(frames) != len(tc.groups) {
				t.Fatalf("%d frames, want %d", len(frames), len(tc.groups))
			}
			for i, idx := range tc.groups {
				var group [][]byte
				for _, j := range idx {
					group = append(group, tc.frames[j])
				}
				if len(group) > 1 {
					checkUDPSuperFrame(t, frames[i], group)
					continue
				}
				if !bytes.Equal(frames[i][VirtioNetHdrLen:], group[0]) {
					t.Fatalf("frame %d: a single frame changed", i)
				}
			}
		})
	}
}

func TestGROUDPOff(t *testing.T) {
	g := NewGRO(4)
	for _, d := range datagrams(t, frameSpec{}, repeat(2, 100)) {
		if g.Add(d, false) {
			t.Fatal("a GRO without UDP took a UDP datagram")
		}
	}
	g.UDP = true
	if g.Add(buildFrame(t, frameSpec{udp: true}), false) {
		t.Fatal("took an empty datagram of a flow without a pending entry")
	}
}

func TestSegmentUDPErrors(t *testing.T) {
	ds := datagrams(t, frameSpec{}, []int{300})
	out, sizes := makeOut(4, 2048)
	if _, err := SegmentUDP(ds[0], 0, out, sizes, 0); err != ErrGSOSizeZero {
		t.Errorf("gso size 0: %v", err)
	}
	if _, err := SegmentUDP(ds[0], 50, out, sizes, 0); err != ErrTooManySegments {
		t.Errorf("6 datagrams into 4 buffers: %v", err)
	}
	if _, err := SegmentUDP(stream(t, frameSpec{}, []int{10})[0], 50, out, sizes, 0); err != ErrNotUDP {
		t.Errorf("TCP: %v", err)
	}
	if _, err := SegmentUDP(arpFrame(t), 50, out, sizes, 0); err != ErrNotUDP {
		t.Errorf("ARP: %v", err)
	}
	small, _ := makeOut(4, 100)
	if _, err := SegmentUDP(ds[0], 100, small, sizes, 0); err != ErrBufferTooSmall {
		t.Errorf("small buffers: %v", err)
	}
}
