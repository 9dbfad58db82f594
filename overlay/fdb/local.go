package fdb

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxland/vxland/overlay/ratelimit"
)

// LocalTable records the MACs of this host's own containers, as seen in the
// source address of frames read from the TAP, and the IPv4 addresses they
// claim in ARP and IPv6 addresses in neighbour discovery. The control
// plane publishes what it holds.
//
// The data path only ever adds and refreshes; it never waits for the
// control plane. A new MAC or address wakes the control plane through a
// one-slot channel, so any number of changes coalesce into one wake-up.
//
// Each MAC it holds becomes a write to the control plane, so that a
// container sending from ever new source MACs would grow the table, and
// etcd, without bound: LocalLimits caps how many it holds and how fast it
// takes new ones.
type LocalTable struct {
	epoch  time.Time
	limits LocalLimits
	newMAC ratelimit.Bucket
	mu     sync.RWMutex
	macs   map[MAC]*localMAC
	notify chan struct{}
}

// LocalLimits bound a LocalTable. The zero value bounds nothing.
type LocalLimits struct {
	// Max is the most MACs the table holds (0: no cap).
	Max int
	// NewMACs limits how fast the table takes MACs it does not hold.
	NewMACs ratelimit.Limit
}

// ObserveResult says what Observe did with a frame's MAC.
type ObserveResult uint8

const (
	// ObserveKept: the MAC is held (new, refreshed, or with a new address).
	ObserveKept ObserveResult = iota
	// ObserveFull: the MAC is new and the table holds LocalLimits.Max.
	ObserveFull
	// ObserveRateLimited: the MAC is new and LocalLimits.NewMACs has no
	// token left.
	ObserveRateLimited
)

type localMAC struct {
	seen atomic.Int64 // nanoseconds since epoch
	ips  []netip.Addr // guarded by LocalTable.mu
}

// LocalMAC is one entry of a LocalTable snapshot.
type LocalMAC struct {
	MAC MAC
	IPs []netip.Addr
	// Idle is how long ago a frame from MAC was last seen.
	Idle time.Duration
}

// NewLocalTable returns an empty table bounded by limits.
func NewLocalTable(limits LocalLimits) *LocalTable {
	return &LocalTable{epoch: time.Now(), limits: limits,
		macs: make(map[MAC]*localMAC), notify: make(chan struct{}, 1)}
}

// Changed is signalled after the table gained a MAC or an address.
func (t *LocalTable) Changed() <-chan struct{} { return t.notify }

func (t *LocalTable) now() int64 { return int64(time.Since(t.epoch)) }

func (t *LocalTable) wake() {
	select {
	case t.notify <- struct{}{}:
	default:
	}
}

// Observe records a frame from mac, claiming ip when ip is valid, unless
// the MAC is new and the limits refuse it; it says which. It allocates
// only when the MAC or the address is new, and refuses without taking the
// write lock.
func (t *LocalTable) Observe(mac MAC, ip netip.Addr) ObserveResult {
	now := t.now()
	t.mu.RLock()
	e, ok := t.macs[mac]
	known := ok && (!ip.IsValid() || slices.Contains(e.ips, ip))
	full := !ok && t.limits.Max > 0 && len(t.macs) >= t.limits.Max
	t.mu.RUnlock()
	switch {
	case known:
		if now-e.seen.Load() > int64(time.Second) {
			e.seen.Store(now)
		}
		return ObserveKept
	case full:
		return ObserveFull
	case !ok && !t.newMAC.Allow(t.limits.NewMACs, now):
		return ObserveRateLimited
	}
	t.mu.Lock()
	e, ok = t.macs[mac]
	if !ok {
		if t.limits.Max > 0 && len(t.macs) >= t.limits.Max {
			t.mu.Unlock()
			return ObserveFull // lost a race with another new MAC
		}
		e = &localMAC{}
		t.macs[mac] = e
	}
	e.seen.Store(now)
	if ip.IsValid() && !slices.Contains(e.ips, ip) {
		e.ips = append(slices.Clip(e.ips), ip)
	}
	t.mu.Unlock()
	t.wake()
	return ObserveKept
}

// Forget removes mac, e.g. when it has moved to another host.
func (t *LocalTable) Forget(mac MAC) {
	t.mu.Lock()
	delete(t.macs, mac)
	t.mu.Unlock()
}

// Expire removes MACs not seen for longer than idle and returns them.
func (t *LocalTable) Expire(idle time.Duration) []MAC {
	now := t.now()
	var gone []MAC
	t.mu.Lock()
	for m, e := range t.macs {
		if now-e.seen.Load() > int64(idle) {
			delete(t.macs, m)
			gone = append(gone, m)
		}
	}
	t.mu.Unlock()
	return gone
}

// Snapshot returns the table's entries.
func (t *LocalTable) Snapshot() []LocalMAC {
	now := t.now()
	t.mu.RLock()
	out := make([]LocalMAC, 0, len(t.macs))
	for m, e := range t.macs {
		out = append(out, LocalMAC{MAC: m, IPs: slices.Clone(e.ips), Idle: time.Duration(now - e.seen.Load())})
	}
	t.mu.RUnlock()
	return out
}

// Neighbors maps the IPv4 and IPv6 addresses of remote containers to
// their MACs, so that ARP requests and IPv6 neighbour solicitations for
// them are answered on this host instead of being flooded to every VTEP
// (ARP and neighbour discovery suppression, as the kernel's vxlan
// "proxy").
type Neighbors struct {
	mu sync.RWMutex
	m  map[netip.Addr]MAC
}

// NewNeighbors returns an empty table.
func NewNeighbors() *Neighbors { return &Neighbors{m: make(map[netip.Addr]MAC)} }

// Set binds ip to mac.
func (n *Neighbors) Set(ip netip.Addr, mac MAC) {
	n.mu.Lock()
	n.m[ip.Unmap()] = mac
	n.mu.Unlock()
}

// Delete removes ip's binding if it is to mac.
func (n *Neighbors) Delete(ip netip.Addr, mac MAC) {
	n.mu.Lock()
	if n.m[ip.Unmap()] == mac {
		delete(n.m, ip.Unmap())
	}
	n.mu.Unlock()
}

// Lookup returns the MAC bound to ip.
func (n *Neighbors) Lookup(ip netip.Addr) (MAC, bool) {
	n.mu.RLock()
	mac, ok := n.m[ip]
	n.mu.RUnlock()
	return mac, ok
}

// Len returns the number of bindings.
func (n *Neighbors) Len() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.m)
}
