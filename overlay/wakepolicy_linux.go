//go:build linux

package overlay

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// wakePolicy moves a forwarding thread between SCHED_BATCH, while its
// traffic is sparse, and SCHED_OTHER, while it is steady.
//
// A thread woken by a lone packet (a ping, a request of a request-response
// exchange) preempts, under SCHED_OTHER, the thread that woke it: the
// sender, which was about to block anyway. Still runnable, the sender
// keeps its CPU busy when the worker's own send wakes the next thread of
// the path, so the scheduler puts that one on the other, idle CPU, and on
// a virtual machine waking an idle vCPU costs tens of microseconds. A
// SCHED_BATCH thread does not preempt on wake-up: the sender blocks, the
// worker runs on the same CPU, and so does every later hop of the round
// trip.
//
// Under steady traffic the worker should preempt: it then drains the TAP
// and the socket before their queues overflow. So a worker turns
// SCHED_BATCH after a wait of idleGap or more, and SCHED_OTHER again after
// busyWakes waits in a row shorter than that. A wait is timed from before
// the poll to after it, which also counts the time the woken thread
// waited for a CPU: on two busy cores that reaches milliseconds, and a
// gap of 1 ms turned workers SCHED_BATCH in the middle of a UDP flood
// (UDP 64 B 0.68× of the kernel against 0.74× without the policy and
// 0.88× with a gap of 5 ms, vxbench side by side). A poll with a timeout
// would tell idle from busy exactly, but arming its timer added 2.4 µs to
// every sleep on this VM (ping-pong between two threads on one vCPU: 3.7
// against 8.5 µs per round trip).
type wakePolicy struct {
	batch bool
	busy  int
	// off is set when the kernel refuses a change (a seccomp filter, a
	// real-time parent): the thread stays as it is, and refused, when
	// set, is told why.
	off     bool
	refused func(error)
	// switches counts the changes of policy, for tests.
	switches atomic.Uint64
}

const (
	// idleGap: a wait this long makes a worker idle.
	idleGap = 5 * time.Millisecond
	// busyWakes waits in a row, each shorter than idleGap, make an idle
	// worker busy.
	busyWakes = 16
)

// observe records a wait of d that ended with an event, and switches the
// calling thread's policy when that changes it. The caller is locked to
// its thread.
func (p *wakePolicy) observe(d time.Duration) {
	switch {
	case d >= idleGap:
		p.busy = 0
		if !p.batch {
			p.set(true)
		}
	case p.batch:
		if p.busy++; p.busy >= busyWakes {
			p.set(false)
		}
	}
}

// set changes the calling thread's policy; the caller is locked to its
// thread.
func (p *wakePolicy) set(batch bool) {
	if p.off {
		return
	}
	policy := uint32(unix.SCHED_NORMAL)
	if batch {
		policy = unix.SCHED_BATCH
	}
	if err := setThreadPolicy(policy); err != nil {
		p.off = true
		if p.refused != nil {
			p.refused(err)
		}
		return
	}
	p.batch = batch
	p.switches.Add(1)
}

// setThreadPolicy gives the calling thread policy, with no other
// attribute (nice 0). A variable, so that a test can make it refuse.
var setThreadPolicy = func(policy uint32) error {
	return unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy}, 0)
}
