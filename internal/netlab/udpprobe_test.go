package netlab

import (
	"testing"
	"time"
)

// The probe counts exactly the datagrams that a cut link lost, in the
// window of the cut, and none before or after it.
func TestUDPProbeCountsLossOfACut(t *testing.T) {
	l := NewForTest(t)
	a, b := pair(t, l)
	p, err := StartUDPProbe(t.Context(), a, b, "10.1.0.2", 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	waitSent := func(n int) {
		for deadline := time.Now().Add(10 * time.Second); p.Sent() < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the probe sent %d datagrams, want %d", p.Sent(), n)
			}
		}
	}
	waitSent(100)
	before := ProbeWindow{0, p.Sent()}
	// The receiving end drops everything while it is down.
	cut := ProbeWindow{From: p.Sent()}
	mustOK(t, b.ipCmd("link", "set", "veth-b", "down"))
	waitSent(cut.From + 100)
	mustOK(t, b.ipCmd("link", "set", "veth-b", "up"))
	cut.To = p.Sent()
	waitSent(cut.To + 200)
	after := ProbeWindow{cut.To + 100, p.Sent()} // the link takes a moment to carry again
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := p.Lost(before); n != 0 {
		t.Errorf("%d of %d datagrams lost before the cut", n, before.To)
	}
	if n, all := p.Lost(cut), p.Lost(ProbeWindow{0, p.Sent()}); n == 0 || n != all {
		t.Errorf("%d of %d datagrams lost while the link was down, %d in all; want some, and all of them then", n, cut.To-cut.From, all)
	}
	if n := p.Lost(after); n != 0 {
		t.Errorf("%d of %d datagrams lost after the cut healed", n, after.To-after.From)
	}
}
