//go:build linux

package netlab

import (
	"errors"
	"fmt"
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendBatch is how many frames SendFrames hands the kernel per sendmmsg.
const sendBatch = 1024

// SendFrames sends each of frames, whole Ethernet frames, out of the
// interface ifname of n through one raw packet socket, as a container's
// stack would send them: the test chooses every byte, source MAC included.
// Frames go sendBatch to a sendmmsg(2), so that a flood of 100,000 takes
// a fraction of a second of system calls. A frame the device queue has no
// room for (ENOBUFS) is sent again; SendFrames fails after a second
// without progress.
func (n *NS) SendFrames(ifname string, frames [][]byte) error {
	return n.SendFramesAt(ifname, frames, 0)
}

// SendFramesAt is SendFrames at perSecond frames a second (0: as fast as
// the device takes them), sent every 10 ms as many as are due.
func (n *NS) SendFramesAt(ifname string, frames [][]byte, perSecond int) error {
	return n.do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("netlab: %s in %s: %w", ifname, n.Name, err)
		}
		// Protocol 0: the socket sends and receives nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("netlab: packet socket in %s: %w", n.Name, err)
		}
		defer unix.Close(fd)
		to := unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Ifindex: int32(ifi.Index)}
		iovs := make([]unix.Iovec, min(len(frames), sendBatch))
		msgs := make([]unix.Mmsghdr, len(iovs))
		sent, stalled, start := 0, time.Time{}, time.Now()
		for sent < len(frames) {
			due := len(frames)
			if perSecond > 0 {
				due = min(due, 1+int(time.Since(start).Seconds()*float64(perSecond)))
				if due <= sent {
					time.Sleep(10 * time.Millisecond)
					continue
				}
			}
			batch := frames[sent:min(due, sent+sendBatch)]
			for i, f := range batch {
				iovs[i].Base = unsafe.SliceData(f)
				iovs[i].SetLen(len(f))
				msgs[i].Hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&to)), Namelen: unix.SizeofSockaddrLinklayer, Iov: &iovs[i]}
				msgs[i].Hdr.SetIovlen(1)
			}
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(batch)), 0, 0, 0)
			switch {
			case errno == 0:
				sent += int(r)
				stalled = time.Time{}
				continue
			case errors.Is(errno, unix.EINTR):
				continue
			case errors.Is(errno, unix.ENOBUFS) && stalled.IsZero():
				stalled = time.Now()
			case errors.Is(errno, unix.ENOBUFS) && time.Since(stalled) < time.Second:
			default:
				return fmt.Errorf("netlab: frame %d of %d out of %s in %s: %w", sent+1, len(frames), ifname, n.Name, errno)
			}
			time.Sleep(100 * time.Microsecond)
		}
		return nil
	})
}

// FrameCounter counts the frames of one EtherType that an interface
// receives, through a packet socket.
type FrameCounter struct {
	fd    int
	total int
	buf   []byte
}

// CountFrames starts counting the frames of EtherType proto that the
// interface ifname of n receives; Count says how many came.
func (n *NS) CountFrames(ifname string, proto uint16) (*FrameCounter, error) {
	c := &FrameCounter{fd: -1, buf: make([]byte, 1<<16)}
	err := n.do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// Protocol 0 receives nothing until bind names the EtherType
		// and the interface: no frame of another interface slips in.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return err
		}
		be := proto>>8 | proto<<8 // network byte order
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: be, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: counting frames of %s in %s: %w", ifname, n.Name, err)
	}
	return c, nil
}

// Count returns how many frames came since CountFrames.
func (c *FrameCounter) Count() (int, error) {
	for {
		_, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		switch {
		case err == nil:
			c.total++
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			return c.total, nil
		default:
			return c.total, fmt.Errorf("netlab: counting frames: %w", err)
		}
	}
}

// Close stops counting.
func (c *FrameCounter) Close() error { return unix.Close(c.fd) }
