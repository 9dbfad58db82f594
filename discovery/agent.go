// Package discovery is vxland's control plane: hosts find each other and
// learn where every MAC lives through etcd.
//
// Each host registers itself as a member of its VNI and publishes the MACs
// of its own containers (with the IPv4 addresses they claim in ARP), all on
// one etcd lease that it keeps alive. A host that dies stops renewing its
// lease, etcd deletes its keys, and the others forget it by themselves.
// Each host watches the VNI's keys and applies them to its data plane: FDB
// entries, the flood list, the receive allowlist and the ARP neighbour
// table.
//
// Design notes:
//   - The data plane never waits for etcd. Local MACs are collected by the
//     data path in an fdb.LocalTable, which wakes the publisher through
//     a one-slot channel; the publisher writes whatever changed since its
//     last successful write, so bursts coalesce and the work is bounded by
//     the number of MACs, not packets. While etcd is away the publisher
//     keeps trying and forwarding goes on with what the FDB holds.
//   - When the lease is lost (expired, etcd restarted or unreachable too
//     long) a new lease is granted and everything this host owns is
//     re-published in one transaction.
//   - The watch resumes from the revision it has seen; when etcd has
//     compacted that revision, the watcher re-lists and reconciles, so no
//     change is ever skipped silently. Applying a record twice changes
//     nothing.
//   - A MAC has one owner: its key names the MAC, the value the VTEP. A
//     container that moves is claimed by its new host with a plain put;
//     the old host sees the change, forgets the MAC, and deletes a key
//     only if it still holds the value it wrote itself.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxland/vxland/internal/etcdwatch"
	"github.com/vxland/vxland/overlay/fdb"
)

// Config configures an Agent.
type Config struct {
	// Client talks to etcd. When it is nil, Run first makes one with
	// Connect, trying again with capped backoff until Connect succeeds,
	// and closes it on return: an etcd client that logs in with a user
	// name cannot be made while etcd is down, and forwarding must not
	// wait for etcd.
	Client   *clientv3.Client
	Connect  func(context.Context) (*clientv3.Client, error)
	Prefix   string // default /vxland
	VNI      uint32
	Self     netip.Addr // this host's VTEP address
	Port     uint16     // the VXLAN UDP port every member must use
	Hostname string
	// Underlay, when not empty, is where every VTEP must be: a member or
	// MAC record naming a VTEP outside it is refused (logged once) and
	// never reaches the FDB, its flood lists or its receive allowlist.
	Underlay Underlay
	// LeaseTTL is the lifetime of this host's keys without keep-alives.
	LeaseTTL time.Duration
	// Ageing is how long a local MAC stays published without traffic.
	Ageing time.Duration

	FDB       FDB
	Local     *fdb.LocalTable
	Neighbors *fdb.Neighbors
	Logger    *slog.Logger
	// AfterList, when set, is called after each list of the VNI's
	// prefix, with the number of keys listed (etcdwatch.Follower).
	AfterList func(keys int)
}

// FDB is what the agent changes in the data plane's forwarding table:
// remote MACs and the flood list. *fdb.Table is the real one; the
// control-plane bench gives a stand-in that records when it is told.
type FDB interface {
	Set(vni uint32, mac fdb.MAC, vtep netip.Addr, o fdb.Origin) bool
	Delete(vni uint32, mac fdb.MAC, o fdb.Origin) bool
	AddFlood(vni uint32, vtep netip.Addr, src fdb.Source) bool
	RemoveFlood(vni uint32, vtep netip.Addr, src fdb.Source) bool
}

var _ FDB = (*fdb.Table)(nil)

// DefaultPrefix is the default etcd key prefix.
const DefaultPrefix = "/vxland"

// maxTxnOps is etcd's default limit of operations per transaction.
const maxTxnOps = 128

// Agent runs the control plane of one host and VNI.
type Agent struct {
	cfg  Config
	keys Keys
	log  *slog.Logger

	mu sync.Mutex
	// view is the last valid record of every key under the VNI prefix.
	view map[string]*viewEntry
	// published is what this host has written for its own MACs, by MAC.
	published map[fdb.MAC][]byte
	// badLogged remembers the malformed values already logged, by key, so
	// that each is logged once.
	badLogged map[string]seenValue
	// lists counts the full lists applied; an entry whose listed is less
	// after a list was not in it.
	lists uint64
	// rev is the revision the view reflects; written under mu, read
	// without it.
	rev atomic.Int64
	// synced is closed after the first full list has been applied.
	synced chan struct{}
	// follow keeps the view, and counts its re-lists and errors.
	follow *etcdwatch.Follower
	// leaseDeadline is when this host's lease expires unless etcd
	// answers another keep-alive, in Unix nanoseconds; 0 without a lease.
	leaseDeadline atomic.Int64
	// errors counts failed registrations and publications.
	errors atomic.Int64
}

// New returns an agent; Run starts it.
func New(cfg Config) *Agent {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		cfg:       cfg,
		keys:      NewKeys(cfg.Prefix, cfg.VNI),
		log:       cfg.Logger.With("component", "discovery", "vni", cfg.VNI),
		view:      make(map[string]*viewEntry),
		published: make(map[fdb.MAC][]byte),
		badLogged: make(map[string]seenValue),
		synced:    make(chan struct{}),
	}
	a.follow = &etcdwatch.Follower{Client: cfg.Client, Prefix: a.keys.Prefix(), Store: (*agentStore)(a), Logger: a.log, AfterList: cfg.AfterList}
	return a
}

// Synced is closed once the agent has applied a full list of etcd.
func (a *Agent) Synced() <-chan struct{} { return a.synced }

// Revision returns the etcd revision the agent's view reflects.
func (a *Agent) Revision() int64 { return a.rev.Load() }

// The accessors below read atomics: a metrics scrape never waits for the
// agent.

// LeaseTTLLeft returns how long this host's lease lives without another
// keep-alive, as of etcd's last answer; 0 while the host holds no lease
// or etcd has not answered within the TTL.
func (a *Agent) LeaseTTLLeft() time.Duration {
	d := a.leaseDeadline.Load()
	if d == 0 {
		return 0
	}
	return max(time.Until(time.Unix(0, d)), 0)
}

// Connected reports whether this host is registered and etcd renewed its
// lease within the TTL.
func (a *Agent) Connected() bool { return a.LeaseTTLLeft() > 0 }

// Relists returns how many times the watch found its revision compacted
// and listed the VNI's keys again.
func (a *Agent) Relists() int64 { return a.follow.Relists() }

// Errors returns how many etcd operations failed: registrations,
// publications of local MACs, lists and watches.
func (a *Agent) Errors() int64 { return a.errors.Load() + a.follow.Errors() }

// leaseRenewed records that etcd keeps the lease for ttl from now.
func (a *Agent) leaseRenewed(ttl time.Duration) {
	a.leaseDeadline.Store(time.Now().Add(ttl).UnixNano())
}

// Run registers this host, publishes its MACs and follows the other hosts
// until ctx is done. On return it revokes its lease (best effort), so the
// others forget this host at once rather than after the TTL.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.Client == nil {
		cli := a.connect(ctx)
		if cli == nil {
			return nil
		}
		defer cli.Close()
		// Nothing else reads the client before the loops below start.
		a.cfg.Client, a.follow.Client = cli, cli
	}
	var wg sync.WaitGroup
	wg.Go(func() { a.watchLoop(ctx) })
	wg.Go(func() { a.registerLoop(ctx) })
	wg.Wait()
	return nil
}

// connect makes the agent's client with Connect, trying again until it
// succeeds or ctx is done (nil). A refused login is an error to log, not
// to stop for: forwarding goes on, and an operator who mends the password
// in etcd needs no restart.
func (a *Agent) connect(ctx context.Context) *clientv3.Client {
	for attempt := 0; ; attempt++ {
		cli, err := a.cfg.Connect(ctx)
		if err == nil {
			a.log.Info("etcd client connected")
			return cli
		}
		if ctx.Err() != nil {
			return nil
		}
		a.errors.Add(1)
		if errors.Is(err, rpctypes.ErrAuthFailed) {
			a.log.Error("etcd refused the login; retrying", "err", err, "attempt", attempt+1)
		} else {
			a.log.Warn("etcd client not connected; retrying", "err", err, "attempt", attempt+1)
		}
		if !etcdwatch.Sleep(ctx, etcdwatch.Backoff(attempt)) {
			return nil
		}
	}
}

// ---- registration and publication ----

func (a *Agent) registerLoop(ctx context.Context) {
	started := time.Now().UTC().Truncate(time.Second)
	for attempt := 0; ctx.Err() == nil; {
		lease, err := a.register(ctx, started)
		if err != nil {
			if ctx.Err() == nil {
				a.errors.Add(1)
				a.log.Warn("etcd registration failed; retrying", "err", err, "attempt", attempt+1)
			}
			if !etcdwatch.Sleep(ctx, etcdwatch.Backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		a.log.Info("registered in etcd", "key", a.keys.Member(a.cfg.Self), "lease", fmt.Sprintf("%x", lease), "ttl", a.cfg.LeaseTTL)
		a.leaseRenewed(a.cfg.LeaseTTL)
		a.keepPublished(ctx, lease)
		a.leaseDeadline.Store(0)
		if ctx.Err() != nil {
			revoke, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_, _ = a.cfg.Client.Revoke(revoke, lease)
			cancel()
			return
		}
		a.log.Warn("etcd lease lost; registering again", "lease", fmt.Sprintf("%x", lease))
	}
}

// register grants a lease and writes this host's member key and every MAC
// it owns on it, in one transaction.
func (a *Agent) register(ctx context.Context, started time.Time) (clientv3.LeaseID, error) {
	ttl := int64(max(a.cfg.LeaseTTL.Round(time.Second)/time.Second, 1))
	opCtx, cancel := context.WithTimeout(ctx, a.cfg.LeaseTTL)
	defer cancel()
	g, err := a.cfg.Client.Grant(opCtx, ttl)
	if err != nil {
		return 0, fmt.Errorf("granting lease: %w", err)
	}
	member, _ := json.Marshal(Member{Version: SchemaVersion, Addr: a.cfg.Self, Port: a.cfg.Port, Hostname: a.cfg.Hostname, Started: started})
	ops := []clientv3.Op{clientv3.OpPut(a.keys.Member(a.cfg.Self), string(member), clientv3.WithLease(g.ID))}
	a.mu.Lock()
	for mac, v := range a.published {
		ops = append(ops, clientv3.OpPut(a.keys.MAC(mac), string(v), clientv3.WithLease(g.ID)))
	}
	a.mu.Unlock()
	// One transaction when it fits etcd's default limit of 128
	// operations (--max-txn-ops); a host with more MACs publishes them in
	// several, member key first. Either way all hang on the new lease.
	for chunk := range slices.Chunk(ops, maxTxnOps) {
		if _, err := a.cfg.Client.Txn(opCtx).Then(chunk...).Commit(); err != nil {
			_, _ = a.cfg.Client.Revoke(context.WithoutCancel(opCtx), g.ID)
			return 0, fmt.Errorf("publishing %d keys: %w", len(ops), err)
		}
	}
	return g.ID, nil
}

// keepPublished keeps the lease alive and publishes local changes until
// the lease is lost or ctx is done.
func (a *Agent) keepPublished(ctx context.Context, lease clientv3.LeaseID) {
	kaCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ka, err := a.cfg.Client.KeepAlive(kaCtx, lease)
	if err != nil {
		return
	}
	// Ageing is checked often enough to withdraw a MAC within a tenth of
	// the ageing time of its expiry, and pending writes are retried.
	tick := time.NewTicker(max(min(a.cfg.Ageing/10, time.Second), 100*time.Millisecond))
	defer tick.Stop()
	var changed <-chan struct{}
	if a.cfg.Local != nil {
		changed = a.cfg.Local.Changed()
	}
	a.syncLocal(ctx, lease)
	for {
		select {
		case <-ctx.Done():
			return
		case r, ok := <-ka:
			if !ok {
				return
			}
			a.leaseRenewed(time.Duration(r.TTL) * time.Second)
		case <-changed:
			a.syncLocal(ctx, lease)
		case <-tick.C:
			a.syncLocal(ctx, lease)
		}
	}
}

// syncLocal makes etcd hold exactly the local MACs: new and changed ones
// are put on the lease, aged ones are deleted if they are still ours.
// A failed write is retried on the next call.
func (a *Agent) syncLocal(ctx context.Context, lease clientv3.LeaseID) {
	if a.cfg.Local == nil {
		return
	}
	if a.cfg.Ageing > 0 {
		a.cfg.Local.Expire(a.cfg.Ageing)
	}
	want := make(map[fdb.MAC][]byte)
	for _, e := range a.cfg.Local.Snapshot() {
		r := MACRecord{Version: SchemaVersion, MAC: e.MAC.String(), VTEP: a.cfg.Self}
		for _, ip := range e.IPs {
			if ip.Is4() {
				r.IPs = append(r.IPs, ip)
			} else {
				r.IPv6 = append(r.IPv6, ip)
			}
		}
		slices.SortFunc(r.IPs, netip.Addr.Compare)
		slices.SortFunc(r.IPv6, netip.Addr.Compare)
		v, _ := json.Marshal(r)
		want[e.MAC] = v
	}
	a.mu.Lock()
	var puts, dels []fdb.MAC
	for mac, v := range want {
		if old, ok := a.published[mac]; !ok || string(old) != string(v) {
			puts = append(puts, mac)
		}
	}
	for mac := range a.published {
		if _, ok := want[mac]; !ok {
			dels = append(dels, mac)
		}
	}
	old := make(map[fdb.MAC][]byte, len(dels))
	for _, mac := range dels {
		old[mac] = a.published[mac]
	}
	a.mu.Unlock()

	opCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Every new or changed MAC in one transaction (or one per
	// maxTxnOps): one round trip, however many MACs arrived since the
	// last. Put one at a time, a burst of k MACs waited k round trips for
	// the last, and under load a round trip is hundreds of milliseconds.
	for chunk := range slices.Chunk(puts, maxTxnOps) {
		ops := make([]clientv3.Op, len(chunk))
		for i, mac := range chunk {
			ops[i] = clientv3.OpPut(a.keys.MAC(mac), string(want[mac]), clientv3.WithLease(lease))
		}
		if _, err := a.cfg.Client.Txn(opCtx).Then(ops...).Commit(); err != nil {
			a.errors.Add(1)
			a.log.Debug("publishing MACs failed; will retry", "macs", len(chunk), "first", chunk[0], "err", err)
			return
		}
		a.mu.Lock()
		for _, mac := range chunk {
			a.published[mac] = want[mac]
		}
		a.mu.Unlock()
		a.log.Debug("published local MACs", "macs", len(chunk), "first", chunk[0])
	}
	for _, mac := range dels {
		key := a.keys.MAC(mac)
		// Delete only what we wrote: the MAC may have moved to another
		// host, whose claim must survive our withdrawal.
		_, err := a.cfg.Client.Txn(opCtx).
			If(clientv3.Compare(clientv3.Value(key), "=", string(old[mac]))).
			Then(clientv3.OpDelete(key)).Commit()
		if err != nil {
			a.errors.Add(1)
			a.log.Debug("withdrawing MAC failed; will retry", "mac", mac, "err", err)
			return
		}
		a.mu.Lock()
		delete(a.published, mac)
		a.mu.Unlock()
		a.log.Debug("withdrew local MAC", "mac", mac)
	}
}

// ---- watching and applying ----

func (a *Agent) watchLoop(ctx context.Context) { a.follow.Run(ctx) }

// agentStore is the Agent as the etcdwatch.Store of its view.
type agentStore Agent

// seenValue names one value of a key: etcd gives a key a new ModRevision
// with every put, so the same ModRevision is the same value.
type seenValue struct {
	modRev int64
	// listed is the number of the full list that last held the key.
	listed uint64
}

// viewEntry is a key's valid record in the view.
type viewEntry struct {
	record
	seenValue
}

// Replace reconciles the view with a full list of the VNI's keys.
//
// A re-list after a compaction shows mostly keys the view already holds
// at the same ModRevision: those are neither decoded nor applied again,
// and the list allocates nothing for them. Decoding every value of a
// list of 10,000 MACs again took most of the re-list's CPU and allocated
// about 16 objects per key, garbage that the daemon's resident set kept.
func (s *agentStore) Replace(kvs []*mvccpb.KeyValue, rev int64) {
	a := (*Agent)(s)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lists++
	if rev < a.rev.Load() {
		// etcd went back in time (restored from a snapshot without
		// bumping its revision): a ModRevision no longer names one
		// value, so every key is decoded and applied again.
		for _, e := range a.view {
			e.modRev = 0
		}
		for key, b := range a.badLogged {
			a.badLogged[key] = seenValue{listed: b.listed}
		}
	}
	for _, kv := range kvs {
		a.putLocked(kv.Key, kv.Value, kv.ModRevision)
	}
	for key, e := range a.view {
		if e.listed != a.lists {
			a.deleteLocked(key)
		}
	}
	for key, b := range a.badLogged {
		if b.listed != a.lists {
			delete(a.badLogged, key)
		}
	}
	a.rev.Store(rev)
	select {
	case <-a.synced:
	default:
		close(a.synced)
	}
}

// Apply applies the changes of one watch response.
func (s *agentStore) Apply(events []*clientv3.Event, rev int64) {
	a := (*Agent)(s)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ev := range events {
		switch ev.Type {
		case mvccpb.PUT:
			a.putLocked(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
		case mvccpb.DELETE:
			a.deleteLocked(string(ev.Kv.Key))
		}
	}
	if rev > a.rev.Load() {
		a.rev.Store(rev)
	}
}

// Revision returns the revision the view reflects.
func (s *agentStore) Revision() int64 { return (*Agent)(s).Revision() }

// putLocked applies one key's value. A malformed value is logged once and
// treated as absent. The value the view holds already, or already found
// malformed, is only marked as listed.
func (a *Agent) putLocked(rawKey, value []byte, modRev int64) {
	seen := seenValue{modRev: modRev, listed: a.lists}
	if e, ok := a.view[string(rawKey)]; ok && e.modRev == modRev {
		e.listed = a.lists
		return
	}
	if b, ok := a.badLogged[string(rawKey)]; ok && b.modRev == modRev {
		a.badLogged[string(rawKey)] = seen
		return
	}
	key := string(rawKey)
	r, err := a.keys.parse(key, value)
	if err == nil && r.member != nil && r.member.Port != a.cfg.Port && r.member.Addr != a.cfg.Self {
		err = fmt.Errorf("%w: member uses port %d, this host %d", errBadRecord, r.member.Port, a.cfg.Port)
	}
	if err == nil {
		err = a.cfg.Underlay.Check(r.vtep())
	}
	if err != nil {
		a.badLogged[key] = seen
		msg := "skipping malformed etcd value"
		if errors.Is(err, ErrOutsideUnderlay) {
			msg = "rejecting etcd record: its VTEP is outside --underlay-cidr"
		}
		a.log.Warn(msg, "key", key, "revision", modRev, "err", err)
		a.dropLocked(key)
		return
	}
	delete(a.badLogged, key)
	if old, ok := a.view[key]; ok && old.member != nil {
		// Still a member (the key names the address): flood list
		// memberships are counted, so applying it again would add one.
		a.view[key] = &viewEntry{r, seen}
		return
	}
	if old, ok := a.view[key]; ok && old.mac != nil {
		if old.mac.VTEP != r.mac.VTEP {
			a.unapplyLocked(old.record) // the MAC moved: drop the old place first
		} else if a.cfg.Neighbors != nil && old.mac.VTEP != a.cfg.Self {
			keep := r.mac.neighbors()
			for _, ip := range old.mac.neighbors() {
				if !slices.Contains(keep, ip) {
					a.cfg.Neighbors.Delete(ip, r.macKey)
				}
			}
		}
	}
	a.view[key] = &viewEntry{r, seen}
	a.applyLocked(r)
}

// deleteLocked applies the deletion of key.
func (a *Agent) deleteLocked(key string) {
	delete(a.badLogged, key)
	a.dropLocked(key)
}

// dropLocked forgets key's record and what it installed.
func (a *Agent) dropLocked(key string) {
	old, ok := a.view[key]
	if !ok {
		return
	}
	delete(a.view, key)
	a.unapplyLocked(old.record)
}

// applyLocked makes the data plane reflect r. It is idempotent.
func (a *Agent) applyLocked(r record) {
	vni := a.cfg.VNI
	switch {
	case r.member != nil:
		if r.member.Addr != a.cfg.Self {
			if a.cfg.FDB.AddFlood(vni, r.member.Addr, fdb.SourceEtcd) {
				a.log.Info("VTEP joined", "vtep", r.member.Addr, "hostname", r.member.Hostname)
			}
		}
	case r.mac != nil:
		mac := r.macKey
		if r.mac.VTEP == a.cfg.Self {
			// Ours: never forward it to the underlay.
			a.cfg.FDB.Delete(vni, mac, fdb.OriginRemote)
			return
		}
		if _, mine := a.published[mac]; mine {
			// Another host claims a MAC we published: it moved there.
			delete(a.published, mac)
			if a.cfg.Local != nil {
				a.cfg.Local.Forget(mac)
			}
			a.log.Info("local MAC moved to another VTEP", "mac", mac, "vtep", r.mac.VTEP)
		}
		a.cfg.FDB.Set(vni, mac, r.mac.VTEP, fdb.OriginRemote)
		if a.cfg.Neighbors != nil {
			for _, ip := range r.mac.neighbors() {
				a.cfg.Neighbors.Set(ip, mac)
			}
		}
	}
}

// unapplyLocked removes what applyLocked(r) installed.
func (a *Agent) unapplyLocked(r record) {
	switch {
	case r.member != nil:
		if r.member.Addr != a.cfg.Self && a.cfg.FDB.RemoveFlood(a.cfg.VNI, r.member.Addr, fdb.SourceEtcd) {
			a.log.Info("VTEP left", "vtep", r.member.Addr)
		}
	case r.mac != nil:
		if r.mac.VTEP == a.cfg.Self {
			return
		}
		a.cfg.FDB.Delete(a.cfg.VNI, r.macKey, fdb.OriginRemote)
		if a.cfg.Neighbors != nil {
			for _, ip := range r.mac.neighbors() {
				a.cfg.Neighbors.Delete(ip, r.macKey)
			}
		}
	}
}
