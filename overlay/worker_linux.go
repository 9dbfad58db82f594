//go:build linux

package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

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

// work forwards in both directions of queue i until the device or the
// socket fails or is closed.
func (o *Overlay) work(i int, dev PolledDevice, conn PolledConn) error {
	e := o.newEncapsulator(i)
	e.read = dev.TryRead
	d := o.newDecapsulator(i)
	d.read = conn.TryRead
	policy := startWakePolicy(o.cfg.BatchWhenIdle, &o.schedRefused, o.cfg.Logger)
	return serve(poller.NewSet(dev.FD(), conn.FD()), policy, &poller.Spin{Budget: o.cfg.Poll},
		side{step: e.step, what: "reading from device"}, side{step: d.step, what: "reading from underlay"})
}

// side is one descriptor a forwarding thread reads from: step reads and
// forwards one batch, or returns poller.ErrWouldBlock.
type side struct {
	step func() error
	what string
	// quiet is a side that work on the others cannot make readable (a
	// wake-up): it is read when the wait or a polling round says so,
	// not again after every batch of the others.
	quiet bool
}

// startWakePolicy locks the calling forwarding thread to its OS thread and
// starts its WakePolicy when batchWhenIdle is set; refused logs, once, that
// the kernel said no.
func startWakePolicy(batchWhenIdle bool, refused *sync.Once, log *slog.Logger) *poller.WakePolicy {
	if !batchWhenIdle {
		return nil
	}
	// The policy belongs to the thread: keep to this one. Threads the
	// runtime starts from here on come from its template thread, under
	// the process's policy.
	runtime.LockOSThread()
	policy := &poller.WakePolicy{SetPolicy: setThreadPolicy, Refused: func(err error) {
		refused.Do(func() {
			log.Warn("the kernel refused SCHED_BATCH for idle forwarding threads; they stay as they are", "err", err)
		})
	}}
	policy.Start()
	return policy
}

// serve forwards until a side fails or is closed; side k is set's FD k.
// It reads from every side that may have something; after any work all
// but the quiet ones may (a write to a device may queue an answer on
// it), and only when none has, it polls them all again while spin says
// so, then waits.
//
// A packet found by polling ends no wait, so policy observes only the
// thread's sleeps: it decides how the thread wakes from them, and a
// thread that polls is not woken. Under --poll=always the thread never
// sleeps and keeps the policy it started with (SCHED_BATCH with
// BatchWhenIdle), which only keeps it from preempting others on their
// wake-ups: a thread that yields its CPU every round does not need to.
func serve(set *poller.Set, policy *poller.WakePolicy, spin *poller.Spin, sides ...side) error {
	all := uint(1)<<len(sides) - 1
	busy := all
	for k, s := range sides {
		if s.quiet {
			busy &^= 1 << k
		}
	}
	ready := all
	for {
		if ready == 0 && spin.Idle() {
			ready = all
		}
		if ready == 0 {
			start := time.Now()
			var err error
			if ready, err = set.Wait(); err != nil {
				return fmt.Errorf("waiting for devices and underlay: %w", err)
			}
			if policy != nil {
				policy.Observe(time.Since(start))
			}
		}
		for k, s := range sides {
			if ready&(1<<k) == 0 {
				continue
			}
			switch err := s.step(); {
			case err == nil:
				ready |= busy
				spin.Busy()
			case errors.Is(err, poller.ErrWouldBlock):
				ready &^= 1 << k
			default:
				return fmt.Errorf("%s: %w", s.what, err)
			}
		}
	}
}

// setThreadPolicy, when set, replaces sched_setattr for the workers'
// WakePolicy: a test makes the kernel refuse with it.
var setThreadPolicy func(policy uint32) error

// startWorkers starts a goroutine per queue that serves socket i and queue
// i of every VNI's device, when all of them can be polled together, and
// returns them; nil when they cannot. The caller holds m.mu.
func (m *Mux) startWorkers(wg *sync.WaitGroup, fail func(error)) []*muxWorker {
	conns := make([]PolledConn, len(m.conns))
	for i, c := range m.conns {
		var ok bool
		if conns[i], ok = c.(PolledConn); !ok {
			return nil
		}
		for _, o := range m.vnis.Load().overlays {
			if _, ok := o.queues[i].Device.(PolledDevice); !ok {
				return nil
			}
		}
	}
	workers := make([]*muxWorker, len(conns))
	for i := range conns {
		w, err := newMuxWorker()
		if err != nil {
			fail(err)
			for _, w := range workers[:i] {
				w.close()
			}
			return workers[:0]
		}
		workers[i] = w
	}
	for i, conn := range conns {
		wg.Go(func() {
			err := m.work(i, conn, workers[i])
			m.mu.Lock()
			workers[i].ended = true
			m.changed.Broadcast()
			m.mu.Unlock()
			if err != nil {
				fail(err)
			}
		})
	}
	return workers
}

// muxWorker is the forwarding thread of one queue of a Mux, as the Mux
// tells it that the VNIs changed.
type muxWorker struct {
	// wake is an eventfd in the thread's poll set: written when the VNIs
	// change.
	wake *poller.FD
	// serves is the set of VNIs the thread serves, ended whether it has
	// returned; both guarded by the Mux's mu.
	serves *vniSet
	ended  bool
}

func newMuxWorker() (*muxWorker, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("overlay: a forwarding thread's wake-up: %w", os.NewSyscallError("eventfd", err))
	}
	fd, err := poller.NewFD(efd)
	if err != nil {
		unix.Close(efd)
		return nil, fmt.Errorf("overlay: a forwarding thread's wake-up: %w", err)
	}
	return &muxWorker{wake: fd}, nil
}

// wakeUp makes the thread rebuild its poll set.
func (w *muxWorker) wakeUp() {
	one := [8]byte{1}
	_ = w.wake.Control(func(fd int) error {
		_, err := unix.Write(fd, one[:])
		return err
	})
}

// errRebuild ends a thread's serve to have it rebuild its poll set.
var errRebuild = errors.New("the VNIs served changed")

// woken is the step of the wake-up side: errRebuild once written.
func (w *muxWorker) woken() error {
	var count [8]byte
	err := w.wake.TryRead("read", func(fd int) error {
		_, err := unix.Read(fd, count[:])
		return err
	})
	if err != nil {
		return err
	}
	return errRebuild
}

func (w *muxWorker) close() { w.wake.Close() }

// work forwards socket i and queue i of every VNI's device until one
// fails or is closed: a thread per queue, as Overlay.work, that waits
// for the socket, its wake-up and every VNI's device queue at once. When
// woken, it builds its poll set again from the VNIs served then, and
// tells the Mux it no longer uses the devices of the VNIs gone.
func (m *Mux) work(i int, conn PolledConn, w *muxWorker) error {
	cfg := &m.vnis.Load().overlays[0].cfg
	policy := startWakePolicy(cfg.BatchWhenIdle, &m.schedRefused, m.logger)
	spin := &poller.Spin{Budget: cfg.Poll}
	// The socket's batch and each VNI's encapsulator, with their
	// buffers, are kept across rebuilds: a change of the VNIs allocates
	// for the VNIs added only.
	set := m.vnis.Load()
	x := m.newDemux(i, set)
	x.read = conn.TryRead
	encs := map[*Overlay]side{}
	for {
		set = m.vnis.Load()
		x.deliverTo(set, i)
		fds := []*poller.FD{conn.FD(), w.wake}
		sides := []side{{step: x.step, what: "reading from underlay"}, {step: w.woken, what: "reading the wake-up", quiet: true}}
		for _, o := range set.overlays {
			dev, ok := o.queues[i].Device.(PolledDevice)
			if !ok {
				return fmt.Errorf("VNI %d: its device cannot be polled", o.cfg.VNI)
			}
			s, ok := encs[o]
			if !ok {
				e := o.newEncapsulator(i)
				e.read = dev.TryRead
				s = side{step: e.step, what: fmt.Sprintf("VNI %d: reading from device", o.cfg.VNI)}
				encs[o] = s
			}
			fds = append(fds, dev.FD())
			sides = append(sides, s)
		}
		for o := range encs {
			if !slices.Contains(set.overlays, o) {
				delete(encs, o)
			}
		}
		m.mu.Lock()
		w.serves = set
		m.changed.Broadcast()
		m.mu.Unlock()
		if err := serve(poller.NewSet(fds...), policy, spin, sides...); !errors.Is(err, errRebuild) {
			return err
		}
	}
}
