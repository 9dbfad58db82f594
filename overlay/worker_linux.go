//go:build linux

package overlay

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// polledReader is a device or socket whose reads can be waited for
// together with others' in one thread.
type polledReader interface {
	readWaiter() *fdWaiter
}

func (t *OffloadTAP) readWaiter() *fdWaiter   { return t.w }
func (c *BatchUDPConn) readWaiter() *fdWaiter { return c.w }

// startWorker starts one goroutine that serves both directions of q, when
// its device and socket can be polled together, and reports whether it
// did.
//
// Why one thread: a frame written to the TAP runs the receiving stack in
// the writer's context, so a container's answer (an ICMP echo reply, a
// TCP ACK) is often queued on the TAP by the time the write returns. The
// thread that wrote it reads it at once, where a thread of its own would
// first have to be woken, which costs tens of microseconds on an idle
// vCPU (go test -bench PollWakeup ./overlay).
func (o *Overlay) startWorker(wg *sync.WaitGroup, i int, fail func(error)) bool {
	q := o.queues[i]
	dev, ok1 := q.Device.(polledReader)
	conn, ok2 := q.Conn.(polledReader)
	if !ok1 || !ok2 {
		return false
	}
	mw := newMultiWaiter(dev.readWaiter(), conn.readWaiter())
	// The worker keeps a P while it sleeps (multiWaiter.wait): one more
	// for as long as it runs, so that the other goroutines keep theirs.
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	wg.Go(func() {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) - 1)
		if err := o.work(i, mw); err != nil {
			fail(err)
		}
	})
	return true
}

// Bits of multiWaiter.wait's result: the order of newMultiWaiter's
// arguments.
const (
	readyDevice = 1 << iota
	readyConn
)

// work forwards in both directions of queue i until the device or the socket
// fails or is closed. It reads from whichever side may have something;
// after any work both sides may (a write to the device may queue an
// answer on it), and only when neither has, it waits.
func (o *Overlay) work(i int, mw *multiWaiter) error {
	e := o.newEncapsulator(i)
	d := o.newDecapsulator(i)
	ready := uint(readyDevice | readyConn)
	var policy *wakePolicy
	if o.cfg.BatchWhenIdle {
		// The policy belongs to the thread: keep to this one. Threads
		// the runtime starts from here on come from its template thread,
		// under the process's policy.
		runtime.LockOSThread()
		policy = &wakePolicy{refused: func(err error) {
			o.schedRefused.Do(func() {
				o.cfg.Logger.Warn("the kernel refused SCHED_BATCH for idle forwarding threads; they stay as they are", "err", err)
			})
		}}
		policy.set(true) // a worker starts idle
	}
	for {
		if ready == 0 {
			var err error
			start := time.Now()
			if ready, err = mw.wait(); err != nil {
				return fmt.Errorf("waiting for device and underlay: %w", err)
			}
			if policy != nil {
				policy.observe(time.Since(start))
			}
		}
		if ready&readyDevice != 0 {
			switch err := e.step(); {
			case err == nil:
				ready = readyDevice | readyConn
			case errors.Is(err, errWouldBlock):
				ready &^= readyDevice
			default:
				return fmt.Errorf("reading from device: %w", err)
			}
		}
		if ready&readyConn != 0 {
			switch err := d.step(); {
			case err == nil:
				ready = readyDevice | readyConn
			case errors.Is(err, errWouldBlock):
				ready &^= readyConn
			default:
				return fmt.Errorf("reading from underlay: %w", err)
			}
		}
	}
}
