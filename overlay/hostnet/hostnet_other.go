//go:build !linux

package hostnet

import (
	"errors"
	"net/netip"

	"github.com/vxland/vxland/overlay/fdb"
)

var errNotLinux = errors.New("not supported on this OS: vxland needs Linux")

// ResolveUnderlay is not supported on this OS.
func ResolveUnderlay(iface string, local netip.Addr) (Underlay, error) {
	return Underlay{}, errNotLinux
}

// AttachTAP is not supported on this OS.
func AttachTAP(tap, bridge string, mtu int) (fdb.MAC, error) { return fdb.MAC{}, errNotLinux }

// InterfaceExists is not supported on this OS.
func InterfaceExists(name string) bool { return false }

// SetupRoutedTAP is not supported on this OS.
func SetupRoutedTAP(tap string, mac fdb.MAC, mtu int) error { return errNotLinux }

// CheckTAP is not supported on this OS.
func CheckTAP(tap, bridge string) error { return errNotLinux }
