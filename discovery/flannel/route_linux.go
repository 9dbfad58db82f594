//go:build linux

package flannel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vxland/vxland/overlay/fdb"
	"golang.org/x/sys/unix"
)

// Device is the Dataplane of a node whose VXLAN device is a vxland TAP:
// neighbours, routes and the device address go to the kernel through
// netlink, VTEPs to the userspace FDB. What flannel writes into the
// kernel vxlan device's FDB (bridge fdb ... dst <PublicIP>) is an entry of
// fdb.Table here.
//
// The device is found by name at each change, not by the index it had
// when NewDevice ran: vxland recreates a deleted TAP under the same name.
type Device struct {
	name string
	vni  uint32
	fdb  *fdb.Table

	mu sync.Mutex
	// allowed is the PublicIP each installed subnet made an accepted
	// VTEP, so that each Allow is undone exactly once.
	allowed map[netip.Prefix]netip.Addr
}

var _ Dataplane = (*Device)(nil)

// NewDevice returns the Dataplane of the device called name, whose frames
// the overlay forwards by fdb in vni.
func NewDevice(name string, vni uint32, fdb *fdb.Table) (*Device, error) {
	if _, err := netlink.LinkByName(name); err != nil {
		return nil, fmt.Errorf("device %s: %w", name, err)
	}
	return &Device{name: name, vni: vni, fdb: fdb, allowed: make(map[netip.Prefix]netip.Addr)}, nil
}

// index returns the device's current interface index.
func (d *Device) index() (int, error) {
	link, err := netlink.LinkByName(d.name)
	if err != nil {
		return 0, fmt.Errorf("device %s: %w", d.name, err)
	}
	return link.Attrs().Index, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// SetLocal puts subnet's network address on the device as a /32, as
// flannel does: a source address for traffic from the node itself to
// remote pods, without a connected route that would swallow the network.
func (d *Device) SetLocal(subnet netip.Prefix) error {
	link, err := netlink.LinkByName(d.name)
	if err != nil {
		return fmt.Errorf("device %s: %w", d.name, err)
	}
	want := netip.PrefixFrom(subnet.Addr(), 32)
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", d.name, err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if netip.PrefixFrom(ip.Unmap(), ones) == want {
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("removing %s from %s: %w", a.IPNet, d.name, err)
		}
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipNet(want)}); err != nil {
		return fmt.Errorf("adding %s to %s: %w", want, d.name, err)
	}
	return nil
}

func (d *Device) neigh(index int, l Lease) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    index,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           l.Subnet.Addr().AsSlice(),
		HardwareAddr: net.HardwareAddr(l.VtepMAC[:]),
	}
}

// route is "<subnet> via <subnet address> dev <device> onlink": the next
// hop is the remote node's device, known by the permanent neighbour entry,
// so the kernel never ARPs across the tunnel.
func (d *Device) route(index int, l Lease) *netlink.Route {
	return &netlink.Route{
		LinkIndex: index,
		Scope:     netlink.SCOPE_UNIVERSE,
		Dst:       ipNet(l.Subnet),
		Gw:        l.Subnet.Addr().AsSlice(),
		Flags:     int(netlink.FLAG_ONLINK),
	}
}

// AddPeer installs the neighbour, the FDB entry and the route of l, in
// the order flannel does: the route last, so the kernel never uses it
// before it can resolve and send to its next hop.
func (d *Device) AddPeer(l Lease) error {
	index, err := d.index()
	if err != nil {
		return err
	}
	if err := netlink.NeighSet(d.neigh(index, l)); err != nil {
		return fmt.Errorf("neighbour %s lladdr %s dev %s: %w", l.Subnet.Addr(), l.VtepMAC, d.name, err)
	}
	d.mu.Lock()
	if old, ok := d.allowed[l.Subnet]; !ok || old != l.PublicIP {
		d.fdb.Allow(l.PublicIP, fdb.SourceFlannel)
		if ok {
			d.fdb.Disallow(old, fdb.SourceFlannel)
		}
		d.allowed[l.Subnet] = l.PublicIP
	}
	d.fdb.Set(d.vni, l.VtepMAC, l.PublicIP, fdb.OriginRemote)
	d.mu.Unlock()
	if err := netlink.RouteReplace(d.route(index, l)); err != nil {
		return fmt.Errorf("route %s via %s dev %s onlink: %w", l.Subnet, l.Subnet.Addr(), d.name, err)
	}
	return nil
}

// RemovePeer removes what AddPeer installed, route first. What is
// already gone is not an error.
func (d *Device) RemovePeer(l Lease) error {
	index, err := d.index()
	if err != nil {
		return err
	}
	if err := netlink.RouteDel(d.route(index, l)); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting route %s dev %s: %w", l.Subnet, d.name, err)
	}
	d.mu.Lock()
	d.fdb.Delete(d.vni, l.VtepMAC, fdb.OriginRemote)
	if old, ok := d.allowed[l.Subnet]; ok {
		d.fdb.Disallow(old, fdb.SourceFlannel)
		delete(d.allowed, l.Subnet)
	}
	d.mu.Unlock()
	if err := netlink.NeighDel(d.neigh(index, l)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("deleting neighbour %s dev %s: %w", l.Subnet.Addr(), d.name, err)
	}
	return nil
}

// Prune removes the onlink routes through the device to subnets not in
// keep, and the permanent neighbours that are not the address of one.
func (d *Device) Prune(keep map[netip.Prefix]Lease) error {
	index, err := d.index()
	if err != nil {
		return err
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: index}, netlink.RT_FILTER_OIF)
	if err != nil {
		return fmt.Errorf("listing routes through %s: %w", d.name, err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Flags&int(netlink.FLAG_ONLINK) == 0 {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		ip, _ := netip.AddrFromSlice(r.Dst.IP)
		if _, ok := keep[netip.PrefixFrom(ip.Unmap(), ones)]; ok {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("deleting route %s dev %s: %w", r.Dst, d.name, err)
		}
	}
	neighs, err := netlink.NeighList(index, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing neighbours of %s: %w", d.name, err)
	}
	wanted := make(map[netip.Addr]bool, len(keep))
	for s := range keep {
		wanted[s.Addr()] = true
	}
	for _, nb := range neighs {
		ip, _ := netip.AddrFromSlice(nb.IP)
		if nb.State&netlink.NUD_PERMANENT == 0 || wanted[ip.Unmap()] {
			continue
		}
		if err := netlink.NeighDel(&nb); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting neighbour %s dev %s: %w", ip, d.name, err)
		}
	}
	return nil
}
