//go:build !linux

package overlay

import (
	"errors"
	"net/netip"
)

var errFastPathLinux = errors.New("batched UDP sockets are supported on Linux only")

// BatchUDPConn is not supported on this OS.
type BatchUDPConn struct{ PacketConn }

// ListenBatchUDP is not supported on this OS.
func ListenBatchUDP(local netip.AddrPort, opt BatchOptions) (*BatchUDPConn, []string, error) {
	return nil, nil, errFastPathLinux
}

// ListenBatchUDPQueues is not supported on this OS.
func ListenBatchUDPQueues(local netip.AddrPort, opt BatchOptions, n int) ([]*BatchUDPConn, []string, error) {
	return nil, nil, errFastPathLinux
}

// ListenUDPQueues opens one socket: SO_REUSEPORT queues are Linux only.
func ListenUDPQueues(local netip.AddrPort, n int) ([]*UDPConn, error) {
	if n > 1 {
		return nil, errFastPathLinux
	}
	c, err := ListenUDP(local)
	if err != nil {
		return nil, err
	}
	return []*UDPConn{c}, nil
}
