//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
)

// echoRTT sends echoWarmup+n echo requests to dst from a raw socket created
// in ns and returns the round trips, in microseconds, of the n counted ones
// that were answered, and how many of those were not. cpus, if any, confine
// the sending thread.
func echoRTT(ctx context.Context, ns *netlab.NS, dst netip.Addr, n int, interval time.Duration, cpus []int) ([]float64, int, error) {
	var fd int
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	defer unix.Close(fd)
	// Short receive timeouts let the loop notice ctx and the echo timeout.
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, 0, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if len(cpus) > 0 {
		restore, err := confineThread(cpus)
		if err != nil {
			return nil, 0, err
		}
		defer restore()
	}

	to := &unix.SockaddrInet4{Addr: dst.As4()}
	id := uint16(os.Getpid())
	buf := make([]byte, 1500)
	var samples []float64
	lost := 0
	next := time.Now()
	for i := range echoWarmup + n {
		if err := ctx.Err(); err != nil {
			return samples, lost, err
		}
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = time.Now().Add(interval)
		seq := uint16(i)
		req := echoRequest(id, seq)
		sent := time.Now()
		if err := unix.Sendto(fd, req, 0, to); err != nil {
			return samples, lost, err
		}
		rtt, ok := time.Duration(0), false
		for time.Since(sent) < echoTimeout && ctx.Err() == nil {
			nr, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return samples, lost, err
			}
			if parseEchoReply(buf[:nr], id, seq) {
				rtt, ok = time.Since(sent), true
				break
			}
		}
		switch {
		case i < echoWarmup:
		case ok:
			samples = append(samples, float64(rtt.Nanoseconds())/1e3)
		default:
			lost++
		}
	}
	return samples, lost, nil
}

// confineThread confines the calling thread, which must be locked, to cpus
// and returns what gives it its former CPUs back.
func confineThread(cpus []int) (restore func(), err error) {
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("confining the echo sender to CPUs %s: %w", formatCPUList(cpus), err)
	}
	return func() { _ = unix.SchedSetaffinity(0, &old) }, nil
}
