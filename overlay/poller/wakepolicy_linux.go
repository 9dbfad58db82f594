//go:build linux

package poller

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// WakePolicy moves a forwarding thread between SCHED_BATCH, while its
// traffic is sparse, and SCHED_OTHER, while it is steady.
//
// A thread woken by a lone packet (a ping, a request of a request-response
// exchange) preempts, under SCHED_OTHER, the thread that woke it: the
// sender, which was about to block anyway. Still runnable, the sender
// keeps its CPU busy when the worker's own send wakes the next thread of
// the path, so the scheduler puts that one on another, idle CPU, and on a
// virtual machine waking an idle vCPU costs tens of microseconds. A
// SCHED_BATCH thread does not preempt on wake-up: the sender blocks, the
// worker runs on the same CPU, and so does every later hop of the round
// trip.
//
// Under steady traffic the worker should preempt: it then drains its
// queues before they overflow. So a worker turns SCHED_BATCH after a wait
// of IdleGap or more, and SCHED_OTHER again after BusyWakes waits in a row
// shorter than that. A wait is timed around the poll, so it includes the
// time the woken thread waited for a CPU, which on busy cores reaches
// milliseconds: hence a gap of several. (A poll with a timeout would tell
// idle from busy exactly, but arming its timer costs microseconds on
// every sleep.)
//
// A WakePolicy belongs to one thread: its caller is locked to it
// (runtime.LockOSThread).
type WakePolicy struct {
	// Refused, when set, is told why the kernel refused a change (a
	// seccomp filter, a real-time parent); the thread then stays as it
	// is and the policy stops trying.
	Refused func(error)
	// SetPolicy, when set, replaces sched_setattr(2) on the calling
	// thread; tests use it to make the kernel refuse.
	SetPolicy func(policy uint32) error

	batch bool
	busy  int
	off   bool
	// switches counts the changes of policy, for tests.
	switches atomic.Uint64
}

const (
	// IdleGap is the wait that makes a worker idle.
	IdleGap = 5 * time.Millisecond
	// BusyWakes waits in a row, each shorter than IdleGap, make an idle
	// worker busy.
	BusyWakes = 16
)

// Start puts the calling thread under SCHED_BATCH: a worker starts idle.
func (p *WakePolicy) Start() { p.set(true) }

// Observe records a wait of d that ended with an event, and switches the
// calling thread's policy when that changes it.
func (p *WakePolicy) Observe(d time.Duration) {
	switch {
	case d >= IdleGap:
		p.busy = 0
		if !p.batch {
			p.set(true)
		}
	case p.batch:
		if p.busy++; p.busy >= BusyWakes {
			p.set(false)
		}
	}
}

func (p *WakePolicy) set(batch bool) {
	if p.off {
		return
	}
	policy := uint32(unix.SCHED_NORMAL)
	if batch {
		policy = unix.SCHED_BATCH
	}
	setPolicy := p.SetPolicy
	if setPolicy == nil {
		setPolicy = setThreadPolicy
	}
	if err := setPolicy(policy); err != nil {
		p.off = true
		if p.Refused != nil {
			p.Refused(err)
		}
		return
	}
	p.batch = batch
	p.switches.Add(1)
}

// setThreadPolicy gives the calling thread policy, with no other
// attribute (nice 0).
func setThreadPolicy(policy uint32) error {
	return unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy}, 0)
}
