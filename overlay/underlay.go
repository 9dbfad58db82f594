package overlay

import (
	"errors"
	"net/netip"
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
// fragmentation: the underlay MTU less 50 bytes over IPv4, 70 over IPv6.
func (u Underlay) OverlayMTU() int {
	if u.Addr.Is4() {
		return u.MTU - 50
	}
	return u.MTU - 70
}
