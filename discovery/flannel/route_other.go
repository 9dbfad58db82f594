//go:build !linux

package flannel

import (
	"errors"
	"net/netip"

	"github.com/vxland/vxland/overlay/fdb"
)

var errNotLinux = errors.New("flannel mode is not supported on this OS: it needs Linux")

// Device is the Dataplane of a vxland TAP; it needs Linux.
type Device struct{}

var _ Dataplane = (*Device)(nil)

// NewDevice is not supported on this OS.
func NewDevice(name string, vni uint32, fdb *fdb.Table) (*Device, error) { return nil, errNotLinux }

// SetLocal is not supported on this OS.
func (d *Device) SetLocal(subnet netip.Prefix) error { return errNotLinux }

// AddPeer is not supported on this OS.
func (d *Device) AddPeer(l Lease) error { return errNotLinux }

// RemovePeer is not supported on this OS.
func (d *Device) RemovePeer(l Lease) error { return errNotLinux }

// Prune is not supported on this OS.
func (d *Device) Prune(keep map[netip.Prefix]Lease) error { return errNotLinux }
