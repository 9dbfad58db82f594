//go:build !linux

package udp

import (
	"errors"
	"net/netip"

	"github.com/vxland/vxland/overlay/poller"
)

var errLinuxOnly = errors.New("the underlay UDP socket is supported on Linux only")

// Conn is not supported on this OS: Listen never returns one.
type Conn struct{}

// Listen is not supported on this OS.
func Listen(local netip.AddrPort, queues int, opt Options) ([]*Conn, error) {
	return nil, errLinuxOnly
}

func (c *Conn) LocalAddr() netip.AddrPort { return netip.AddrPort{} }
func (c *Conn) FD() *poller.FD            { return nil }
func (c *Conn) BatchSize() int            { return 1 }
func (c *Conn) SourcePorts() []uint16     { return nil }
func (c *Conn) ReadsViews() bool          { return false }
func (c *Conn) Close() error              { return errLinuxOnly }

func (c *Conn) Read(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (int, error) {
	return 0, errLinuxOnly
}

func (c *Conn) TryRead(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (int, error) {
	return 0, errLinuxOnly
}

func (c *Conn) Send(bufs [][]byte, dst netip.AddrPort) error { return errLinuxOnly }

func (c *Conn) SendFlow(bufs [][]byte, dst netip.AddrPort, flow uint32) error {
	return errLinuxOnly
}
