package offload

import (
	"bytes"
	"errors"
	"testing"
)

// TestEncodeTCPSuperFrame checks a super-frame against what the kernel does
// with it: completing its partial checksum gives a checksum that verifies,
// and cutting it by its header gives exactly the segments SegmentTCP cuts
// from the original frame at the same MTU.
func TestEncodeTCPSuperFrame(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    frameSpec
		gsoType uint8
	}{
		{"ipv4", frameSpec{tcpOptions: true, psh: true, fin: true, payload: randomPayload(60, 60000)}, VirtioNetHdrGSOTCPv4},
		{"ipv6", frameSpec{ipv6: true, tcpOptions: true, payload: randomPayload(61, 30000)}, VirtioNetHdrGSOTCPv6},
		{"ipv4-cwr", frameSpec{cwr: true, ece: true, payload: randomPayload(62, 5000)}, VirtioNetHdrGSOTCPv4 | VirtioNetHdrGSOECN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := buildFrame(t, tc.spec)
			pkt := append(make([]byte, VirtioNetHdrLen), frame...)
			n, err := EncodeTCPSuperFrame(pkt, testMTU)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(pkt) {
				t.Fatalf("%d bytes to write, want %d", n, len(pkt))
			}
			var h VirtioNetHdr
			if err := h.Decode(pkt); err != nil {
				t.Fatal(err)
			}
			l := readLayout(t, frame)
			mss := testMTU - (l.hdrLen - l.ip)
			want := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: tc.gsoType, HdrLen: uint16(l.hdrLen),
				GSOSize: uint16(mss), CsumStart: uint16(l.l4), CsumOffset: tcpChecksumOffset}
			if h != want {
				t.Fatalf("header %+v, want %+v", h, want)
			}
			super := pkt[VirtioNetHdrLen:n]
			completed := bytes.Clone(super)
			if err := h.Complete(completed); err != nil || !refL4Valid(completed, l) {
				t.Fatalf("the partial checksum does not complete to a valid one (%v)", err)
			}
			if !bytes.Equal(completed, frame) {
				t.Fatal("the super-frame, checksum completed, differs from the frame")
			}

			segmentGSOLikeTCP(t, h, super)
		})
	}
}

func TestEncodeTCPSuperFrameRefuses(t *testing.T) {
	big := randomPayload(63, 3000)
	truncated := buildFrame(t, frameSpec{payload: big})
	truncated = truncated[:len(truncated)-1]
	for _, tc := range []struct {
		name  string
		frame []byte
		mtu   int
		want  error
	}{
		{"udp", buildFrame(t, frameSpec{udp: true, payload: big}), testMTU, ErrNotTCP},
		{"vlan", buildFrame(t, frameSpec{vlan: true, payload: big}), testMTU, ErrNotTCP},
		{"truncated", truncated, testMTU, ErrMalformed},
		{"mtu-too-small", buildFrame(t, frameSpec{tcpOptions: true, payload: big}), 52, ErrMTUTooSmall},
		{"no-ethernet", []byte{1, 2, 3}, testMTU, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := append(make([]byte, VirtioNetHdrLen), tc.frame...)
			before := bytes.Clone(pkt)
			if _, err := EncodeTCPSuperFrame(pkt, tc.mtu); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !bytes.Equal(pkt, before) {
				t.Fatal("a refused frame was changed")
			}
		})
	}
	if _, err := EncodeTCPSuperFrame(make([]byte, VirtioNetHdrLen-1), testMTU); !errors.Is(err, ErrShortVirtioNetHdr) {
		t.Fatalf("short buffer: %v", err)
	}
}

func TestEncodeTCPSuperFrameNoAllocs(t *testing.T) {
	frame := buildFrame(t, frameSpec{tcpOptions: true, payload: randomPayload(64, 20000)})
	pkt := append(make([]byte, VirtioNetHdrLen), frame...)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := EncodeTCPSuperFrame(pkt, testMTU); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("EncodeTCPSuperFrame allocates %.1f times per frame", allocs)
	}
}
