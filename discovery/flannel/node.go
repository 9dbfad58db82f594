// Package flannel makes vxland a node of a flannel network: it reads the
// network config that flannel keeps in etcd, leases a subnet for this node
// the way flannel's etcd subnet manager does, writes subnet.env for
// flannel's CNI plugin, and installs, for every other node's lease, what
// the kernel and the data plane need to reach that node's subnet.
//
// Design notes:
//   - The wire and etcd formats are flannel's own, so that vxland nodes and
//     flannel's kernel VXLAN nodes share one network: leases are created in
//     a transaction that requires the key not to exist, on an etcd lease of
//     24 h renewed an hour before it ends, and a node that restarts finds
//     its lease by its PublicIP. Unlike flannel, renewal keeps the same etcd
//     lease (KeepAliveOnce) instead of writing the key again, so that other
//     nodes see no event for it.
//   - A lost lease (key deleted, taken, or expired) is acquired again, the
//     same subnet first. flannel exits instead; a daemon that keeps its
//     pods' subnet when it can is kinder to them.
//   - Three goroutines share the state under one mutex: the lease loop
//     (acquire, configure the local side, renew), the watcher (the view of
//     every lease, resumed from its revision, re-listed after compaction)
//     and the reconciler, which makes the installed peers equal the view and
//     retries what failed. Each is idempotent, so a wake-up too many costs
//     nothing.
//   - Readiness is honest: ready means subnet.env is written for the lease
//     this node holds now, and every other lease in the view is installed.
package flannel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/internal/etcdwatch"
	"github.com/vxland/vxland/overlay/fdb"
)

// Defaults of flannel's etcd subnet manager.
const (
	DefaultLeaseTTL    = 24 * time.Hour
	DefaultRenewMargin = time.Hour
)

// raceRetries bounds how often acquisition starts over after another node
// took the subnet it was about to create.
const raceRetries = 10

// Dataplane is where a node installs what reaching other nodes needs.
// Every method is idempotent.
type Dataplane interface {
	// SetLocal gives the VXLAN device the network address of this node's
	// subnet as a /32, and removes any other IPv4 address.
	SetLocal(subnet netip.Prefix) error
	// AddPeer installs, in this order, the neighbour entry (subnet address
	// -> VtepMAC), the FDB entry (VtepMAC -> PublicIP, which also makes
	// PublicIP an accepted VTEP) and the route to the subnet.
	AddPeer(l Lease) error
	// RemovePeer removes what AddPeer installed, route first.
	RemovePeer(l Lease) error
	// Prune removes the routes and neighbours through the device that are
	// not those of keep: what an earlier run installed for nodes that
	// went while it was not running (the device, and what goes through
	// it, outlives a restart).
	Prune(keep map[netip.Prefix]Lease) error
}

// NodeConfig configures a Node.
type NodeConfig struct {
	Client   *clientv3.Client
	Prefix   string // default DefaultPrefix
	Network  *NetworkConfig
	PublicIP netip.Addr
	VtepMAC  fdb.MAC
	// MTU is written to subnet.env: the MTU of the VXLAN device.
	MTU int
	// SubnetFile is where subnet.env goes; its previous content names the
	// subnet to ask for first when etcd holds no lease for PublicIP.
	SubnetFile string
	Dataplane  Dataplane
	// Underlay, when not empty, is where every node's PublicIP must be:
	// a lease whose PublicIP lies outside it is ignored (logged once), so
	// it gets no route, neighbour or FDB entry and its packets stay
	// unaccepted.
	Underlay discovery.Underlay

	LeaseTTL    time.Duration // default DefaultLeaseTTL
	RenewMargin time.Duration // default DefaultRenewMargin
	// Resync re-applies every installed peer this often, repairing routes
	// or neighbours someone removed; default 30 s.
	Resync time.Duration
	Logger *slog.Logger
}

// ownLease is the lease this node holds.
type ownLease struct {
	lease Lease
	key   string
	id    clientv3.LeaseID // 0: a reservation without an etcd lease
	rev   int64            // revision of the write that made it ours
	ttl   time.Duration
}

// Node is one member of a flannel network.
type Node struct {
	cfg  NodeConfig
	keys Keys
	log  *slog.Logger

	// wake tells the reconciler that the view or the own lease changed;
	// lost tells the lease loop that the own lease is gone.
	wake, lost chan struct{}

	mu sync.Mutex
	// view is every usable lease in etcd, by key.
	view map[string]Lease
	// badLogged remembers the keys whose value was logged as unusable, by
	// revision, so that each is logged once.
	badLogged map[string]int64
	rev       int64 // the revision the view reflects
	synced    bool  // the view was listed at least once
	own       *ownLease
	// localReady: the device address and subnet.env match own.
	localReady bool
	// reinstall asks the reconciler to install every peer again, after
	// the device's address changed.
	reinstall bool
	// gen counts changes of what should be installed; applied is the gen
	// the reconciler last installed in full.
	gen, applied uint64

	// leaseHeld and routes mirror own != nil and the number of other
	// nodes installed, for readers that must not wait for mu.
	leaseHeld atomic.Bool
	routes    atomic.Int64
}

// NewNode returns a node; Run starts it.
func NewNode(cfg NodeConfig) *Node {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.RenewMargin <= 0 || cfg.RenewMargin >= cfg.LeaseTTL {
		cfg.RenewMargin = min(DefaultRenewMargin, cfg.LeaseTTL/2)
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Node{
		cfg:       cfg,
		keys:      NewKeys(cfg.Prefix),
		log:       cfg.Logger.With("component", "flannel"),
		wake:      make(chan struct{}, 1),
		lost:      make(chan struct{}, 1),
		view:      make(map[string]Lease),
		badLogged: make(map[string]int64),
	}
}

// subnet returns the subnet this node holds, if any.
func (n *Node) subnet() (netip.Prefix, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.own == nil {
		return netip.Prefix{}, false
	}
	return n.own.lease.Subnet, true
}

// Ready reports whether the node holds a lease, has written subnet.env
// for it and installed every other lease; when not, it says what is
// missing.
func (n *Node) Ready() (bool, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.own == nil:
		return false, "no subnet lease"
	case !n.localReady:
		return false, "subnet.env or the device address not written for " + n.own.lease.Subnet.String()
	case !n.synced:
		return false, "leases not listed from etcd yet"
	case n.applied != n.gen:
		return false, "routes to other subnets not all installed"
	}
	return true, "ok"
}

// LeaseHeld reports whether the node holds a subnet lease.
func (n *Node) LeaseHeld() bool { return n.leaseHeld.Load() }

// Routes returns how many other nodes are installed: a route, a
// neighbour and an FDB entry each.
func (n *Node) Routes() int { return int(n.routes.Load()) }

// Run takes part in the network until ctx is done. It does not give up
// its lease on return: a node that comes back keeps its subnet, as with
// flannel.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { n.watchLoop(ctx) })
	wg.Go(func() { n.leaseLoop(ctx) })
	wg.Go(func() { n.reconcileLoop(ctx) })
	wg.Wait()
	return nil
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// ---- the own lease ----

func (n *Node) leaseLoop(ctx context.Context) {
	prev, err := ReadPreviousSubnet(n.cfg.SubnetFile)
	if err != nil {
		n.log.Warn("ignoring the previous subnet", "err", err)
	}
	for attempt := 0; ctx.Err() == nil; {
		own, err := n.acquire(ctx, prev)
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("acquiring a subnet lease failed; retrying", "err", err, "attempt", attempt+1)
			}
			if !etcdwatch.Sleep(ctx, etcdwatch.Backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		prev = own.lease.Subnet
		// A loss signalled for an earlier lease is stale now.
		select {
		case <-n.lost:
		default:
		}
		n.mu.Lock()
		n.own, n.localReady = own, false
		n.leaseHeld.Store(true)
		n.gen++
		// The watcher may have seen the key go before it knew it was ours.
		if v, ok := n.view[own.key]; n.rev >= own.rev && (!ok || v != own.lease) {
			signal(n.lost)
		}
		n.mu.Unlock()
		signal(n.wake)
		n.log.Info("holding subnet lease", "subnet", own.lease.Subnet, "key", own.key, "public_ip", own.lease.PublicIP,
			"vtep_mac", own.lease.VtepMAC, "etcd_lease", fmt.Sprintf("%x", int64(own.id)), "ttl", own.ttl)
		if !n.configureLocal(ctx, own) {
			return
		}
		n.keep(ctx, own)
		if ctx.Err() != nil {
			return
		}
		n.mu.Lock()
		n.own, n.localReady = nil, false
		n.leaseHeld.Store(false)
		n.gen++
		n.mu.Unlock()
		signal(n.wake)
		n.log.Warn("subnet lease lost; acquiring one again", "subnet", own.lease.Subnet)
	}
}

// Reconfigure gives the device its address again and installs every peer
// again: the device was recreated or repaired (a deleted TAP that vxland
// put back has lost its address, routes and neighbours).
func (n *Node) Reconfigure() {
	n.mu.Lock()
	own := n.own
	n.gen++
	n.reinstall = true
	n.mu.Unlock()
	if own != nil {
		if err := n.cfg.Dataplane.SetLocal(own.lease.Subnet); err != nil {
			n.log.Warn("giving the repaired device its address failed; the next resync retries", "err", err)
		}
	}
	signal(n.wake)
}

// configureLocal gives the device its address and writes subnet.env,
// retrying until both succeed or ctx is done.
func (n *Node) configureLocal(ctx context.Context, own *ownLease) bool {
	env := SubnetEnv{Network: n.cfg.Network.Network, Subnet: own.lease.Subnet, MTU: n.cfg.MTU}
	for attempt := 0; ; attempt++ {
		err := n.cfg.Dataplane.SetLocal(own.lease.Subnet)
		if err == nil {
			err = WriteSubnetEnv(n.cfg.SubnetFile, env)
		}
		if err == nil {
			break
		}
		n.log.Warn("configuring the local subnet failed; retrying", "subnet", own.lease.Subnet, "err", err)
		if !etcdwatch.Sleep(ctx, etcdwatch.Backoff(attempt)) {
			return false
		}
	}
	n.mu.Lock()
	if n.own == own {
		n.localReady = true
	}
	// Changing the device's address can flush its routes (Linux drops a
	// device's routes with its last IPv4 address), and a route added
	// before the address can be refused: install every peer again, and
	// be ready only once that is done.
	n.gen++
	n.reinstall = true
	n.mu.Unlock()
	signal(n.wake)
	n.log.Info("subnet configured", "subnet", own.lease.Subnet, "subnet_file", n.cfg.SubnetFile, "mtu", n.cfg.MTU)
	return true
}

// keep renews own a margin before it expires, until it is lost or ctx is
// done.
func (n *Node) keep(ctx context.Context, own *ownLease) {
	next := own.ttl - n.cfg.RenewMargin
	// A reservation (no etcd lease) is never renewed.
	renew := time.NewTimer(next)
	defer renew.Stop()
	if own.id == 0 {
		renew.Stop()
	}
	for attempt := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-n.lost:
			return
		case <-renew.C:
		}
		opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := n.cfg.Client.KeepAliveOnce(opCtx, own.id)
		cancel()
		switch {
		case err == nil:
			attempt = 0
			next = time.Duration(resp.TTL)*time.Second - n.cfg.RenewMargin
			n.log.Debug("subnet lease renewed", "subnet", own.lease.Subnet, "ttl", time.Duration(resp.TTL)*time.Second)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return
		case ctx.Err() != nil:
			return
		default:
			// Retry well within the margin that is left.
			next = min(etcdwatch.Backoff(attempt)*10, n.cfg.RenewMargin/4)
			attempt++
			n.log.Warn("renewing the subnet lease failed; retrying", "subnet", own.lease.Subnet, "err", err, "retry_in", next)
		}
		renew.Reset(next)
	}
}

// listed is one lease key as acquisition sees it.
type listed struct {
	subnet netip.Prefix
	lease  Lease
	valid  bool
	kv     *mvccpb.KeyValue
}

var errRace = errors.New("another node changed the subnet first")

// acquire finds or creates this node's lease, as flannel does: the lease
// whose PublicIP is ours, else prev if it is free, else a random free
// subnet.
func (n *Node) acquire(ctx context.Context, prev netip.Prefix) (*ownLease, error) {
	for range raceRetries {
		own, err := n.tryAcquire(ctx, prev)
		if errors.Is(err, errRace) {
			n.log.Debug("lost a race for a subnet; starting over", "err", err)
			continue
		}
		return own, err
	}
	return nil, fmt.Errorf("%d races for a subnet lost in a row", raceRetries)
}

func (n *Node) want(subnet netip.Prefix) Lease {
	return Lease{Subnet: subnet, PublicIP: n.cfg.PublicIP, BackendType: "vxlan",
		VNI: n.cfg.Network.Backend.VNI, VtepMAC: n.cfg.VtepMAC}
}

func (n *Node) tryAcquire(ctx context.Context, prev netip.Prefix) (*ownLease, error) {
	opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := n.cfg.Client.Get(opCtx, n.keys.Subnets(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", n.keys.Subnets(), err)
	}
	var all []listed
	for _, kv := range resp.Kvs {
		s, err := n.keys.ParseSubnet(string(kv.Key))
		if err != nil {
			continue
		}
		l, err := n.keys.ParseLease(string(kv.Key), kv.Value)
		all = append(all, listed{subnet: s, lease: l, valid: err == nil, kv: kv})
	}
	for _, e := range all {
		if !e.valid || e.lease.PublicIP != n.cfg.PublicIP {
			continue
		}
		if n.cfg.Network.Contains(e.subnet) {
			n.log.Info("found the lease of this node's PublicIP; reusing it", "subnet", e.subnet)
			return n.adopt(opCtx, e)
		}
		n.log.Warn("deleting this node's lease: its subnet does not fit the network config", "subnet", e.subnet, "network", n.cfg.Network.Network)
		key := string(e.kv.Key)
		if _, err := n.cfg.Client.Txn(opCtx).If(clientv3.Compare(clientv3.ModRevision(key), "=", e.kv.ModRevision)).
			Then(clientv3.OpDelete(key)).Commit(); err != nil {
			return nil, fmt.Errorf("deleting %s: %w", key, err)
		}
	}
	taken := func(s netip.Prefix) bool {
		for _, e := range all {
			if e.subnet.Overlaps(s) {
				return true
			}
		}
		return false
	}
	subnet := prev
	if !subnet.IsValid() || !n.cfg.Network.Contains(subnet) || taken(subnet) {
		if subnet.IsValid() {
			n.log.Info("previous subnet not available; picking another", "subnet", subnet)
		}
		if subnet, err = n.pickFree(taken); err != nil {
			return nil, err
		}
	}
	return n.create(opCtx, subnet)
}

// pickFree picks one of the first 100 free subnets at random, as flannel
// does, so that nodes starting together rarely race for the same one.
func (n *Node) pickFree(taken func(netip.Prefix) bool) (netip.Prefix, error) {
	c := n.cfg.Network
	size := uint32(1) << (32 - c.SubnetLen)
	var free []netip.Prefix
	for a := addrToU32(c.SubnetMin); a <= addrToU32(c.SubnetMax) && len(free) < 100; a += size {
		s := netip.PrefixFrom(u32ToAddr(a), c.SubnetLen)
		if !taken(s) {
			free = append(free, s)
		}
		if a+size < a {
			break // wrapped at 255.255.255.255
		}
	}
	if len(free) == 0 {
		return netip.Prefix{}, fmt.Errorf("no free subnet left in %s..%s", c.SubnetMin, c.SubnetMax)
	}
	return free[rand.IntN(len(free))], nil
}

// create writes a new lease for subnet on a new etcd lease, only if
// nobody holds the key.
func (n *Node) create(ctx context.Context, subnet netip.Prefix) (*ownLease, error) {
	key := n.keys.Subnet(subnet)
	l := n.want(subnet)
	g, err := n.cfg.Client.Grant(ctx, int64(n.cfg.LeaseTTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("granting an etcd lease: %w", err)
	}
	resp, err := n.cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(l.Value()), clientv3.WithLease(g.ID))).Commit()
	if err != nil || !resp.Succeeded {
		_, _ = n.cfg.Client.Revoke(context.WithoutCancel(ctx), g.ID)
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", key, err)
		}
		return nil, fmt.Errorf("%w: %s exists", errRace, key)
	}
	return &ownLease{lease: l, key: key, id: g.ID, rev: resp.Header.Revision, ttl: time.Duration(g.TTL) * time.Second}, nil
}

// adopt makes an existing lease of this node's PublicIP ours again: its
// etcd lease is kept alive if it still is, and its value rewritten only
// if it differs.
func (n *Node) adopt(ctx context.Context, e listed) (*ownLease, error) {
	key := string(e.kv.Key)
	l := n.want(e.subnet)
	own := &ownLease{lease: l, key: key, id: clientv3.LeaseID(e.kv.Lease), rev: e.kv.ModRevision}
	if own.id != 0 {
		ka, err := n.cfg.Client.KeepAliveOnce(ctx, own.id)
		switch {
		case err == nil:
			own.ttl = time.Duration(ka.TTL) * time.Second
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			// Expired between the list and now: the key is gone with it.
			return nil, fmt.Errorf("%w: the etcd lease of %s expired", errRace, key)
		default:
			return nil, fmt.Errorf("renewing the etcd lease of %s: %w", key, err)
		}
	}
	if string(e.kv.Value) == string(l.Value()) {
		return own, nil
	}
	opts := []clientv3.OpOption{clientv3.WithIgnoreLease()}
	if own.id == 0 {
		opts = nil // a reservation stays without a lease
	}
	resp, err := n.cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", e.kv.ModRevision)).
		Then(clientv3.OpPut(key, string(l.Value()), opts...)).Commit()
	if err != nil {
		return nil, fmt.Errorf("updating %s: %w", key, err)
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("%w: %s changed", errRace, key)
	}
	own.rev = resp.Header.Revision
	return own, nil
}

// ---- the view of every lease ----

func (n *Node) watchLoop(ctx context.Context) {
	f := &etcdwatch.Follower{Client: n.cfg.Client, Prefix: n.keys.Subnets(), Store: (*nodeStore)(n), Logger: n.log}
	f.Run(ctx)
}

func (n *Node) revision() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rev
}

// nodeStore is the Node as the etcdwatch.Store of the subnet leases.
type nodeStore Node

// Replace reconciles the view with a full list of the leases; a lease of
// ours that is gone is lost.
func (s *nodeStore) Replace(kvs []*mvccpb.KeyValue, rev int64) {
	n := (*Node)(s)
	n.mu.Lock()
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		seen[string(kv.Key)] = true
		n.putLocked(string(kv.Key), kv.Value, kv.ModRevision)
	}
	for key := range n.view {
		if !seen[key] {
			n.deleteLocked(key, rev)
		}
	}
	if n.own != nil && !seen[n.own.key] && rev > n.own.rev {
		signal(n.lost)
	}
	n.rev = rev
	n.synced = true
	n.gen++
	n.mu.Unlock()
	signal(n.wake)
}

// Apply applies the changes of one watch response.
func (s *nodeStore) Apply(events []*clientv3.Event, rev int64) {
	n := (*Node)(s)
	n.mu.Lock()
	for _, ev := range events {
		switch ev.Type {
		case mvccpb.PUT:
			n.putLocked(string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision)
		case mvccpb.DELETE:
			n.deleteLocked(string(ev.Kv.Key), ev.Kv.ModRevision)
		}
	}
	if rev > n.rev {
		n.rev = rev
	}
	n.gen++
	n.mu.Unlock()
	signal(n.wake)
}

// Revision returns the revision the view reflects.
func (s *nodeStore) Revision() int64 { return (*Node)(s).revision() }

// usable parses a lease and checks that this node can reach it.
func (n *Node) usable(key string, value []byte) (Lease, error) {
	l, err := n.keys.ParseLease(key, value)
	if err == nil {
		err = n.cfg.Underlay.Check(l.PublicIP)
	}
	switch {
	case err != nil:
		return Lease{}, err
	case l.BackendType != "vxlan":
		return Lease{}, fmt.Errorf("backend type %q, not vxlan", l.BackendType)
	case l.VNI != n.cfg.Network.Backend.VNI:
		return Lease{}, fmt.Errorf("VNI %d, the network's is %d", l.VNI, n.cfg.Network.Backend.VNI)
	case !n.cfg.Network.Network.Contains(l.Subnet.Addr()) || l.Subnet.Bits() < n.cfg.Network.Network.Bits():
		return Lease{}, fmt.Errorf("subnet %s is outside the network %s", l.Subnet, n.cfg.Network.Network)
	}
	return l, nil
}

// putLocked applies one key's value. An unusable value is logged once
// (per revision) and treated as absent.
func (n *Node) putLocked(key string, value []byte, modRev int64) {
	if n.own != nil && key == n.own.key && modRev > n.own.rev {
		if l, err := n.keys.ParseLease(key, value); err != nil || l != n.own.lease {
			n.log.Warn("this node's lease key was overwritten", "key", key, "value", string(value))
			signal(n.lost)
		}
	}
	l, err := n.usable(key, value)
	if err != nil {
		if n.badLogged[key] != modRev {
			n.badLogged[key] = modRev
			n.log.Warn("skipping unusable subnet lease", "key", key, "revision", modRev, "err", err)
		}
		delete(n.view, key)
		return
	}
	delete(n.badLogged, key)
	n.view[key] = l
}

func (n *Node) deleteLocked(key string, rev int64) {
	delete(n.view, key)
	delete(n.badLogged, key)
	if n.own != nil && key == n.own.key && rev > n.own.rev {
		n.log.Warn("this node's lease key was deleted", "key", key)
		signal(n.lost)
	}
}

// ---- installing the other nodes ----

// desired returns the leases that should be installed: every usable one
// but this node's, by subnet.
func (n *Node) desired() (uint64, map[netip.Prefix]Lease) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[netip.Prefix]Lease, len(n.view))
	for _, l := range n.view {
		if l.PublicIP == n.cfg.PublicIP || (n.own != nil && l.Subnet.Overlaps(n.own.lease.Subnet)) {
			continue
		}
		out[l.Subnet] = l
	}
	return n.gen, out
}

func (n *Node) reconcileLoop(ctx context.Context) {
	installed := make(map[netip.Prefix]Lease)
	pruned := false
	resync := time.NewTicker(n.cfg.Resync)
	defer resync.Stop()
	var retry <-chan time.Time
	attempt := 0
	for {
		full := false
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		case <-retry:
		case <-resync.C:
			full = true
		}
		n.mu.Lock()
		if n.reinstall {
			full, n.reinstall = true, false
		}
		synced := n.synced
		n.mu.Unlock()
		gen, want := n.desired()
		failed := 0
		for s, l := range installed {
			if w, ok := want[s]; ok && w == l {
				continue
			}
			if err := n.cfg.Dataplane.RemovePeer(l); err != nil {
				n.log.Warn("removing a node failed; will retry", "subnet", s, "public_ip", l.PublicIP, "err", err)
				failed++
				continue
			}
			delete(installed, s)
			n.log.Info("node removed", "subnet", s, "public_ip", l.PublicIP, "vtep_mac", l.VtepMAC)
		}
		for s, l := range want {
			cur, ok := installed[s]
			if ok && cur != l {
				continue // its removal failed above
			}
			if ok && !full {
				continue
			}
			if err := n.cfg.Dataplane.AddPeer(l); err != nil {
				n.log.Warn("installing a node failed; will retry", "subnet", s, "public_ip", l.PublicIP, "err", err)
				failed++
				continue
			}
			if !ok {
				n.log.Info("node installed", "subnet", s, "public_ip", l.PublicIP, "vtep_mac", l.VtepMAC)
			}
			installed[s] = l
		}
		n.routes.Store(int64(len(installed)))
		// Once the view is listed and installed, what else goes through the
		// device is left from before a restart.
		if synced && !pruned && failed == 0 {
			if err := n.cfg.Dataplane.Prune(want); err != nil {
				n.log.Warn("removing routes left from an earlier run failed; will retry", "err", err)
				failed++
			} else {
				pruned = true
			}
		}
		retry = nil
		if failed > 0 {
			retry = time.After(etcdwatch.Backoff(attempt))
			attempt++
			continue
		}
		attempt = 0
		n.mu.Lock()
		n.applied = gen
		n.mu.Unlock()
	}
}
