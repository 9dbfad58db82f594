//go:build linux

package hostnet

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vxland/vxland/overlay/fdb"
)

// SetupRoutedTAP prepares a TAP that the kernel routes through instead of
// bridging (flannel mode): it gets the address mac, which other hosts know
// it by, and mtu, and is brought up. It is attached to no bridge.
func SetupRoutedTAP(tap string, mac fdb.MAC, mtu int) error {
	link, err := netlink.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("TAP %s: %w", tap, err)
	}
	_, err = setRouted(link, mac, mtu)
	return err
}

// NewRoutedHealer returns the Healer of the routed TAP tap, as
// SetupRoutedTAP set it up. The addresses, neighbours and routes through
// it are the flannel node's, which installs them again on its resync.
func NewRoutedHealer(tap string, mac fdb.MAC, mtu int, log *slog.Logger) *Healer {
	return &Healer{log: log, check: func() ([]string, error) {
		link, err := netlink.LinkByName(tap)
		if err != nil {
			return nil, nil // gone: its data plane is creating it again
		}
		return setRouted(link, mac, mtu)
	}}
}

// setRouted gives link the address mac and mtu and brings it up, and says
// what it changed.
//
// The address is set while the device is down: the kernel would refuse to
// change it on some drivers once it is up, and nothing should leave it
// with a passing address. A device that has it already (one adopted from
// an earlier run) is not taken down, which would flush its routes.
func setRouted(link netlink.Link, mac fdb.MAC, mtu int) (repairs []string, err error) {
	a := link.Attrs()
	if !bytes.Equal(a.HardwareAddr, mac[:]) {
		if err := netlink.LinkSetDown(link); err != nil {
			return repairs, fmt.Errorf("bringing %s down: %w", a.Name, err)
		}
		if err := netlink.LinkSetHardwareAddr(link, net.HardwareAddr(mac[:])); err != nil {
			return repairs, fmt.Errorf("setting address %s on %s: %w", mac, a.Name, err)
		}
		a.Flags &^= net.FlagUp
		repairs = append(repairs, fmt.Sprintf("%s address %s", a.Name, mac))
	}
	if a.MTU != mtu {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return repairs, fmt.Errorf("setting MTU %d on %s: %w", mtu, a.Name, err)
		}
		repairs = append(repairs, fmt.Sprintf("%s MTU %d", a.Name, mtu))
	}
	if a.Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return repairs, fmt.Errorf("bringing %s up: %w", a.Name, err)
		}
		repairs = append(repairs, a.Name+" up")
	}
	return repairs, nil
}
