//go:build !linux

package overlay

import (
	"errors"
	"net/netip"
)

var errFastPathLinux = errors.New("the fast path (batched UDP, TAP offloads) is supported on Linux only")

// BatchUDPConn is not supported on this OS.
type BatchUDPConn struct{ PacketConn }

// ListenBatchUDP is not supported on this OS.
func ListenBatchUDP(local netip.AddrPort, opt BatchOptions) (*BatchUDPConn, []string, error) {
	return nil, nil, errFastPathLinux
}

// OffloadTAP is not supported on this OS.
type OffloadTAP struct{ FrameDevice }

// Name returns "".
func (t *OffloadTAP) Name() string { return "" }

// OpenOffloadTAP is not supported on this OS; the error wraps ErrNoOffload
// so that callers fall back to a plain TAP.
func OpenOffloadTAP(name string, mtu int) (*OffloadTAP, error) {
	return nil, errors.Join(ErrNoOffload, errFastPathLinux)
}

// ListenBatchUDPQueues is not supported on this OS.
func ListenBatchUDPQueues(local netip.AddrPort, opt BatchOptions, n int) ([]*BatchUDPConn, []string, error) {
	return nil, nil, errFastPathLinux
}

// OpenOffloadTAPQueues is not supported on this OS; see OpenOffloadTAP.
func OpenOffloadTAPQueues(name string, mtu, n int) ([]*OffloadTAP, error) {
	return nil, errors.Join(ErrNoOffload, errFastPathLinux)
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
