package flannel

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vxland/vxland/overlay/fdb"
)

// The key layout, shared with flannel's etcd subnet manager (documented
// for operators in docs/flannel.md):
//
//	<prefix>/config                   -> network config (NetworkConfig)
//	<prefix>/subnets/10.244.1.0-24     -> lease of one node (Lease)
//	<prefix>/subnets/10.244.1.0-24&fd00:10:244:1::-64   (dual stack)
//
// A lease key hangs on an etcd lease of 24 h that its node renews; a key
// without an etcd lease is a reservation made by an operator.

// Keys builds and parses the keys of one flannel network.
type Keys struct {
	prefix string
}

// NewKeys returns the key space under prefix ("/coreos.com/network").
func NewKeys(prefix string) Keys { return Keys{prefix: strings.TrimRight(prefix, "/")} }

// Config is the key of the network config.
func (k Keys) Config() string { return k.prefix + "/config" }

// Subnets is the prefix of every lease key.
func (k Keys) Subnets() string { return k.prefix + "/subnets/" }

// Subnet is the key of the lease of subnet.
func (k Keys) Subnet(subnet netip.Prefix) string {
	return k.Subnets() + subnet.Addr().String() + "-" + strconv.Itoa(subnet.Bits())
}

// ErrMalformed wraps every reason a lease key or value is refused.
var ErrMalformed = errors.New("malformed flannel lease")

// ParseSubnet returns the IPv4 subnet a lease key names. The IPv6 part of
// a dual-stack key is checked and dropped: this node carries IPv4 only.
func (k Keys) ParseSubnet(key string) (netip.Prefix, error) {
	name, ok := strings.CutPrefix(key, k.Subnets())
	if !ok || name == "" || strings.Contains(name, "/") {
		return netip.Prefix{}, fmt.Errorf("%w: key %q is not under %s", ErrMalformed, key, k.Subnets())
	}
	v4, v6, dual := strings.Cut(name, "&")
	p, err := parseKeyPrefix(v4)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%w: key %q names no IPv4 subnet", ErrMalformed, key)
	}
	if dual {
		if p6, err := parseKeyPrefix(v6); err != nil || !p6.Addr().Is6() || p6.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%w: key %q names no IPv6 subnet after '&'", ErrMalformed, key)
		}
	}
	return p, nil
}

// parseKeyPrefix parses "10.244.1.0-24", which must be a network address.
func parseKeyPrefix(s string) (netip.Prefix, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return netip.Prefix{}, errors.New("no '-'")
	}
	a, err := netip.ParseAddr(s[:i])
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errors.New("bad address")
	}
	bits, err := strconv.Atoi(s[i+1:])
	if err != nil || s[i+1:] != strconv.Itoa(bits) {
		return netip.Prefix{}, errors.New("bad length")
	}
	p, err := a.Prefix(bits)
	if err != nil || p.Addr() != a {
		return netip.Prefix{}, errors.New("not a network address")
	}
	return p, nil
}

// Lease is one node's subnet lease: what a node needs to reach the
// subnet's pods through the VXLAN tunnel.
type Lease struct {
	Subnet   netip.Prefix
	PublicIP netip.Addr // the node's VTEP address
	// BackendType is "vxlan" for every lease this node can reach; leases
	// of other backends are parsed so that they can be reported.
	BackendType string
	VNI         uint32
	VtepMAC     fdb.MAC
}

// leaseJSON is the value of a lease key, field for field as flannel writes
// it: {"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan",
// "BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}.
type leaseJSON struct {
	PublicIP    string
	PublicIPv6  *string
	BackendType string          `json:",omitempty"`
	BackendData json.RawMessage `json:",omitempty"`
	// BackendV6Data is written by dual-stack nodes; this node ignores it.
	BackendV6Data json.RawMessage `json:",omitempty"`
}

type vxlanData struct {
	VNI     uint32
	VtepMAC string
}

// Value returns the lease's etcd value in flannel's format.
func (l Lease) Value() []byte {
	data, _ := json.Marshal(vxlanData{VNI: l.VNI, VtepMAC: l.VtepMAC.String()})
	b, _ := json.Marshal(leaseJSON{PublicIP: l.PublicIP.String(), BackendType: l.BackendType, BackendData: data})
	return b
}

// ParseLease validates a lease key and value. A lease of another backend
// type parses, with only Subnet, PublicIP and BackendType set; a vxlan
// lease must carry a unicast VtepMAC and a 24-bit VNI.
func (k Keys) ParseLease(key string, value []byte) (Lease, error) {
	subnet, err := k.ParseSubnet(key)
	if err != nil {
		return Lease{}, err
	}
	var raw leaseJSON
	dec := json.NewDecoder(bytes.NewReader(value))
	if err := dec.Decode(&raw); err != nil {
		return Lease{}, fmt.Errorf("%w: %s: %v", ErrMalformed, key, err)
	}
	l := Lease{Subnet: subnet, BackendType: raw.BackendType}
	ip, err := netip.ParseAddr(raw.PublicIP)
	if err != nil || !ip.Is4() {
		return Lease{}, fmt.Errorf("%w: %s: PublicIP %q is not an IPv4 address", ErrMalformed, key, raw.PublicIP)
	}
	if !ip.IsGlobalUnicast() {
		return Lease{}, fmt.Errorf("%w: %s: PublicIP %s is not a unicast address", ErrMalformed, key, ip)
	}
	l.PublicIP = ip
	if l.BackendType != "vxlan" {
		return l, nil
	}
	var d struct {
		VNI     *int64
		VtepMAC string
	}
	if len(raw.BackendData) == 0 {
		return Lease{}, fmt.Errorf("%w: %s: vxlan lease without BackendData", ErrMalformed, key)
	}
	if err := json.Unmarshal(raw.BackendData, &d); err != nil {
		return Lease{}, fmt.Errorf("%w: %s: BackendData: %v", ErrMalformed, key, err)
	}
	switch {
	case d.VNI == nil:
		l.VNI = DefaultVNI
	case *d.VNI < 0 || *d.VNI > 1<<24-1:
		return Lease{}, fmt.Errorf("%w: %s: VNI %d does not fit in 24 bits", ErrMalformed, key, *d.VNI)
	default:
		l.VNI = uint32(*d.VNI)
	}
	if l.VtepMAC, err = fdb.ParseMAC(d.VtepMAC); err != nil {
		return Lease{}, fmt.Errorf("%w: %s: VtepMAC %q is not an Ethernet address", ErrMalformed, key, d.VtepMAC)
	}
	if l.VtepMAC.IsMulticast() || l.VtepMAC.IsZero() {
		return Lease{}, fmt.Errorf("%w: %s: VtepMAC %s is not unicast", ErrMalformed, key, l.VtepMAC)
	}
	return l, nil
}

// VtepMAC returns the VTEP MAC of the node with publicIP in vni: derived
// from both, so that it stays the same across restarts and reboots
// without any state on disk (flannel's kernel devices got a random MAC at
// each boot, and every other node had to learn the new one). It is a
// locally administered unicast address.
func VtepMAC(publicIP netip.Addr, vni uint32) fdb.MAC {
	h := sha256.Sum256(fmt.Appendf(nil, "vxland flannel vtep %s %d", publicIP.Unmap(), vni))
	var m fdb.MAC
	copy(m[:], h[:6])
	m[0] = m[0]&^0x01 | 0x02
	return m
}
