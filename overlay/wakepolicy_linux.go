//go:build linux

package overlay

import (
	"sync/atomic"

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
// SCHED_BATCH when it has waited idleWait without an event, and back to
// SCHED_OTHER after busyWakes events in a row that each came within
// idleWait. A wait that only timed out is what tells idle from busy: time
// measured around a wait would count the time a woken thread waited for a
// CPU, which is long exactly when the machine is busy.
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

// busyWakes events in a row, each within idleWait of the wait's start,
// make a worker busy.
const busyWakes = 16

// idle records a wait that ended without an event.
func (p *wakePolicy) idle() {
	p.busy = 0
	if !p.batch {
		p.set(true)
	}
}

// woken records a wait that ended with an event within idleWait.
func (p *wakePolicy) woken() {
	if !p.batch {
		return
	}
	if p.busy++; p.busy >= busyWakes {
		p.set(false)
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
