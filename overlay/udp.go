package overlay

import (
	"fmt"
	"net"
	"net/netip"
)

// socketBuffer is the send and receive buffer size asked of the kernel:
// bursts of a fast sender must not overflow a receive queue that the
// forwarding goroutine has not yet drained.
const socketBuffer = 4 << 20

// UDPConn is the underlay socket: one datagram per system call.
type UDPConn struct {
	c *net.UDPConn
}

var _ PacketConn = (*UDPConn)(nil)

// ListenUDP opens the underlay socket on local.
func ListenUDP(local netip.AddrPort) (*UDPConn, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
	if err != nil {
		return nil, fmt.Errorf("listening on UDP %s: %w", local, err)
	}
	// Best effort: the kernel caps the sizes at net.core.[rw]mem_max.
	_ = c.SetReadBuffer(socketBuffer)
	_ = c.SetWriteBuffer(socketBuffer)
	return &UDPConn{c: c}, nil
}

// LocalAddr returns the address the socket is bound to.
func (u *UDPConn) LocalAddr() netip.AddrPort {
	return u.c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Read reads one datagram into bufs[0][offset:].
func (u *UDPConn) Read(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (int, error) {
	n, src, err := u.c.ReadFromUDPAddrPort(bufs[0][offset:])
	if err != nil {
		return 0, err
	}
	sizes[0], srcs[0] = n, src
	return 1, nil
}

// Send sends each buffer as one datagram to dst.
func (u *UDPConn) Send(bufs [][]byte, dst netip.AddrPort) error {
	for _, b := range bufs {
		if _, err := u.c.WriteToUDPAddrPort(b, dst); err != nil {
			return err
		}
	}
	return nil
}

// BatchSize is 1.
func (u *UDPConn) BatchSize() int { return 1 }

// Close closes the socket, which unblocks a pending Read.
func (u *UDPConn) Close() error { return u.c.Close() }
