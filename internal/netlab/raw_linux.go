//go:build linux

package netlab

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// SendFrames sends each of frames, whole Ethernet frames, out of the
// interface ifname of n through one raw packet socket, as a container's
// stack would send them: the test chooses every byte, source MAC included.
func (n *NS) SendFrames(ifname string, frames [][]byte) error {
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
		to := &unix.SockaddrLinklayer{Ifindex: ifi.Index}
		for i, f := range frames {
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return fmt.Errorf("netlab: frame %d of %d out of %s in %s: %w", i+1, len(frames), ifname, n.Name, err)
			}
		}
		return nil
	})
}
