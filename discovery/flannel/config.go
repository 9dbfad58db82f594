package flannel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxland/vxland/internal/etcdwatch"
)

// DefaultPrefix is flannel's default etcd prefix.
const DefaultPrefix = "/coreos.com/network"

// DefaultVNI is the VNI of a vxlan backend whose config names none.
const DefaultVNI = 1

// LinuxPort is the port a vxlan backend uses when its config says 0: the
// Linux kernel's default, which flannel's kernel devices inherit.
const LinuxPort = 8472

// ErrNoConfig is returned while <prefix>/config does not exist yet.
var ErrNoConfig = errors.New("no flannel network config in etcd")

// errBadConfig wraps every reason a network config is refused.
var errBadConfig = errors.New("invalid flannel network config")

// NetworkConfig is the JSON document at <prefix>/config, after defaults
// have been applied as flannel applies them. Only what an IPv4 vxlan node
// needs is kept.
type NetworkConfig struct {
	Network   netip.Prefix
	SubnetLen int
	// SubnetMin and SubnetMax bound the network addresses of the subnets
	// handed out, both included.
	SubnetMin, SubnetMax netip.Addr
	Backend              BackendConfig
}

// BackendConfig is the "Backend" object of the network config.
type BackendConfig struct {
	Type string
	VNI  uint32
	// Port is the UDP port of every VTEP; 0 in the JSON means LinuxPort.
	Port          uint16
	MTU           int // 0: the underlay MTU less the VXLAN overhead
	DirectRouting bool
	GBP           bool
}

// rawConfig mirrors flannel's JSON; unknown fields are ignored, as flannel
// ignores them.
type rawConfig struct {
	EnableIPv4  *bool
	EnableIPv6  bool
	Network     string
	SubnetLen   int
	SubnetMin   string
	SubnetMax   string
	IPv6Network string
	Backend     json.RawMessage
}

type rawBackend struct {
	Type          string
	VNI           *int64
	Port          int64
	MTU           int64
	DirectRouting bool
	GBP           bool
}

// ParseNetworkConfig parses and checks a network config and fills in
// flannel's defaults: SubnetLen 24 (or Network length + 2 on networks
// smaller than a /22), SubnetMin the second subnet, SubnetMax the last
// one, VNI 1, port 8472.
//
// vxland joins IPv4 vxlan networks only: a config without an IPv4 network
// or with another backend type is refused. An IPv6 part (dual stack) is
// accepted and ignored: this node then carries IPv4 only.
func ParseNetworkConfig(b []byte) (*NetworkConfig, error) {
	var r rawConfig
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadConfig, err)
	}
	if r.EnableIPv4 != nil && !*r.EnableIPv4 {
		return nil, fmt.Errorf("%w: EnableIPv4 is false; vxland's flannel mode carries IPv4 only", errBadConfig)
	}
	if r.Network == "" {
		return nil, fmt.Errorf("%w: no Network", errBadConfig)
	}
	network, err := netip.ParsePrefix(r.Network)
	if err != nil || !network.Addr().Is4() {
		return nil, fmt.Errorf("%w: Network %q is not an IPv4 CIDR", errBadConfig, r.Network)
	}
	network = network.Masked()
	c := &NetworkConfig{Network: network, SubnetLen: r.SubnetLen}
	switch {
	case c.SubnetLen < 0:
		return nil, fmt.Errorf("%w: SubnetLen %d", errBadConfig, c.SubnetLen)
	case c.SubnetLen > 0 && c.SubnetLen > 30:
		return nil, fmt.Errorf("%w: SubnetLen %d: must be at most 30", errBadConfig, c.SubnetLen)
	case c.SubnetLen > 0 && c.SubnetLen < network.Bits()+2:
		return nil, fmt.Errorf("%w: SubnetLen %d: the network must hold at least four subnets", errBadConfig, c.SubnetLen)
	case c.SubnetLen == 0 && network.Bits() > 28:
		return nil, fmt.Errorf("%w: Network %s is too small; a /28 is the smallest", errBadConfig, network)
	case c.SubnetLen == 0 && network.Bits() <= 22:
		c.SubnetLen = 24
	case c.SubnetLen == 0:
		c.SubnetLen = network.Bits() + 2
	}
	size := uint32(1) << (32 - c.SubnetLen)
	first := addrToU32(network.Addr())
	last := first + (uint32(1)<<(32-network.Bits()) - 1)
	// The first subnet is skipped by default: its network address is
	// the whole network's.
	min, max := first+size, last-size+1
	for _, b := range []struct {
		name string
		s    string
		dst  *uint32
	}{{"SubnetMin", r.SubnetMin, &min}, {"SubnetMax", r.SubnetMax, &max}} {
		if b.s == "" {
			continue
		}
		a, err := netip.ParseAddr(b.s)
		if err != nil || !a.Is4() || !network.Contains(a) {
			return nil, fmt.Errorf("%w: %s %q is not an address in %s", errBadConfig, b.name, b.s, network)
		}
		if addrToU32(a)%size != 0 {
			return nil, fmt.Errorf("%w: %s %s is not on a /%d boundary", errBadConfig, b.name, a, c.SubnetLen)
		}
		*b.dst = addrToU32(a)
	}
	if min > max {
		return nil, fmt.Errorf("%w: SubnetMin %s is above SubnetMax %s", errBadConfig, u32ToAddr(min), u32ToAddr(max))
	}
	c.SubnetMin, c.SubnetMax = u32ToAddr(min), u32ToAddr(max)

	be := rawBackend{Type: "udp"} // flannel's default when Backend is absent
	if len(r.Backend) > 0 && string(r.Backend) != "null" {
		be.Type = ""
		if err := json.Unmarshal(r.Backend, &be); err != nil {
			return nil, fmt.Errorf("%w: Backend: %v", errBadConfig, err)
		}
	}
	if !strings.EqualFold(be.Type, "vxlan") {
		return nil, fmt.Errorf("%w: Backend.Type is %q; vxland speaks vxlan only", errBadConfig, be.Type)
	}
	c.Backend = BackendConfig{Type: "vxlan", VNI: DefaultVNI, Port: LinuxPort, DirectRouting: be.DirectRouting, GBP: be.GBP}
	if be.VNI != nil {
		if *be.VNI < 0 || *be.VNI > 1<<24-1 {
			return nil, fmt.Errorf("%w: Backend.VNI %d: must be 0 to %d", errBadConfig, *be.VNI, 1<<24-1)
		}
		c.Backend.VNI = uint32(*be.VNI)
	}
	switch {
	case be.Port < 0 || be.Port > 65535:
		return nil, fmt.Errorf("%w: Backend.Port %d: must be 0 to 65535", errBadConfig, be.Port)
	case be.Port > 0:
		c.Backend.Port = uint16(be.Port)
	}
	if be.MTU != 0 && (be.MTU < 68 || be.MTU > 65535) {
		return nil, fmt.Errorf("%w: Backend.MTU %d: must be 68 to 65535", errBadConfig, be.MTU)
	}
	c.Backend.MTU = int(be.MTU)
	return c, nil
}

// Contains reports whether subnet is one this network hands out: inside
// SubnetMin..SubnetMax and of SubnetLen.
func (c *NetworkConfig) Contains(subnet netip.Prefix) bool {
	a := subnet.Addr()
	return subnet.Bits() == c.SubnetLen && subnet.Masked() == subnet && a.Is4() &&
		a.Compare(c.SubnetMin) >= 0 && a.Compare(c.SubnetMax) <= 0
}

func addrToU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u32ToAddr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// FetchNetworkConfig reads and parses <prefix>/config. It returns
// ErrNoConfig while the key does not exist.
func FetchNetworkConfig(ctx context.Context, cli *clientv3.Client, keys Keys) (*NetworkConfig, int64, error) {
	resp, err := cli.Get(ctx, keys.Config())
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", keys.Config(), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("%w: %s is missing", ErrNoConfig, keys.Config())
	}
	kv := resp.Kvs[0]
	c, err := ParseNetworkConfig(kv.Value)
	if err != nil {
		return nil, kv.ModRevision, fmt.Errorf("%s: %w", keys.Config(), err)
	}
	return c, kv.ModRevision, nil
}

// WaitNetworkConfig reads the network config, waiting for it as flannel
// does while it is missing, unreachable or invalid (an operator may be
// about to write it). Each invalid revision is logged once.
func WaitNetworkConfig(ctx context.Context, cli *clientv3.Client, keys Keys, log *slog.Logger) (*NetworkConfig, error) {
	var logged int64 = -1
	for attempt := 0; ; attempt++ {
		opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, rev, err := FetchNetworkConfig(opCtx, cli, keys)
		cancel()
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		switch {
		case errors.Is(err, errBadConfig):
			if rev != logged {
				logged = rev
				log.Error("invalid flannel network config; waiting for a valid one", "key", keys.Config(), "revision", rev, "err", err)
			}
		case attempt == 0 || attempt%20 == 0:
			log.Warn("waiting for the flannel network config", "key", keys.Config(), "err", err)
		}
		if !etcdwatch.Sleep(ctx, min(etcdwatch.Backoff(attempt), time.Second)) {
			return nil, ctx.Err()
		}
	}
}
