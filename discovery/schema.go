package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vxland/vxland/overlay/fdb"
)

// SchemaVersion is the version of the records this code writes. Readers
// accept any version at or above 1 whose fields they understand: a newer
// writer may add fields, never change the meaning of these.
const SchemaVersion = 1

// The key schema, documented for operators in docs/etcd-schema.md:
//
//	<prefix>/v1/vni/<vni>/vtep/<vtep address>  -> Member
//	<prefix>/v1/vni/<vni>/mac/<mac>            -> MACRecord
//
// Every key a host writes hangs on that host's lease.

// Member says "the VTEP at Addr is a member of VNI N": it receives the
// VNI's flooded frames and may send to us.
type Member struct {
	Version  int        `json:"version"`
	Addr     netip.Addr `json:"addr"`
	Port     uint16     `json:"port"`
	Hostname string     `json:"hostname,omitempty"`
	Started  time.Time  `json:"started,omitzero"`
}

// MACRecord says "MAC lives behind the VTEP at VTEP", with the IPv4
// addresses it has claimed in ARP and the IPv6 addresses it has claimed
// in neighbour discovery. IPv6 has a field of its own because readers
// before it skip a record with an IPv6 address in IPs, and would lose
// the MAC; a field they do not know they ignore.
type MACRecord struct {
	Version int          `json:"version"`
	MAC     string       `json:"mac"`
	VTEP    netip.Addr   `json:"vtep"`
	IPs     []netip.Addr `json:"ips,omitempty"`
	IPv6    []netip.Addr `json:"ipv6,omitempty"`
}

// neighbors returns every address the record binds to its MAC.
func (r *MACRecord) neighbors() []netip.Addr { return slices.Concat(r.IPs, r.IPv6) }

// Keys builds and parses the keys of one VNI under a prefix.
type Keys struct {
	base string // <prefix>/v1/vni/<vni>/
}

// NewKeys returns the key space of vni under prefix.
func NewKeys(prefix string, vni uint32) Keys {
	return Keys{base: strings.TrimRight(prefix, "/") + "/v1/vni/" + strconv.FormatUint(uint64(vni), 10) + "/"}
}

// Prefix is the prefix of every key of the VNI.
func (k Keys) Prefix() string { return k.base }

// Member is the key of the VTEP at addr.
func (k Keys) Member(addr netip.Addr) string { return k.base + "vtep/" + addr.String() }

// MAC is the key of mac.
func (k Keys) MAC(mac fdb.MAC) string { return k.base + "mac/" + mac.String() }

var errBadRecord = errors.New("malformed record")

// record is one parsed key: exactly one of member and mac is set.
type record struct {
	member *Member
	mac    *MACRecord
	macKey fdb.MAC
}

// vtep is the VTEP address the record names.
func (r record) vtep() netip.Addr {
	if r.member != nil {
		return r.member.Addr
	}
	return r.mac.VTEP
}

// parse validates key and value. The value must be JSON of a supported
// version and agree with its key.
func (k Keys) parse(key string, value []byte) (record, error) {
	rest, ok := strings.CutPrefix(key, k.base)
	if !ok {
		return record{}, fmt.Errorf("%w: key outside %s", errBadRecord, k.base)
	}
	kind, name, ok := strings.Cut(rest, "/")
	if !ok {
		return record{}, fmt.Errorf("%w: unknown key layout", errBadRecord)
	}
	switch kind {
	case "vtep":
		addr, err := netip.ParseAddr(name)
		if err != nil {
			return record{}, fmt.Errorf("%w: key names no address: %v", errBadRecord, err)
		}
		if addr.Is4In6() {
			// ::ffff:a.b.c.d is the IPv4 VTEP a.b.c.d: a second key for it.
			return record{}, fmt.Errorf("%w: IPv4-mapped address %s, use %s", errBadRecord, addr, addr.Unmap())
		}
		if addr.String() != name {
			// One VTEP, one key: another spelling would be a second record.
			return record{}, fmt.Errorf("%w: key does not spell %s canonically", errBadRecord, addr)
		}
		var m Member
		if err := json.Unmarshal(value, &m); err != nil {
			return record{}, fmt.Errorf("%w: %v", errBadRecord, err)
		}
		switch {
		case m.Version < SchemaVersion:
			return record{}, fmt.Errorf("%w: version %d", errBadRecord, m.Version)
		case m.Addr != addr:
			return record{}, fmt.Errorf("%w: addr %s does not match the key", errBadRecord, m.Addr)
		case m.Port == 0:
			return record{}, fmt.Errorf("%w: no port", errBadRecord)
		}
		return record{member: &m}, nil
	case "mac":
		mac, err := fdb.ParseMAC(name)
		if err != nil {
			return record{}, fmt.Errorf("%w: key names no Ethernet address", errBadRecord)
		}
		if mac.String() != name {
			// One MAC, one key, one owner: another spelling would be a
			// second record for the same MAC.
			return record{}, fmt.Errorf("%w: key does not spell %s canonically", errBadRecord, mac)
		}
		var r MACRecord
		if err := json.Unmarshal(value, &r); err != nil {
			return record{}, fmt.Errorf("%w: %v", errBadRecord, err)
		}
		rmac, err := fdb.ParseMAC(r.MAC)
		switch {
		case r.Version < SchemaVersion:
			return record{}, fmt.Errorf("%w: version %d", errBadRecord, r.Version)
		case err != nil || rmac != mac:
			return record{}, fmt.Errorf("%w: mac %q does not match the key", errBadRecord, r.MAC)
		case mac.IsMulticast() || mac.IsZero():
			return record{}, fmt.Errorf("%w: %s is not a unicast MAC", errBadRecord, mac)
		case !r.VTEP.IsValid():
			return record{}, fmt.Errorf("%w: no vtep", errBadRecord)
		case r.VTEP.Is4In6():
			return record{}, fmt.Errorf("%w: IPv4-mapped vtep %s, use %s", errBadRecord, r.VTEP, r.VTEP.Unmap())
		}
		for _, ip := range r.IPs {
			if !ip.Is4() {
				return record{}, fmt.Errorf("%w: ip %s is not IPv4", errBadRecord, ip)
			}
		}
		for _, ip := range r.IPv6 {
			if !ip.Is6() || ip.Is4In6() || ip.Zone() != "" || !(ip.IsGlobalUnicast() || ip.IsLinkLocalUnicast()) {
				return record{}, fmt.Errorf("%w: ipv6 %s is not a unicast IPv6 address", errBadRecord, ip)
			}
		}
		return record{mac: &r, macKey: mac}, nil
	}
	return record{}, fmt.Errorf("%w: unknown kind %q", errBadRecord, kind)
}
