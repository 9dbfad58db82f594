//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
)

// requestResponse runs the request/response test for d: a server in dst
// listening on dstIP, a client in src. cpus, if any, confine both ends'
// threads, as they confine the other applications.
func requestResponse(ctx context.Context, src, dst *netlab.NS, dstIP string, d time.Duration, cpus []int) (_ *RRRun, err error) {
	ip, err := netip.ParseAddr(dstIP)
	if err != nil || !ip.Is4() {
		return nil, fmt.Errorf("request/response: %q is not an IPv4 address", dstIP)
	}
	to := &unix.SockaddrInet4{Addr: ip.As4(), Port: rrPort}
	var lfd int
	err = dst.Do(func() error {
		var err error
		if lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return err
		}
		if err := unix.Bind(lfd, to); err != nil {
			return err
		}
		return unix.Listen(lfd, 1)
	})
	if err != nil {
		if lfd > 0 {
			unix.Close(lfd)
		}
		return nil, fmt.Errorf("request/response server in %s on %s: %w", dst, dstIP, err)
	}
	served := make(chan error, 1)
	go func() { served <- serveRR(lfd, cpus) }()
	defer func() {
		// Wakes an accept that no client reached.
		_ = unix.Shutdown(lfd, unix.SHUT_RDWR)
		// A failed run says why the server failed, if it did; once the
		// client is done, the woken accept's error means nothing.
		if serr := <-served; err != nil && serr != nil {
			err = fmt.Errorf("%w (the server: %v)", err, serr)
		}
		unix.Close(lfd)
	}()

	var fd int
	err = src.Do(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := rrSocketOptions(fd); err != nil {
			return err
		}
		return unix.Connect(fd, to)
	})
	if err != nil {
		if fd > 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("request/response client in %s to %s: %w", src, dstIP, err)
	}
	defer unix.Close(fd)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if len(cpus) > 0 {
		restore, err := confineThread(cpus)
		if err != nil {
			return nil, err
		}
		defer restore()
	}
	h := new(latencyHistogram)
	var before, after unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &before); err != nil {
		return nil, fmt.Errorf("request/response: client CPU time: %w", err)
	}
	elapsed, err := rrClient(ctx, fd, h, d)
	if err != nil {
		return nil, fmt.Errorf("request/response %s -> %s after %d transactions: %w", src, dstIP, h.n, err)
	}
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &after); err != nil {
		return nil, fmt.Errorf("request/response: client CPU time: %w", err)
	}
	r := summarizeRR(h, elapsed)
	busy := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	r.ClientCPUPercent = 100 * busy.Seconds() / elapsed.Seconds()
	return r, nil
}

// rrSocketOptions sets what both ends of the request/response connection
// need: no Nagle delay for 1-byte segments, and a bound on a blocking read.
func rrSocketOptions(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return fmt.Errorf("TCP_NODELAY: %w", err)
	}
	tv := unix.NsecToTimeval(rrTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	return nil
}

// serveRR accepts one connection on lfd and answers each byte it reads with
// one byte until the client closes it.
func serveRR(lfd int, cpus []int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if len(cpus) > 0 {
		restore, err := confineThread(cpus)
		if err != nil {
			return err
		}
		defer restore()
	}
	fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return err
	}
	var buf [1]byte
	for {
		n, err := unix.Read(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return err
		}
		if _, err := unix.Write(fd, buf[:]); err != nil {
			return err
		}
	}
}

// rrCheckEvery is how many transactions pass between checks of ctx.
const rrCheckEvery = 1024

// rrClient runs transactions on fd for d, recording each one's time in h,
// and returns how long it ran.
func rrClient(ctx context.Context, fd int, h *latencyHistogram, d time.Duration) (time.Duration, error) {
	var buf [1]byte
	start := time.Now()
	end := start.Add(d)
	for i := 0; ; i++ {
		t0 := time.Now()
		if !t0.Before(end) {
			return t0.Sub(start), nil
		}
		if i%rrCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return t0.Sub(start), err
			}
		}
		if err := rrTransaction(fd, &buf); err != nil {
			return t0.Sub(start), err
		}
		h.record(time.Since(t0))
	}
}

var (
	errRRClosed  = errors.New("the server closed the connection")
	errRRTimeout = fmt.Errorf("no response within %v", rrTimeout)
)

// rrTransaction sends one byte on fd and reads the one byte of the answer.
func rrTransaction(fd int, buf *[1]byte) error {
	buf[0]++
	for {
		_, err := unix.Write(fd, buf[:])
		if err == nil {
			break
		}
		if err != unix.EINTR {
			return err
		}
	}
	for {
		n, err := unix.Read(fd, buf[:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return errRRTimeout
		case err != nil:
			return err
		case n == 0:
			return errRRClosed
		}
		return nil
	}
}
