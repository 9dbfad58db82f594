//go:build linux

package hostnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vxland/vxland/overlay/fdb"
	"golang.org/x/sys/unix"
)

// ResolveUnderlay finds the underlay the way an operator would expect:
// local, if given, must be an address of this host (and of iface, if that
// is given too); otherwise the VTEP address is the first global address of
// iface, or else of the interface of the default route. IPv4 is preferred.
func ResolveUnderlay(iface string, local netip.Addr) (Underlay, error) {
	var link netlink.Link
	var err error
	switch {
	case iface != "":
		if link, err = netlink.LinkByName(iface); err != nil {
			return Underlay{}, fmt.Errorf("interface %q: %w", iface, ErrNoInterface)
		}
	case local.IsValid():
		if link, err = linkWithAddr(local); err != nil {
			return Underlay{}, err
		}
	default:
		if link, err = defaultRouteLink(); err != nil {
			return Underlay{}, err
		}
	}
	u := Underlay{Iface: link.Attrs().Name, MTU: link.Attrs().MTU}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return Underlay{}, fmt.Errorf("listing addresses of %s: %w", u.Iface, err)
	}
	if local.IsValid() {
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == local.Unmap() {
				u.Addr = local.Unmap()
				return u, nil
			}
		}
		return Underlay{}, fmt.Errorf("address %s is not on interface %s", local, u.Iface)
	}
	for _, want4 := range []bool{true, false} {
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if ip.Is4() == want4 && ip.IsGlobalUnicast() {
				u.Addr = ip
				return u, nil
			}
		}
	}
	return Underlay{}, fmt.Errorf("interface %s has no global unicast address", u.Iface)
}

func linkWithAddr(local netip.Addr) (netlink.Link, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == local.Unmap() {
			return netlink.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, fmt.Errorf("address %s is not assigned to any interface of this host", local)
}

func defaultRouteLink() (netlink.Link, error) {
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("listing routes: %w", err)
		}
		for _, r := range routes {
			if (r.Dst == nil || isDefault(r.Dst.Mask)) && r.LinkIndex > 0 {
				return netlink.LinkByIndex(r.LinkIndex)
			}
		}
	}
	return nil, errors.New("no default route: name the underlay with --iface or --local-ip")
}

func isDefault(mask []byte) bool {
	for _, b := range mask {
		if b != 0 {
			return false
		}
	}
	return true
}

// AttachTAP gives the TAP the link MTU linkMTU, attaches it to bridge
// (creating the bridge if it does not exist) and brings both up. It
// returns the TAP's MAC. linkMTU is the overlay MTU, or larger: the bridge
// drops a frame longer than its egress port's MTU, so only a TAP with a
// larger MTU passes the packets of containers with a larger MTU to the
// data plane, which answers them with ICMP "too big".
func AttachTAP(tap, bridge string, linkMTU int) (fdb.MAC, error) {
	b := &bridged{tap: tap, bridge: bridge, mtu: linkMTU, ports: make(map[int]bool)}
	if _, err := b.ensure(); err != nil {
		return fdb.MAC{}, err
	}
	link, err := netlink.LinkByName(tap)
	if err != nil {
		return fdb.MAC{}, fmt.Errorf("TAP %s: %w", tap, err)
	}
	var mac fdb.MAC
	if copy(mac[:], link.Attrs().HardwareAddr) != len(mac) {
		return fdb.MAC{}, fmt.Errorf("TAP %s has no Ethernet address", tap)
	}
	return mac, nil
}

// InterfaceExists reports whether an interface called name exists.
func InterfaceExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// CheckTAP reports why the TAP is not serving: missing, down, or (when
// bridge is not "") not attached to bridge. A readiness check, run when
// asked.
func CheckTAP(tap, bridge string) error {
	link, err := netlink.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("TAP %s: %w", tap, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("TAP %s is down", tap)
	}
	if bridge == "" {
		return nil
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	if link.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("TAP %s is not attached to bridge %s", tap, bridge)
	}
	return nil
}
