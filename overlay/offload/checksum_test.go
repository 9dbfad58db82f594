package offload

import (
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
)

func TestChecksumRFC1071Example(t *testing.T) {
	// RFC 1071 §3: the sum of these bytes is 0xddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Checksum(b, 0); got != 0xddf2 {
		t.Fatalf("Checksum = %#04x, want 0xddf2", got)
	}
}

func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := randomPayload(3, 4096)
	// Every length up to a few unrolled blocks, so that each tail path and
	// each alignment of the 32-byte loop and of the 64-byte vector loop
	// (from avx2Min on amd64) is exercised, then random ones.
	lengths := make([]int, 0, 420)
	for n := range 320 {
		lengths = append(lengths, n)
	}
	for range 100 {
		lengths = append(lengths, r.IntN(len(buf)+1))
	}
	for _, n := range lengths {
		for _, start := range []int{0, 1, 3} {
			if start+n > len(buf) {
				continue
			}
			b := buf[start : start+n]
			initial := r.Uint32()
			if got, want := Checksum(b, initial), refSum(b, initial); got != want {
				t.Fatalf("len %d start %d initial %#x: Checksum = %#04x, reference = %#04x", n, start, initial, got, want)
			}
		}
	}
}

func TestChecksumCarries(t *testing.T) {
	// All-ones data drives every accumulator to its largest values; the
	// fold must still land on one's-complement "negative zero", 0xffff.
	ones := make([]byte, 65536)
	for i := range ones {
		ones[i] = 0xff
	}
	for _, n := range []int{2, 31, 32, 64, 1450, 65535, 65536} {
		if got, want := Checksum(ones[:n], 0xffffffff), refSum(ones[:n], 0xffffffff); got != want {
			t.Errorf("len %d: Checksum = %#04x, reference = %#04x", n, got, want)
		}
	}
	if got := Checksum(nil, 0); got != 0 {
		t.Errorf("Checksum(nil, 0) = %#04x, want 0", got)
	}
}

func TestChecksumComposes(t *testing.T) {
	b := randomPayload(4, 1000)
	whole := Checksum(b, 0)
	for _, cut := range []int{0, 2, 32, 500, 998, 1000} {
		if got := Checksum(b[cut:], uint32(Checksum(b[:cut], 0))); got != whole {
			t.Errorf("cut at %d: %#04x, want %#04x", cut, got, whole)
		}
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	for _, tc := range []struct {
		src, dst string
		protocol uint8
		length   uint32
	}{
		{"10.0.0.1", "10.0.0.2", 6, 1480},
		{"255.255.255.255", "255.255.255.255", 17, 65535},
		{"0.0.0.0", "0.0.0.0", 6, 0},
		{"fd00::1", "fd00::2", 6, 65515},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::", 17, 0x0001_0000},
		{"2001:db8::dead:beef", "2001:db8::1", 17, 0xffffffff},
	} {
		src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		s, d := src.AsSlice(), dst.AsSlice()
		// RFC 8200 §8.1 layout; for IPv4 (RFC 793) the 32-bit length and
		// the zero-padded protocol sum to the same value.
		var ph []byte
		ph = append(ph, s...)
		ph = append(ph, d...)
		ph = append(ph, byte(tc.length>>24), byte(tc.length>>16), byte(tc.length>>8), byte(tc.length))
		ph = append(ph, 0, 0, 0, tc.protocol)
		if got, want := PseudoHeaderSum(tc.protocol, s, d, tc.length), refSum(ph, 0); got != want {
			t.Errorf("%s > %s proto %d len %d: %#04x, want %#04x", tc.src, tc.dst, tc.protocol, tc.length, got, want)
		}
	}
}

func TestChecksumNoAllocs(t *testing.T) {
	b := randomPayload(5, 1450)
	src, dst := b[:16], b[16:32]
	if n := testing.AllocsPerRun(100, func() {
		Checksum(b, 0)
		PseudoHeaderSum(6, src, dst, 1400)
	}); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}

func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{64, 1450, 65536} {
		buf := randomPayload(6, n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				Checksum(buf, 0)
			}
		})
	}
}

func TestIPv4HeaderChecksumMatchesChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 1000 {
		n := 20
		if r.IntN(4) == 0 {
			n = 24 + 4*r.IntN(10) // with options: the general path
		}
		ip := make([]byte, n)
		for i := range ip {
			ip[i] = byte(r.Uint32())
		}
		ip[10], ip[11] = 0, 0
		if got, want := ipv4HeaderChecksum(ip), ^refSum(ip, 0); got != want {
			t.Fatalf("% x: ipv4HeaderChecksum = %#04x, reference %#04x", ip, got, want)
		}
	}
}
