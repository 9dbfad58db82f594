//go:build linux

package poller

import (
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Set waits for any of several FDs to become readable, in the calling
// thread: it lets one thread serve both directions of a queue.
//
// While traffic flows, Wait sleeps in a raw system call and the goroutine
// keeps its P (the runtime's right to run Go code), so that waking up
// costs the runtime nothing. Through the runtime's system call
// bookkeeping, the monitor thread hands the P of a thread asleep for long
// to another, and the sleeper's return must take one back, waking the
// monitor: a cost paid at every hop of a round trip. The runtime's
// preemption signal (a GC, the monitor after 10 ms) ends the raw wait with
// EINTR, and Wait yields the P then. After about a second without an event
// (idleEINTRs preemptions) it goes on waiting through the runtime and
// gives the P back, so that an idle daemon is not woken every 10 ms.
//
// A program that runs Sets should have one P more than it needs besides
// for each goroutine waiting in one (runtime.GOMAXPROCS); deciding that is
// the program's business, not a library's.
type Set struct {
	fds  []*FD
	pfds []unix.PollFd // fd, then efd, of each FD
	// slowWaits counts the waits that went on through the runtime.
	slowWaits atomic.Uint64
}

// idleEINTRs is how many preemptions of a raw wait pass without an event
// before the wait goes on through the runtime.
const idleEINTRs = 100

// NewSet returns a Set of fds. Bit i of Wait's result stands for fds[i].
func NewSet(fds ...*FD) *Set {
	return &Set{fds: fds, pfds: make([]unix.PollFd, 2*len(fds))}
}

// Wait blocks until one of the FDs is readable and returns a bit set of
// which; it returns net.ErrClosed when any of them is closed. It must not
// run concurrently with a Read of one of the FDs.
func (s *Set) Wait() (uint, error) {
	for _, f := range s.fds {
		f.mu.RLock()
	}
	ready, err := s.poll()
	for _, f := range s.fds {
		f.mu.RUnlock()
	}
	return ready, err
}

func (s *Set) poll() (uint, error) {
	for i, f := range s.fds {
		s.pfds[2*i] = unix.PollFd{Fd: int32(f.fd), Events: unix.POLLIN}
		s.pfds[2*i+1] = unix.PollFd{Fd: int32(f.efd), Events: unix.POLLIN}
	}
	idle := 0
	for {
		for _, f := range s.fds {
			if f.closed.Load() {
				return 0, net.ErrClosed
			}
		}
		if idle >= idleEINTRs {
			s.slowWaits.Add(1)
			return s.pollInRuntime()
		}
		// ppoll without timeout or signal mask is poll(2) with an
		// infinite timeout, on every architecture (arm64 has no poll).
		_, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&s.pfds[0])), uintptr(len(s.pfds)), 0, 0, 0, 0)
		if errno == unix.EINTR {
			idle++
			runtime.Gosched()
			continue
		}
		if errno != 0 {
			return 0, os.NewSyscallError("ppoll", errno)
		}
		if ready, err := s.ready(); ready != 0 || err != nil {
			return ready, err
		}
	}
}

// pollInRuntime is poll through the runtime's system call bookkeeping,
// which gives the P back while it sleeps.
func (s *Set) pollInRuntime() (uint, error) {
	for {
		_, err := unix.Poll(s.pfds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, os.NewSyscallError("poll", err)
		}
		if ready, err := s.ready(); ready != 0 || err != nil {
			return ready, err
		}
	}
}

// ready reads the result of a poll: the bit set of readable FDs, or
// net.ErrClosed.
func (s *Set) ready() (uint, error) {
	var ready uint
	for i, f := range s.fds {
		if s.pfds[2*i+1].Revents != 0 || f.closed.Load() {
			return 0, net.ErrClosed
		}
		if s.pfds[2*i].Revents != 0 {
			ready |= 1 << i
		}
	}
	return ready, nil
}
