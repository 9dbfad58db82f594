//go:build linux

package poller

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Spin decides how long a forwarding thread that found nothing to read
// keeps polling its descriptors with non-blocking reads before it sleeps
// in Set.Wait: a thread that polls is running when the next packet comes,
// and waking a sleeping thread costs tens of microseconds on a virtual
// machine, at every hop of a round trip.
//
// It is for hosts that give the daemon a core of its own. Several threads
// (and other daemons) may share that core, so Idle yields the CPU each
// round (sched_yield) instead of holding it for a scheduler tick. The
// clock is read once per spinClockRounds rounds, through the vDSO: no
// timer is armed.
//
// A Spin belongs to one thread.
type Spin struct {
	// Budget is how long the thread polls after its last packet: 0 never
	// (it sleeps at once), PollAlways forever.
	Budget time.Duration

	rounds int
	since  time.Time
}

// spinClockRounds is how many idle rounds pass between readings of the
// clock. A round is two or more non-blocking reads and a sched_yield, a
// few microseconds; reading the clock every 16 rounds overshoots a
// budget by well under a tenth of a millisecond.
const spinClockRounds = 16

// Busy records that the thread found work: its next idle round starts a
// new budget.
func (s *Spin) Busy() { s.rounds = 0 }

// Idle is called when a round of reads found nothing. It reports whether
// the thread should poll again, after yielding the CPU, rather than
// sleep; once it said no, it says no until Busy.
func (s *Spin) Idle() bool {
	switch {
	case s.Budget <= 0:
		return false
	case s.Budget == PollAlways:
	case s.rounds < 0:
		return false // spent
	case s.rounds == 0:
		s.since = time.Now()
	case s.rounds%spinClockRounds == 0 && time.Since(s.since) >= s.Budget:
		s.rounds = -1
		return false
	}
	s.rounds++
	// sched_yield lets the kernel run the other threads of this CPU;
	// raw, as Set's ppoll, so that the runtime does not hand the P away
	// meanwhile. Gosched, every spinClockRounds rounds only, runs the
	// goroutines waiting for this thread's P (the thread keeps it, as in
	// Set.Wait): a forwarding thread is locked to its OS thread, and
	// there Gosched hands the P to another thread and back, two wake-ups
	// of threads. At every round it cost a polling vxland on a core of
	// its own a third of its request/response rate (vxbench --app-cpus 0
	// --vxland-cpus 1: 3.9 thousand transactions/s, against 6.1 at every
	// 16th round).
	if s.rounds%spinClockRounds == 0 {
		runtime.Gosched()
	}
	unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	return true
}
