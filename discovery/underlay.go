package discovery

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Underlay is the set of addresses a VTEP may have (--underlay-cidr). A
// control plane refuses a record that names a VTEP outside it, so that
// whoever can write to etcd cannot make hosts send overlay traffic to, or
// accept it from, an address off the underlay. An empty Underlay allows
// every address.
type Underlay []netip.Prefix

// ErrOutsideUnderlay is the error of a VTEP address outside the Underlay.
var ErrOutsideUnderlay = errors.New("VTEP address outside the underlay")

// Check returns an error wrapping ErrOutsideUnderlay when addr lies in
// none of u's prefixes.
func (u Underlay) Check(addr netip.Addr) error {
	if len(u) == 0 {
		return nil
	}
	addr = addr.Unmap()
	for _, p := range u {
		if p.Contains(addr) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is in none of %s", ErrOutsideUnderlay, addr, u)
}

// String lists the prefixes, comma-separated, as --underlay-cidr takes them.
func (u Underlay) String() string {
	s := make([]string, len(u))
	for i, p := range u {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
