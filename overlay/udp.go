package overlay

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
)

// socketBuffer is the send and receive buffer size asked of the kernel:
// bursts of a fast sender must not overflow a receive queue that the
// forwarding goroutine has not yet drained.
const socketBuffer = 4 << 20

// UDPConn is the underlay socket: one datagram per system call.
type UDPConn struct {
	c *net.UDPConn
	// src are the sending sockets of SendFlow, shared by the queues of
	// one data plane (OpenSourcePorts).
	src []*net.UDPConn
}

var (
	_ PacketConn = (*UDPConn)(nil)
	_ FlowSender = (*UDPConn)(nil)
)

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
	return writeEach(u.c, bufs, dst)
}

func writeEach(c *net.UDPConn, bufs [][]byte, dst netip.AddrPort) error {
	for _, b := range bufs {
		if _, err := c.WriteToUDPAddrPort(b, dst); err != nil {
			return err
		}
	}
	return nil
}

// SendFlow is Send from the source port that flow hashes to, when
// OpenSourcePorts gave the socket some, else from the listening port.
func (u *UDPConn) SendFlow(bufs [][]byte, dst netip.AddrPort, flow uint32) error {
	if len(u.src) == 0 {
		return u.Send(bufs, dst)
	}
	return writeEach(u.src[flow%uint32(len(u.src))], bufs, dst)
}

// OpenSourcePorts opens n sending sockets on the address of cs, each on a
// free port of 49152-65535, and gives them to every socket in cs: SendFlow
// then sends each inner flow from a port of its own, as RFC 7348 §5 asks
// and kernel VXLAN does, whichever queue carries it. Closing any socket of
// cs closes them.
func OpenSourcePorts(cs []*UDPConn, n int) error {
	if len(cs) == 0 || n <= 0 {
		return nil
	}
	addr := cs[0].LocalAddr().Addr()
	var src []*net.UDPConn
	for range n {
		c, err := listenSourcePort(addr)
		if err != nil {
			for _, c := range src {
				c.Close()
			}
			return err
		}
		src = append(src, c)
	}
	for _, c := range cs {
		c.src = src
	}
	return nil
}

// listenSourcePort opens a UDP socket on addr and a free port of the
// dynamic range.
func listenSourcePort(addr netip.Addr) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := bindDynamicPort(addr, func(port uint16) (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
		return err
	})
	if err != nil {
		return nil, err
	}
	_ = c.SetWriteBuffer(socketBuffer)
	return c, nil
}

// bindDynamicPort calls bind with ports of the dynamic range, starting
// from a random one, until bind returns something other than EADDRINUSE;
// it gives up after 64 ports in use.
func bindDynamicPort(addr netip.Addr, bind func(port uint16) error) error {
	span := srcPortMax - srcPortMin + 1
	start := rand.IntN(span)
	for i := range 64 {
		err := bind(uint16(srcPortMin + (start+i*7919)%span))
		if errors.Is(err, syscall.EADDRINUSE) {
			continue
		}
		if err != nil {
			return fmt.Errorf("UDP source socket on %s: %w", addr, err)
		}
		return nil
	}
	return fmt.Errorf("no free UDP source port on %s in %d-%d", addr, srcPortMin, srcPortMax)
}

// SourcePorts returns the ports SendFlow sends from.
func (u *UDPConn) SourcePorts() []uint16 {
	var out []uint16
	for _, c := range u.src {
		out = append(out, c.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	}
	return out
}

// BatchSize is 1.
func (u *UDPConn) BatchSize() int { return 1 }

// Close closes the socket, which unblocks a pending Read, and the sending
// sockets it shares with the other queues: the queues of a data plane
// close together.
func (u *UDPConn) Close() error {
	for _, c := range u.src {
		c.Close() // a second Close of a shared one only fails
	}
	return u.c.Close()
}

// BatchOptions selects the offloads of a BatchUDPConn.
type BatchOptions struct {
	// Batch is how many messages one recvmmsg or sendmmsg moves.
	Batch int
	// GSO sends runs of equal-sized datagrams to one destination as one
	// message with UDP_SEGMENT.
	GSO bool
	// GRO asks the kernel to coalesce received datagrams (UDP_GRO).
	GRO bool
	// SourcePorts, when above zero, opens that many sending sockets bound
	// to ports in 49152-65535 (RFC 7348 §5); SendFlow picks one by the
	// hash of the inner flow, so each flow has a stable source port.
	SourcePorts int
}

// Source ports for SendFlow come from the dynamic range, as RFC 7348 §5
// recommends.
const (
	srcPortMin = 49152
	srcPortMax = 65535
)
