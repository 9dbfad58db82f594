package offload

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// testMSS is the TCP payload per segment at testMTU, IPv4 with timestamps.
const testMSS = testMTU - 20 - 32

// stream returns consecutive segments of one flow carrying sizes[i] payload
// bytes each, as SegmentTCP would cut them from one frame built from spec:
// sequence numbers and IPv4 IDs counting up, FIN and PSH only on the last
// segment, CWR only on the first, valid checksums.
func stream(tb testing.TB, spec frameSpec, sizes []int) [][]byte {
	tb.Helper()
	var total int
	for _, n := range sizes {
		total += n
	}
	payload := randomPayload(uint64(total)^uint64(len(sizes))<<32, total)
	var segs [][]byte
	var done int
	for i, n := range sizes {
		s := spec
		s.payload = payload[done : done+n]
		s.fin = spec.fin && i == len(sizes)-1
		s.psh = spec.psh && i == len(sizes)-1
		s.cwr = spec.cwr && i == 0
		f := buildFrame(tb, s)
		l := readLayout(tb, f)
		f = f[:l.end]
		binary.BigEndian.PutUint32(f[l.l4+4:], testTCPSeq+uint32(done))
		if !l.v6 {
			binary.BigEndian.PutUint16(f[l.ip+4:], uint16(testIPv4ID+i))
		}
		refill(tb, f)
		segs = append(segs, f)
		done += n
	}
	return segs
}

func repeat(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

// refill recomputes the IPv4 header checksum and the TCP or UDP checksum of
// a frame after a test changed it.
func refill(tb testing.TB, f []byte) {
	tb.Helper()
	l := readLayout(tb, f)
	if !l.v6 {
		f[l.ip+10], f[l.ip+11] = 0, 0
		binary.BigEndian.PutUint16(f[l.ip+10:], ^refSum(f[l.ip:l.l4], 0))
	}
	f[l.field], f[l.field+1] = 0, 0
	binary.BigEndian.PutUint16(f[l.field:], ^refSum(f[l.l4:l.l4+l.l4Len], uint32(refPseudo(f, l))))
}

// edited returns a copy of f changed by edit, checksums recomputed.
func edited(tb testing.TB, f []byte, edit func(f []byte, l layout)) []byte {
	tb.Helper()
	f = bytes.Clone(f)
	edit(f, readLayout(tb, f))
	refill(tb, f)
	return f
}

func tcpPayload(tb testing.TB, f []byte) []byte {
	l := readLayout(tb, f)
	return f[l.hdrLen:l.end]
}

// checkGROFrame checks one element of GRO.Frames against the input segments
// it must have been made of, in order. partial says whether the first of
// them was offered with a partial checksum.
func checkGROFrame(t *testing.T, b []byte, group [][]byte, partial bool) {
	t.Helper()
	var h VirtioNetHdr
	if err := h.Decode(b); err != nil {
		t.Fatal(err)
	}
	frame := b[VirtioNetHdrLen:]
	first := group[0]
	in := readLayout(t, first)
	if len(group) == 1 {
		want := VirtioNetHdr{}
		if partial {
			want = VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: uint16(in.l4), CsumOffset: 16}
		}
		if h != want {
			t.Errorf("single segment: header %+v, want %+v", h, want)
		}
		if !bytes.Equal(frame, first[:in.end]) {
			t.Errorf("single segment changed")
		}
		return
	}

	l := readLayout(t, frame)
	want := VirtioNetHdr{
		Flags:      VirtioNetHdrFNeedsCsum,
		GSOType:    VirtioNetHdrGSOTCPv4,
		HdrLen:     uint16(l.hdrLen),
		GSOSize:    uint16(len(tcpPayload(t, first))),
		CsumStart:  uint16(l.l4),
		CsumOffset: 16,
	}
	if l.v6 {
		want.GSOType = VirtioNetHdrGSOTCPv6
	}
	if first[in.l4+13]&tcpFlagCWR != 0 {
		want.GSOType |= VirtioNetHdrGSOECN
	}
	if h != want {
		t.Errorf("header %+v, want %+v", h, want)
	}
	if l.end != len(frame) {
		t.Errorf("IP packet ends at %d in a %d-byte frame", l.end, len(frame))
	}
	if !l.v6 && refSum(frame[l.ip:l.l4], 0) != 0xffff {
		t.Error("bad IPv4 header checksum")
	}
	// The TCP checksum field holds the pseudo-header sum over the whole
	// super-frame: what checksum offload leaves for the NIC.
	if got, want := binary.BigEndian.Uint16(frame[l.field:]), refPseudo(frame, l); got != want {
		t.Errorf("TCP checksum field %#04x, want the pseudo-header sum %#04x", got, want)
	}
	// Finished as the kernel would, it verifies (gopacket's own sum).
	completed := bytes.Clone(frame)
	if err := h.Complete(completed); err != nil {
		t.Fatal(err)
	}
	pkt := gopacket.NewPacket(completed, layers.LayerTypeEthernet, gopacket.Default)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil || pkt.ErrorLayer() != nil {
		t.Fatalf("super-frame does not decode: %v", pkt.ErrorLayer())
	}
	if err := tcp.SetNetworkLayerForChecksum(pkt.NetworkLayer()); err != nil {
		t.Fatal(err)
	}
	if c, err := tcp.ComputeChecksum(); err != nil || c != 0 {
		t.Errorf("completed super-frame: gopacket says the checksum is off by %#04x (%v)", c, err)
	}

	var payload []byte
	for _, s := range group {
		payload = append(payload, tcpPayload(t, s)...)
	}
	if !bytes.Equal(tcp.Payload, payload) {
		t.Errorf("payload of %d bytes, want the %d of the segments", len(tcp.Payload), len(payload))
	}

	// Cut again as the kernel would, the super-frame gives back the
	// segments it was made of, byte for byte.
	out, sizes := makeOut(groMaxSegments, 9000)
	n, err := SegmentGSO(h, frame, out, sizes, testOffset)
	if err != nil || n != len(group) {
		t.Fatalf("SegmentGSO = %d, %v; want %d segments", n, err, len(group))
	}
	for i := range n {
		if got := out[i][testOffset : testOffset+sizes[i]]; !bytes.Equal(got, group[i]) {
			t.Errorf("segment %d cut from the super-frame differs from the one offered:\n got % x\nwant % x", i, got[:l.hdrLen], group[i][:l.hdrLen])
		}
	}
}

func TestGROTwoFlowsAndARP(t *testing.T) {
	for _, partial := range []bool{false, true} {
		t.Run(fmt.Sprintf("partial=%v", partial), func(t *testing.T) {
			// The largest payloads an IP packet of at most 65535 bytes
			// carries with timestamps, cut at MTU 1450.
			a := stream(t, frameSpec{tcpOptions: true, psh: true}, append(repeat(46, testMSS), 65483-46*testMSS))
			b := stream(t, frameSpec{ipv6: true, tcpOptions: true}, append(repeat(47, testMTU-40-32), 65463-47*(testMTU-40-32)))
			c := stream(t, frameSpec{tcpOptions: true}, repeat(10, testMSS))
			for i := range c { // a second IPv4 flow: another port
				c[i] = edited(t, c[i], func(f []byte, l layout) { f[l.l4+1]++ })
			}
			arp := arpFrame(t)
			// What is offered: with partial checksums, or the segments
			// themselves.
			offer := func(segs [][]byte) [][]byte {
				if !partial {
					return segs
				}
				out := make([][]byte, len(segs))
				for i, f := range segs {
					out[i] = bytes.Clone(f)
					makePartial(t, out[i])
				}
				return out
			}
			oa, ob, oc := offer(a), offer(b), offer(c)
			// Interleave randomly, each flow in its own order.
			r := rand.New(rand.NewPCG(1, 2))
			queues := [][][]byte{oa, ob, oc, {arp}}
			var order [][]byte
			for len(queues) > 0 {
				i := r.IntN(len(queues))
				order = append(order, queues[i][0])
				if queues[i] = queues[i][1:]; len(queues[i]) == 0 {
					queues = append(queues[:i], queues[i+1:]...)
				}
			}

			g := NewGRO(8)
			firstOf := map[*byte]int{&oa[0][0]: 0, &ob[0][0]: 1, &oc[0][0]: 2}
			var flowOrder []int
			for _, f := range order {
				if i, ok := firstOf[&f[0]]; ok {
					flowOrder = append(flowOrder, i)
				}
				if ok := g.Add(f, partial); ok != (&f[0] != &arp[0]) {
					t.Fatalf("Add = %v for a %d-byte frame", ok, len(f))
				}
			}
			frames := g.Frames()
			if len(frames) != 3 {
				t.Fatalf("%d frames, want one per flow", len(frames))
			}
			flows := [][][]byte{a, b, c}
			for i, fi := range flowOrder {
				checkGROFrame(t, frames[i], flows[fi], partial)
			}
			if ip := len(frames[0]) - VirtioNetHdrLen - 14; flowOrder[0] == 0 && ip != 65535 {
				t.Errorf("IPv4 super-frame of %d bytes, want 65535", ip)
			}

			g.Reset()
			if len(g.Frames()) != 0 || g.Len() != 0 {
				t.Fatal("Reset left frames")
			}
		})
	}
}

func TestGRORules(t *testing.T) {
	spec := frameSpec{tcpOptions: true}
	s := stream(t, spec, repeat(5, testMSS))
	edit := func(segs [][]byte, from int, e func(f []byte, l layout)) [][]byte {
		out := make([][]byte, len(segs))
		for i, f := range segs {
			out[i] = f
			if i >= from {
				out[i] = edited(t, f, e)
			}
		}
		return out
	}
	only := func(segs [][]byte, at int, e func(f []byte, l layout)) [][]byte {
		out := append([][]byte(nil), segs...)
		out[at] = edited(t, segs[at], e)
		return out
	}
	pureACK := edited(t, s[2], func(f []byte, l layout) {
		// No payload: cut the frame at the TCP header.
		binary.BigEndian.PutUint16(f[l.ip+2:], uint16(l.hdrLen-l.ip))
	})
	pureACK = pureACK[:readLayout(t, pureACK).hdrLen]
	refill(t, pureACK)
	noDF := edit(s, 0, func(f []byte, l layout) { f[l.ip+6] &^= ipv4FlagDF })

	for _, tc := range []struct {
		name   string
		inputs [][]byte
		want   [][]int // input indices per frame, in the order of Frames
	}{
		{"in-order", s, [][]int{{0, 1, 2, 3, 4}}},
		{"one-segment", s[:1], [][]int{{0}}},
		{"last-shorter-closes", stream(t, spec, []int{testMSS, testMSS, testMSS, 700, testMSS}), [][]int{{0, 1, 2, 3}, {4}}},
		{"larger-than-first", stream(t, spec, []int{700, testMSS, testMSS}), [][]int{{0}, {1, 2}}},
		{"seq-gap", [][]byte{s[0], s[1], s[3], s[4]}, [][]int{{0, 1}, {2, 3}}},
		{"retransmission", [][]byte{s[0], s[1], s[2], s[1]}, [][]int{{0, 1, 2}, {3}}},
		{"different-ack", edit(s, 2, func(f []byte, l layout) { f[l.l4+11]++ }), [][]int{{0, 1}, {2, 3, 4}}},
		{"syn", only(s, 2, func(f []byte, l layout) { f[l.l4+13] |= 0x02 }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"rst", only(s, 2, func(f []byte, l layout) { f[l.l4+13] |= 0x04 }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"urg", only(s, 2, func(f []byte, l layout) { f[l.l4+13] |= 0x20 }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"fin-last", stream(t, frameSpec{tcpOptions: true, fin: true}, repeat(5, testMSS)), [][]int{{0, 1, 2, 3}, {4}}},
		{"psh-in-the-middle", only(s, 2, func(f []byte, l layout) { f[l.l4+13] |= tcpFlagPSH }), [][]int{{0, 1, 2}, {3, 4}}},
		{"psh-first", only(s, 0, func(f []byte, l layout) { f[l.l4+13] |= tcpFlagPSH }), [][]int{{0}, {1, 2, 3, 4}}},
		{"cwr-first", stream(t, frameSpec{tcpOptions: true, cwr: true, ece: true}, repeat(5, testMSS)), [][]int{{0, 1, 2, 3, 4}}},
		{"cwr-in-the-middle", only(s, 2, func(f []byte, l layout) { f[l.l4+13] |= tcpFlagCWR }), [][]int{{0, 1}, {2, 3, 4}}},
		{"ece-changes", edit(s, 2, func(f []byte, l layout) { f[l.l4+13] |= tcpFlagECE }), [][]int{{0, 1}, {2, 3, 4}}},
		{"different-options", edit(s, 2, func(f []byte, l layout) { f[l.l4+20+4+3]++ }), [][]int{{0, 1}, {2, 3, 4}}},
		{"different-tcp-header-length", [][]byte{s[0], stream(t, frameSpec{}, repeat(2, testMSS))[1]}, [][]int{{0}, {1}}},
		{"different-ttl", edit(s, 3, func(f []byte, l layout) { f[l.ip+8]-- }), [][]int{{0, 1, 2}, {3, 4}}},
		{"different-tos", edit(s, 3, func(f []byte, l layout) { f[l.ip+1] = 0x10 }), [][]int{{0, 1, 2}, {3, 4}}},
		{"different-mac", edit(s, 1, func(f []byte, l layout) { f[0] ^= 0x80 }), [][]int{{0}, {1, 2, 3, 4}}},
		{"ipv4-reserved-flag", only(s, 2, func(f []byte, l layout) { f[l.ip+6] |= 0x80 }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"no-df-consecutive-ids", noDF, [][]int{{0, 1, 2, 3, 4}}},
		{"no-df-id-jump", edit(noDF, 2, func(f []byte, l layout) { f[l.ip+4]++ }), [][]int{{0, 1}, {2, 3, 4}}},
		{"ipv6-flow-label", edit(stream(t, frameSpec{ipv6: true}, repeat(4, testMSS)), 2, func(f []byte, l layout) { f[l.ip+3]++ }), [][]int{{0, 1}, {2, 3}}},
		{"ipv6-hop-limit", edit(stream(t, frameSpec{ipv6: true}, repeat(4, testMSS)), 2, func(f []byte, l layout) { f[l.ip+7]-- }), [][]int{{0, 1}, {2, 3}}},
		{"pure-ack-between", [][]byte{s[0], s[1], pureACK, s[2], s[3]}, [][]int{{0, 1}, {2}, {3, 4}}},
		{"max-segments", stream(t, spec, repeat(70, 100)), [][]int{seq(0, 64), seq(64, 70)}},
		{"ip-length-limit", stream(t, spec, repeat(48, testMSS)), [][]int{seq(0, 46), {46, 47}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGRO(len(tc.inputs))
			for i, f := range tc.inputs {
				if !g.Add(f, false) {
					t.Fatalf("Add refused input %d", i)
				}
			}
			frames := g.Frames()
			if len(frames) != len(tc.want) {
				t.Fatalf("%d frames, want %d", len(frames), len(tc.want))
			}
			for i, idx := range tc.want {
				group := make([][]byte, len(idx))
				for j, k := range idx {
					group[j] = tc.inputs[k]
				}
				checkGROFrame(t, frames[i], group, false)
			}
		})
	}
}

func seq(from, to int) []int {
	s := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestGRORefuses(t *testing.T) {
	syn := edited(t, stream(t, frameSpec{}, []int{10})[0], func(f []byte, l layout) { f[l.l4+13] = 0x02 })
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"arp", arpFrame(t)},
		{"udp", buildFrame(t, frameSpec{udp: true, payload: randomPayload(200, 100)})},
		{"vlan-tcp", buildFrame(t, frameSpec{vlan: true, payload: randomPayload(201, 100)})},
		{"syn-of-new-flow", syn},
		{"fin-of-new-flow", buildFrame(t, frameSpec{fin: true})},
		{"no-payload", buildFrame(t, frameSpec{})},
		{"ipv4-fragment", edited(t, stream(t, frameSpec{}, []int{100})[0], func(f []byte, l layout) { f[l.ip+6] |= 0x20 })},
		{"truncated", stream(t, frameSpec{}, []int{100})[0][:60]},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGRO(4)
			if g.Add(tc.frame, false) || g.Len() != 0 {
				t.Fatal("Add took the frame")
			}
		})
	}
}

// A frame of a flow with a pending entry is kept, coalescible or not, so
// that the caller's direct writes never overtake the flow's earlier segments.
// A one-segment entry keeps a partial checksum and says so.
func TestGROKeepsFlowOrder(t *testing.T) {
	s := stream(t, frameSpec{tcpOptions: true, fin: true}, []int{testMSS, testMSS, 0})
	fin := bytes.Clone(s[2])
	makePartial(t, fin)
	partialFirst := bytes.Clone(s[0])
	makePartial(t, partialFirst)
	g := NewGRO(4)
	if !g.Add(partialFirst, true) || !g.Add(s[1], false) || !g.Add(fin, true) {
		t.Fatal("Add refused a frame of a pending flow")
	}
	frames := g.Frames()
	if len(frames) != 2 {
		t.Fatalf("%d frames, want 2", len(frames))
	}
	checkGROFrame(t, frames[0], s[:2], true)
	checkGROFrame(t, frames[1], [][]byte{fin}, true)

	// Without a pending entry the FIN is the caller's.
	g.Reset()
	if g.Add(fin, false) {
		t.Fatal("Add took a FIN of a flow without a pending entry")
	}
}

func TestGROFull(t *testing.T) {
	a := stream(t, frameSpec{tcpOptions: true}, repeat(3, testMSS))
	b := stream(t, frameSpec{ipv6: true}, repeat(1, testMSS))
	c := edited(t, a[0], func(f []byte, l layout) { f[l.l4+1]++ })
	g := NewGRO(2)
	if !g.Add(a[0], false) || g.Full() || !g.Add(b[0], false) || !g.Full() {
		t.Fatal("two flows do not fill a GRO of two")
	}
	if g.Add(c, false) {
		t.Fatal("Add took a third flow")
	}
	if !g.Add(a[1], false) {
		t.Fatal("Add refused a segment to append")
	}
	frames := g.Frames()
	checkGROFrame(t, frames[0], a[:2], false)
	checkGROFrame(t, frames[1], b, false)
	g.Reset()
	if g.Full() || !g.Add(a[2], false) {
		t.Fatal("Reset did not empty the table")
	}
}

func TestGRONoAllocs(t *testing.T) {
	a := stream(t, frameSpec{tcpOptions: true}, repeat(44, 1448-32))
	b := stream(t, frameSpec{ipv6: true, tcpOptions: true}, repeat(20, testMSS-20))
	u := datagrams(t, frameSpec{}, repeat(64, 64))
	arp := arpFrame(t)
	g := NewGRO(8)
	g.UDP = true
	if n := testing.AllocsPerRun(20, func() {
		for i, f := range a {
			g.Add(f, false)
			if i < len(b) {
				g.Add(b[i], true)
			}
		}
		for _, f := range u {
			g.Add(f, false)
		}
		g.Add(arp, false)
		if len(g.Frames()) != 3 {
			panic("not three frames")
		}
		g.Reset()
	}); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}

// BenchmarkGRO coalesces what one 64 KB TSO send becomes on an MTU-1500
// wire with timestamps: 44 segments of 1448 bytes.
func BenchmarkGRO(b *testing.B) {
	segs := stream(b, frameSpec{tcpOptions: true}, repeat(44, 1448))
	var total int
	for _, s := range segs {
		total += len(s)
	}
	g := NewGRO(64)
	b.ReportAllocs()
	b.SetBytes(int64(total))
	for b.Loop() {
		for _, s := range segs {
			g.Add(s, true)
		}
		if len(g.Frames()) != 1 {
			b.Fatal("not one frame")
		}
		g.Reset()
	}
}
