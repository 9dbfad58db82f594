package netlab

import (
	"testing"
	"time"
)

// rxPackets returns the frames received by ifname in n, as ip -s counts
// them.
func rxPackets(t *testing.T, n *NS, ifname string) uint64 {
	t.Helper()
	s, err := n.LinkStats(ifname)
	if err != nil {
		t.Fatal(err)
	}
	return s.RX.Packets
}

// A flood of 100,000 frames from distinct source MACs leaves through
// SendFrames whole, each frame once, in seconds.
func TestSendFramesFlood(t *testing.T) {
	const count = 100000
	frames := FloodFrames(count)
	macs := make(map[[6]byte]bool, count)
	for i, f := range frames {
		if len(f) != 60 || [6]byte(f[0:6]) != [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} || f[6]&3 != 2 || f[12] != 0x88 || f[13] != 0xb5 {
			t.Fatalf("frame %d: % x: not a 60-byte broadcast of EtherType 0x88b5 from a unicast, locally administered MAC", i, f)
		}
		macs[[6]byte(f[6:12])] = true
	}
	if len(macs) != count {
		t.Fatalf("%d frames come from %d distinct source MACs", count, len(macs))
	}

	l := NewForTest(t)
	a, b := pair(t, l)
	before := rxPackets(t, b, "veth-b")
	start := time.Now()
	if err := a.SendFrames("veth-a", frames); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// The namespaces' own IPv6 chatter may add a few frames.
	if got := rxPackets(t, b, "veth-b") - before; got < count || got > count+100 {
		t.Fatalf("veth-b received %d frames, want the %d sent", got, count)
	}
	t.Logf("%d frames sent in %s", count, took.Round(time.Millisecond))
}
