//go:build linux

package overlay

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdWaiter waits for a non-blocking descriptor to become readable in the
// calling thread, with poll(2), instead of parking the goroutine in the
// runtime's network poller.
//
// Why: on the forward path a packet is read, processed and written by one
// goroutine. Through the netpoller every read that would block costs an
// epoll wake-up and a goroutine hand-off between threads, which measured
// 60-70 µs per hop on a 2-vCPU VM (DATAPATH-FACTS); a round trip crosses
// four such hops. Blocking in poll wakes the waiting thread directly.
//
// An eventfd in the same poll set lets Close wake a waiter, since closing
// a descriptor does not wake a thread blocked on it.
type fdWaiter struct {
	fd     int
	efd    int
	closed atomic.Bool
	// polled is set, before the reading goroutine starts, when that
	// goroutine waits on several descriptors at once (worker): wait then
	// returns errWouldBlock instead of blocking.
	polled bool
	pfds   [2]unix.PollFd // used by the one reading goroutine
	wpfds  [2]unix.PollFd // used by the one writing goroutine
	// mu is held shared around every use of fd and exclusively by close,
	// so that fd is not closed (and its number reused) under a reader.
	mu sync.RWMutex
}

func newFDWaiter(fd int) (*fdWaiter, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	return &fdWaiter{fd: fd, efd: efd}, nil
}

// errWouldBlock is returned by the reads of a polled device or socket
// when nothing is queued.
var errWouldBlock = errors.New("overlay: nothing to read")

// wait blocks until fd is readable or the waiter is closed; when polled,
// it returns errWouldBlock at once.
func (w *fdWaiter) wait() error {
	if w.polled {
		return errWouldBlock
	}
	return w.poll(&w.pfds, unix.POLLIN)
}

// waitWrite blocks until fd is writable or the waiter is closed.
func (w *fdWaiter) waitWrite() error { return w.poll(&w.wpfds, unix.POLLOUT) }

func (w *fdWaiter) poll(fds *[2]unix.PollFd, events int16) error {
	*fds = [2]unix.PollFd{{Fd: int32(w.fd), Events: events}, {Fd: int32(w.efd), Events: unix.POLLIN}}
	for {
		if w.closed.Load() {
			return ErrClosed
		}
		_, err := unix.Poll(fds[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("poll", err)
		}
		if fds[1].Revents != 0 || w.closed.Load() {
			return ErrClosed
		}
		if fds[0].Revents != 0 {
			return nil
		}
	}
}

// close wakes every waiter, waits until none uses fd, and closes fd.
func (w *fdWaiter) close() error {
	if w.closed.Swap(true) {
		return nil
	}
	var one = [8]byte{1}
	_, _ = unix.Write(w.efd, one[:])
	w.mu.Lock()
	defer w.mu.Unlock()
	err := unix.Close(w.fd)
	unix.Close(w.efd)
	return err
}

// multiWaiter waits for any of several descriptors to become readable, in
// the calling thread: it lets one thread serve both directions of a queue.
type multiWaiter struct {
	ws   []*fdWaiter
	pfds []unix.PollFd // fd, then efd, of each waiter
	// slowWaits counts the waits that went on in the runtime's own
	// poll, after idleEINTRs preemptions without an event.
	slowWaits atomic.Uint64
}

// idleEINTRs is how many preemptions of a raw wait (sysmon's come every
// 10 ms) pass without an event before the wait goes on through the
// runtime: about a second of silence.
const idleEINTRs = 100

func newMultiWaiter(ws ...*fdWaiter) *multiWaiter {
	m := &multiWaiter{ws: ws, pfds: make([]unix.PollFd, 2*len(ws))}
	for _, w := range ws {
		w.polled = true
	}
	return m
}

// wait blocks until one of the descriptors is readable, and returns a
// bit set of which (bit i for waiter i); it returns ErrClosed when any
// waiter is closed.
func (m *multiWaiter) wait() (uint, error) {
	for _, w := range m.ws {
		w.mu.RLock()
	}
	ready, err := m.poll()
	for _, w := range m.ws {
		w.mu.RUnlock()
	}
	return ready, err
}

func (m *multiWaiter) poll() (uint, error) {
	for i, w := range m.ws {
		m.pfds[2*i] = unix.PollFd{Fd: int32(w.fd), Events: unix.POLLIN}
		m.pfds[2*i+1] = unix.PollFd{Fd: int32(w.efd), Events: unix.POLLIN}
	}
	idle := 0
	for {
		for _, w := range m.ws {
			if w.closed.Load() {
				return 0, ErrClosed
			}
		}
		if idle >= idleEINTRs {
			// A second without traffic: give the P back, so that an
			// idle daemon is not woken every 10 ms. The first
			// wake-up from there pays the runtime's price once.
			m.slowWaits.Add(1)
			return m.pollInRuntime()
		}
		// A raw system call: the goroutine keeps its P while it sleeps.
		// Through the runtime's syscall bookkeeping, sysmon hands the
		// P of a thread asleep for long to the idle list, and the
		// thread's return then wakes sysmon and takes a P back: on a
		// 2-vCPU VM that cost about 45 µs per wake-up, three times in
		// every round trip (make bench, RTT 290 -> 156 µs). The
		// runtime's preemption signal (GC, sysmon after 10 ms) ends the
		// poll with EINTR, and Gosched lets it have the P; Run adds a P
		// per worker so that the rest of the program keeps its own.
		// ppoll without timeout or signal mask is poll(2) with an
		// infinite timeout, on every architecture (arm64 has no poll).
		_, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&m.pfds[0])), uintptr(len(m.pfds)), 0, 0, 0, 0)
		if errno == unix.EINTR {
			idle++
			runtime.Gosched()
			continue
		}
		if errno != 0 {
			return 0, os.NewSyscallError("ppoll", errno)
		}
		if ready, err := m.ready(); ready != 0 || err != nil {
			return ready, err
		}
	}
}

// pollInRuntime is poll through the runtime's system call bookkeeping,
// which gives the P back while it sleeps.
func (m *multiWaiter) pollInRuntime() (uint, error) {
	for {
		_, err := unix.Poll(m.pfds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, os.NewSyscallError("poll", err)
		}
		if ready, err := m.ready(); ready != 0 || err != nil {
			return ready, err
		}
	}
}

// ready reads the result of a poll: the bit set of readable descriptors,
// or ErrClosed.
func (m *multiWaiter) ready() (uint, error) {
	var ready uint
	for i, w := range m.ws {
		if m.pfds[2*i+1].Revents != 0 || w.closed.Load() {
			return 0, ErrClosed
		}
		if m.pfds[2*i].Revents != 0 {
			ready |= 1 << i
		}
	}
	return ready, nil
}
