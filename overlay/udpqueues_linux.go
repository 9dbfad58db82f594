//go:build linux

package overlay

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenUDPQueues opens n plain underlay sockets on local, bound together
// with SO_REUSEPORT (see ListenBatchUDPQueues). n = 1 is ListenUDP.
func ListenUDPQueues(local netip.AddrPort, n int) ([]*UDPConn, error) {
	if n <= 1 {
		c, err := ListenUDP(local)
		if err != nil {
			return nil, err
		}
		return []*UDPConn{c}, nil
	}
	if local.Port() != 0 {
		// Refuse a port that another socket holds, as ListenUDP would.
		c, err := ListenUDP(local)
		if err != nil {
			return nil, err
		}
		c.Close()
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	var cs []*UDPConn
	for range n {
		pc, err := lc.ListenPacket(context.Background(), "udp", local.String())
		if err != nil {
			for _, c := range cs {
				c.Close()
			}
			return nil, fmt.Errorf("listening on UDP %s: %w", local, err)
		}
		c := &UDPConn{c: pc.(*net.UDPConn)}
		_ = c.c.SetReadBuffer(socketBuffer)
		_ = c.c.SetWriteBuffer(socketBuffer)
		local = c.LocalAddr()
		cs = append(cs, c)
	}
	return cs, nil
}
