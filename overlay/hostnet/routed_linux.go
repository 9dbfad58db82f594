//go:build linux

package hostnet

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vxland/vxland/overlay/fdb"
)

// SetupRoutedTAP prepares a TAP that the kernel routes through instead of
// bridging (flannel mode): it gets the address mac, which other hosts know
// it by, and mtu, and is brought up. It is attached to no bridge.
//
// The address is set while the device is still down: the kernel would
// refuse to change it on some drivers once it is up, and nothing should
// leave it with a passing address.
func SetupRoutedTAP(tap string, mac fdb.MAC, mtu int) error {
	link, err := netlink.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("TAP %s: %w", tap, err)
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return fmt.Errorf("bringing %s down: %w", tap, err)
	}
	if err := netlink.LinkSetHardwareAddr(link, net.HardwareAddr(mac[:])); err != nil {
		return fmt.Errorf("setting address %s on %s: %w", mac, tap, err)
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("setting MTU %d on %s: %w", mtu, tap, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing %s up: %w", tap, err)
	}
	return nil
}
