// Package hostnet sets up the host's side of the data plane with netlink:
// it finds the underlay (the interface and address VXLAN packets leave
// from), attaches the TAP to its bridge, creating the bridge if needed,
// and prepares a TAP that the kernel routes through (flannel mode).
package hostnet

import (
	"errors"
	"net/netip"

	"github.com/vxland/vxland/encap"
)

// ErrNoInterface is returned when a named interface does not exist.
var ErrNoInterface = errors.New("no such interface")

// Underlay describes the host network that carries VXLAN packets.
type Underlay struct {
	Iface string     // interface the VTEP address lives on
	Addr  netip.Addr // VTEP address: the outer source of every packet
	MTU   int        // MTU of Iface
}

// OverlayMTU is the largest inner IP packet that fits the underlay without
// fragmentation: the underlay MTU less the VXLAN overhead, 50 bytes over
// IPv4 and 70 over IPv6.
func (u Underlay) OverlayMTU() int {
	if u.Addr.Is4() {
		return u.MTU - encap.OverheadIPv4
	}
	return u.MTU - encap.OverheadIPv6
}
