package offload

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// fuzzSeeds are frames of every kind the code distinguishes, some with
// partial checksums. They are small on purpose: the fuzzer minimizes every
// new interesting input, and its time grows with the input's size.
func fuzzSeeds(tb testing.TB) [][]byte {
	partial := func(f []byte) []byte {
		f = bytes.Clone(f)
		makePartial(tb, f)
		return f
	}
	tcp4 := buildFrame(tb, frameSpec{tcpOptions: true, psh: true, fin: true, payload: randomPayload(90, 600)})
	tcp6 := buildFrame(tb, frameSpec{ipv6: true, tcpOptions: true, cwr: true, payload: randomPayload(91, 500)})
	vlan := buildFrame(tb, frameSpec{vlan: true, payload: randomPayload(92, 100)})
	udp4 := buildFrame(tb, frameSpec{udp: true, payload: randomPayload(93, 64)})
	udp6 := buildFrame(tb, frameSpec{ipv6: true, udp: true, payload: randomPayload(94, 33)})
	return [][]byte{
		tcp4, partial(tcp4), tcp6, partial(tcp6), vlan, partial(vlan),
		udp4, partial(udp4), udp6, partial(udp6),
		buildFrame(tb, frameSpec{fin: true}), arpFrame(tb), tcp4[:40],
	}
}

func FuzzFixChecksum(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		input := bytes.Clone(frame)
		res := FixChecksum(frame)
		switch res {
		case ChecksumNotApplicable:
			if !bytes.Equal(frame, input) {
				t.Fatal("frame modified though not applicable")
			}
			return
		case ChecksumValid, ChecksumBad:
			if !bytes.Equal(frame, input) {
				t.Fatalf("frame modified though %v", res)
			}
		case ChecksumCompleted:
		default:
			t.Fatalf("result %d out of range", res)
		}

		// FixChecksum parsed the frame, so the test's own unchecked
		// reading of it is in bounds. The reference checksum must
		// agree with the verdict.
		l := readLayout(t, frame)
		if valid := refL4Valid(frame, l); valid != (res != ChecksumBad) {
			t.Fatalf("result %v, but the reference checksum says valid=%v", res, valid)
		}
		if res != ChecksumCompleted {
			if res == ChecksumBad && binary.BigEndian.Uint16(input[l.field:]) == refPseudo(input, l) {
				t.Fatal("partial checksum reported bad")
			}
			return
		}
		if got := binary.BigEndian.Uint16(input[l.field:]); got != refPseudo(input, l) {
			t.Fatalf("completed a field of %#04x that is not the pseudo-header sum %#04x", got, refPseudo(input, l))
		}
		for i := range frame {
			if frame[i] != input[i] && i != l.field && i != l.field+1 {
				t.Fatalf("byte %d changed outside the checksum field", i)
			}
		}
		if again := FixChecksum(frame); again != ChecksumValid {
			t.Fatalf("after completion FixChecksum = %v, want %v", again, ChecksumValid)
		}
	})
}

func FuzzSegmentTCP(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, testMTU)
		f.Add(s, 200)
	}
	// Allocated once: each fuzz worker calls the target sequentially.
	const offset = 8
	out := make([][]byte, 64)
	for i := range out {
		out[i] = make([]byte, offset+65536)
	}
	sizes := make([]int, len(out))

	f.Fuzz(func(t *testing.T, frame []byte, mtu int) {
		input := bytes.Clone(frame)
		for i := range sizes {
			sizes[i] = -1
		}
		n, err := SegmentTCP(frame, mtu, out, sizes, offset)
		if !bytes.Equal(frame, input) {
			t.Fatal("SegmentTCP modified its input")
		}
		if err != nil {
			if n != 0 {
				t.Fatalf("%d segments with error %v", n, err)
			}
			for i, s := range sizes {
				if s != -1 {
					t.Fatalf("sizes[%d] = %d written on error %v", i, s, err)
				}
			}
			return
		}
		if n < 1 || n > len(out) {
			t.Fatalf("%d segments for %d buffers", n, len(out))
		}

		in := readLayout(t, frame)
		payload := frame[in.hdrLen:in.end]
		flags := frame[in.l4+13]
		seq := binary.BigEndian.Uint32(frame[in.l4+4:])
		var joined []byte
		var full int
		for i := range n {
			if sizes[i] < 0 || sizes[i] > len(out[i])-offset {
				t.Fatalf("sizes[%d] = %d out of range", i, sizes[i])
			}
			seg := out[i][offset : offset+sizes[i]]
			l := readLayout(t, seg)
			if l.end != len(seg) || l.hdrLen != in.hdrLen || l.end-l.ip > mtu {
				t.Fatalf("segment %d: IP packet [%d:%d] in a %d-byte frame, MTU %d", i, l.ip, l.end, len(seg), mtu)
			}
			if !bytes.Equal(seg[:l.ip], frame[:in.ip]) {
				t.Fatalf("segment %d: Ethernet header differs", i)
			}
			if !l.v6 && refSum(seg[l.ip:l.l4], 0) != 0xffff {
				t.Fatalf("segment %d: bad IPv4 header checksum", i)
			}
			if !refL4Valid(seg, l) {
				t.Fatalf("segment %d: bad TCP checksum", i)
			}
			if got := FixChecksum(bytes.Clone(seg)); got != ChecksumValid {
				t.Fatalf("segment %d: FixChecksum = %v", i, got)
			}
			if got, want := binary.BigEndian.Uint32(seg[l.l4+4:]), seq+uint32(len(joined)); got != want {
				t.Fatalf("segment %d: seq %#x, want %#x", i, got, want)
			}
			want := flags
			if i != n-1 {
				want &^= tcpFlagFIN | tcpFlagPSH
			}
			if i != 0 {
				want &^= tcpFlagCWR
			}
			if got := seg[l.l4+13]; got != want {
				t.Fatalf("segment %d of %d: flags %#02x, want %#02x", i, n, got, want)
			}
			// All segments but the last carry a full MSS; the last
			// carries at most that.
			chunk := seg[l.hdrLen:]
			if i == 0 {
				full = len(chunk)
			}
			if (i < n-1 && len(chunk) != full) || len(chunk) > full {
				t.Fatalf("segment %d of %d: %d payload bytes, the first has %d", i, n, len(chunk), full)
			}
			joined = append(joined, chunk...)
		}
		if !bytes.Equal(joined, payload) {
			t.Fatalf("segment payloads (%d bytes) do not concatenate to the input payload (%d bytes)", len(joined), len(payload))
		}
	})
}
