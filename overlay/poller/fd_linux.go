//go:build linux

package poller

import (
	"net"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// FD is a non-blocking descriptor waited on with poll(2) in the calling
// thread. An eventfd in the same poll set lets Close wake a waiter, since
// closing a descriptor does not wake a thread blocked on it.
//
// One goroutine at a time may read (Read, TryRead, or a Set's Wait) and
// one may write; they may run concurrently with each other and with Close.
type FD struct {
	fd     int
	efd    int
	closed atomic.Bool
	rpfds  [2]unix.PollFd // the reading goroutine's
	wpfds  [2]unix.PollFd // the writing goroutine's
	// mu is held shared around every use of fd and exclusively by Close,
	// so that fd is not closed (and its number reused) under a caller.
	mu sync.RWMutex
}

// NewFD takes ownership of the non-blocking descriptor fd.
func NewFD(fd int) (*FD, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	return &FD{fd: fd, efd: efd}, nil
}

// Op is one system call on the descriptor fd. It returns the call's errno
// (nil for success); its results go where the closure keeps them.
type Op func(fd int) error

// Read runs op until it returns something other than EAGAIN or EINTR,
// waiting for fd to become readable after each EAGAIN. A failure is
// wrapped as an os.SyscallError naming call.
func (f *FD) Read(call string, op Op) error { return f.do(call, op, unix.POLLIN, &f.rpfds) }

// TryRead is Read that returns ErrWouldBlock instead of waiting.
func (f *FD) TryRead(call string, op Op) error { return f.do(call, op, 0, nil) }

// Write is Read for a call that waits for fd to become writable.
func (f *FD) Write(call string, op Op) error { return f.do(call, op, unix.POLLOUT, &f.wpfds) }

// Control runs op once, with fd kept open, for a call that does not block
// (getsockname, an ioctl).
func (f *FD) Control(op func(fd int) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed.Load() {
		return net.ErrClosed
	}
	return op(f.fd)
}

// do is the one loop around every system call on fd: closed, EINTR,
// EAGAIN (wait for events, or ErrWouldBlock when events is 0).
func (f *FD) do(call string, op Op, events int16, pfds *[2]unix.PollFd) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for {
		if f.closed.Load() {
			return net.ErrClosed
		}
		switch err := op(f.fd); err {
		case nil:
			return nil
		case unix.EINTR:
		case unix.EAGAIN:
			if events == 0 {
				return ErrWouldBlock
			}
			if err := f.poll(pfds, events); err != nil {
				return err
			}
		default:
			return os.NewSyscallError(call, err)
		}
	}
}

// poll blocks until fd has events or f is closed. The caller holds mu.
func (f *FD) poll(pfds *[2]unix.PollFd, events int16) error {
	*pfds = [2]unix.PollFd{{Fd: int32(f.fd), Events: events}, {Fd: int32(f.efd), Events: unix.POLLIN}}
	for {
		if f.closed.Load() {
			return net.ErrClosed
		}
		_, err := unix.Poll(pfds[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("poll", err)
		}
		if pfds[1].Revents != 0 || f.closed.Load() {
			return net.ErrClosed
		}
		if pfds[0].Revents != 0 {
			return nil
		}
	}
}

// Close wakes every waiter, waits until no call uses fd, and closes it.
// Calls after the first return nil.
func (f *FD) Close() error {
	if f.closed.Swap(true) {
		return nil
	}
	one := [8]byte{1}
	_, _ = unix.Write(f.efd, one[:])
	f.mu.Lock()
	defer f.mu.Unlock()
	err := unix.Close(f.fd)
	unix.Close(f.efd)
	return err
}

// Errno turns the errno of a raw system call into Op's result: nil for 0.
func Errno(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
