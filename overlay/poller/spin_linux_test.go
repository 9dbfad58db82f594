//go:build linux

package poller

import (
	"testing"
	"time"
)

// A zero budget sleeps at once; a budget polls until it is spent and then
// sleeps until the thread is busy again; PollAlways never sleeps.
func TestSpin(t *testing.T) {
	if (&Spin{}).Idle() {
		t.Fatal("a zero budget polls")
	}

	s := &Spin{Budget: time.Millisecond}
	rounds := 0
	for deadline := time.Now().Add(10 * time.Second); s.Idle(); rounds++ {
		if time.Now().After(deadline) {
			t.Fatalf("a budget of 1ms still polls after %d rounds", rounds)
		}
	}
	if rounds == 0 {
		t.Fatal("a budget of 1ms did not poll at all")
	}
	t.Logf("1ms: %d rounds", rounds)
	if s.Idle() {
		t.Fatal("a spent budget polls again")
	}
	s.Busy()
	if !s.Idle() {
		t.Fatal("a busy thread does not poll again")
	}

	s = &Spin{Budget: PollAlways}
	for i := range 10 * spinClockRounds {
		if !s.Idle() {
			t.Fatalf("PollAlways stopped polling after %d rounds", i)
		}
	}
}

// Busy is on the per-packet path, Idle on the way to sleep: neither
// allocates.
func TestSpinNoAllocs(t *testing.T) {
	s := &Spin{Budget: time.Hour}
	if n := testing.AllocsPerRun(1000, func() {
		s.Busy()
		s.Idle()
		s.Idle()
	}); n != 0 {
		t.Fatalf("%v allocations per round", n)
	}
}
