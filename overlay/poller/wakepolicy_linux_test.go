//go:build linux

package poller

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadPolicy returns the scheduling policy of thread tid (0: the
// calling one), or fails the test (from any goroutine) and returns an
// impossible one.
func threadPolicy(t *testing.T, tid int) uint32 {
	t.Helper()
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Errorf("sched_getattr(%d): %v", tid, err)
		return ^uint32(0)
	}
	return a.Policy
}

// The policy is the thread's own: a SCHED_OTHER worker turns SCHED_BATCH
// after a wait of IdleGap, and back after BusyWakes waits in a row shorter
// than that; a longer wait starts the count again.
func TestWakePolicySwitchesItsThread(t *testing.T) {
	// The test's thread ends with it: the changed policy leaves with it.
	runtime.LockOSThread()
	if got := threadPolicy(t, 0); got != unix.SCHED_NORMAL {
		t.Skipf("test thread runs under policy %d, not SCHED_OTHER", got)
	}
	var p WakePolicy
	p.Observe(IdleGap / 2)
	if got := threadPolicy(t, 0); got != unix.SCHED_NORMAL {
		t.Fatalf("after a wait of %v the policy is %d, want SCHED_OTHER still", IdleGap/2, got)
	}
	p.Observe(IdleGap)
	if got := threadPolicy(t, 0); got != unix.SCHED_BATCH {
		t.Fatalf("after a wait of %v the policy is %d, want SCHED_BATCH (%d)", IdleGap, got, unix.SCHED_BATCH)
	}
	for i := 1; i < BusyWakes; i++ {
		p.Observe(IdleGap - time.Microsecond)
		if got := threadPolicy(t, 0); got != unix.SCHED_BATCH {
			t.Fatalf("after %d busy waits the policy is %d, want SCHED_BATCH still", i, got)
		}
	}
	p.Observe(IdleGap - time.Microsecond)
	if got := threadPolicy(t, 0); got != unix.SCHED_NORMAL {
		t.Fatalf("after %d busy waits the policy is %d, want SCHED_OTHER", BusyWakes, got)
	}
	// A wait of IdleGap in the middle of a run starts the count again.
	p.Observe(IdleGap)
	for range BusyWakes - 1 {
		p.Observe(0)
	}
	p.Observe(IdleGap)
	p.Observe(0)
	if got := threadPolicy(t, 0); got != unix.SCHED_BATCH {
		t.Fatalf("a long wait did not restart the count: policy %d", got)
	}
	if got := p.switches.Load(); got != 3 {
		t.Errorf("%d switches, want 3 (batch, other, batch)", got)
	}
}

// A refused change turns the policy off: Refused hears of it once, and
// the thread is not changed again.
func TestWakePolicyRefusedStopsTrying(t *testing.T) {
	tries, refusals := 0, 0
	p := WakePolicy{
		SetPolicy: func(uint32) error { tries++; return unix.EPERM },
		Refused: func(err error) {
			if !errors.Is(err, unix.EPERM) {
				t.Errorf("Refused(%v), want EPERM", err)
			}
			refusals++
		},
	}
	p.Start()
	for range 3 {
		p.Observe(IdleGap)
		for range BusyWakes {
			p.Observe(0)
		}
	}
	if tries != 1 || refusals != 1 {
		t.Fatalf("%d tries and %d refusals, want 1 and 1", tries, refusals)
	}
}
