// Package poller lets a forwarding thread wait for its descriptors itself,
// with poll(2) in its own thread, instead of parking the goroutine in the
// Go runtime's network poller.
//
// Why: on the forward path one goroutine reads a packet, processes it and
// writes it. Through the runtime's poller every read that would block
// costs an epoll wake-up and a hand-off of the goroutine between threads;
// blocking in poll(2) wakes the waiting thread directly, and one thread
// can wait for a TAP queue and a UDP socket at once (Set), so that the
// answer a frame provokes is read by the thread that wrote the frame.
//
// FD owns one non-blocking descriptor and runs the system calls on it:
// Read waits until the descriptor is readable, TryRead returns
// ErrWouldBlock instead, Write waits until it is writable. Each retries on
// EINTR and returns net.ErrClosed once Close was called. Set waits for
// several FDs together. WakePolicy moves a forwarding thread between
// SCHED_BATCH and SCHED_OTHER by the length of its waits. Spin keeps a
// thread polling for a while before it waits.
package poller

import (
	"errors"
	"math"
	"time"
)

// PollAlways is the Spin budget of a thread that never sleeps.
const PollAlways = time.Duration(math.MaxInt64)

// ErrWouldBlock is returned by TryRead when nothing is queued.
var ErrWouldBlock = errors.New("poller: nothing to read")
