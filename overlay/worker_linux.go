//go:build linux

package overlay

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/vxland/vxland/overlay/poller"
)

// startWorker starts one goroutine that serves both directions of queue
// i, when its device and socket can be polled together, and reports
// whether it did.
//
// Why one thread: a frame written to the TAP runs the receiving stack in
// the writer's context, so a container's answer (an ICMP echo reply, a
// TCP ACK) is often queued on the TAP by the time the write returns. The
// thread that wrote it reads it at once, where a thread of its own would
// first have to be woken.
//
// The worker keeps its P while it sleeps (poller.Set): the program gives
// the data plane a P per queue (see Run).
func (o *Overlay) startWorker(wg *sync.WaitGroup, i int, fail func(error)) bool {
	q := o.queues[i]
	dev, ok1 := q.Device.(PolledDevice)
	conn, ok2 := q.Conn.(PolledConn)
	if !ok1 || !ok2 {
		return false
	}
	wg.Go(func() {
		if err := o.work(i, dev, conn); err != nil {
			fail(err)
		}
	})
	return true
}

// Bits of poller.Set.Wait's result: the order of NewSet's arguments.
const (
	readyDevice = 1 << iota
	readyConn
)

// work forwards in both directions of queue i until the device or the
// socket fails or is closed. It reads from whichever side may have
// something; after any work both sides may (a write to the device may
// queue an answer on it), and only when neither has, it waits.
func (o *Overlay) work(i int, dev PolledDevice, conn PolledConn) error {
	e := o.newEncapsulator(i)
	e.read = dev.TryRead
	d := o.newDecapsulator(i)
	d.read = conn.TryRead
	set := poller.NewSet(dev.FD(), conn.FD())
	ready := uint(readyDevice | readyConn)
	var policy *poller.WakePolicy
	if o.cfg.BatchWhenIdle {
		// The policy belongs to the thread: keep to this one. Threads
		// the runtime starts from here on come from its template thread,
		// under the process's policy.
		runtime.LockOSThread()
		policy = &poller.WakePolicy{SetPolicy: setThreadPolicy, Refused: func(err error) {
			o.schedRefused.Do(func() {
				o.cfg.Logger.Warn("the kernel refused SCHED_BATCH for idle forwarding threads; they stay as they are", "err", err)
			})
		}}
		policy.Start()
	}
	for {
		var err error
		if ready == 0 {
			start := time.Now()
			if ready, err = set.Wait(); err != nil {
				return fmt.Errorf("waiting for device and underlay: %w", err)
			}
			if policy != nil {
				policy.Observe(time.Since(start))
			}
		}
		if ready&readyDevice != 0 {
			if ready, err = next(ready, readyDevice, e.step()); err != nil {
				return fmt.Errorf("reading from device: %w", err)
			}
		}
		if ready&readyConn != 0 {
			if ready, err = next(ready, readyConn, d.step()); err != nil {
				return fmt.Errorf("reading from underlay: %w", err)
			}
		}
	}
}

// next returns which sides may have something after a step of side
// that returned err: both after any work, the others when the side had
// nothing; or the step's failure.
func next(ready, side uint, err error) (uint, error) {
	switch {
	case err == nil:
		return readyDevice | readyConn, nil
	case errors.Is(err, poller.ErrWouldBlock):
		return ready &^ side, nil
	}
	return 0, err
}

// setThreadPolicy, when set, replaces sched_setattr for the workers'
// WakePolicy: a test makes the kernel refuse with it.
var setThreadPolicy func(policy uint32) error
