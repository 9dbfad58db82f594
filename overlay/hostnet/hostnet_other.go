//go:build !linux

package hostnet

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"github.com/vxland/vxland/overlay/fdb"
)

var errNotLinux = errors.New("not supported on this OS: vxland needs Linux")

// ResolveUnderlay is not supported on this OS.
func ResolveUnderlay(iface string, local netip.Addr) (Underlay, error) {
	return Underlay{}, errNotLinux
}

// AttachTAP is not supported on this OS.
func AttachTAP(tap, bridge string, linkMTU int) (fdb.MAC, error) { return fdb.MAC{}, errNotLinux }

// InterfaceExists is not supported on this OS.
func InterfaceExists(name string) bool { return false }

// SetupRoutedTAP is not supported on this OS.
func SetupRoutedTAP(tap string, mac fdb.MAC, mtu int) error { return errNotLinux }

// CheckTAP is not supported on this OS.
func CheckTAP(tap, bridge string) error { return errNotLinux }

// Healer is not supported on this OS.
type Healer struct{ OnRepair func() }

// NewBridgedHealer is not supported on this OS: its Healer does nothing.
func NewBridgedHealer(tap, bridge string, linkMTU int, log *slog.Logger) *Healer { return &Healer{} }

// NewRoutedHealer is not supported on this OS: its Healer does nothing.
func NewRoutedHealer(tap string, mac fdb.MAC, mtu int, log *slog.Logger) *Healer { return &Healer{} }

// Run returns at once.
func (h *Healer) Run(ctx context.Context) {}

// Heals returns 0.
func (h *Healer) Heals() uint64 { return 0 }
