package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vxland/vxland/overlay/fdb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestAgentsPublishAndWithdraw: two hosts find each other, and a MAC seen
// on one is forwarded to it by the other until it ages out.
func TestAgentsPublishAndWithdraw(t *testing.T) {
	cli := startEtcd(t)
	// The local table refreshes a MAC at most once a second, so an
	// ageing above that keeps a MAC that keeps sending.
	ageing := func(c *Config) { c.Ageing = 2 * time.Second }
	a := newHost(t, cli, "192.0.2.1", ageing)
	b := newHost(t, cli, "192.0.2.2", ageing)
	a.start()
	b.start()

	waitFor(t, "each host floods to the other and only to the other", func() error {
		if got, want := snapshot(t, a, nil).flood, addrPorts(b); !slices.Equal(got, want) {
			return fmt.Errorf("A floods to %v, want %v", got, want)
		}
		if got, want := snapshot(t, b, nil).flood, addrPorts(a); !slices.Equal(got, want) {
			return fmt.Errorf("B floods to %v, want %v", got, want)
		}
		return nil
	})
	for _, c := range []struct {
		h     *host
		vtep  netip.Addr
		known bool
	}{{a, b.addr, true}, {a, a.addr, false}, {b, a.addr, true}, {b, b.addr, false}} {
		if got := isKnown(c.h.fdb, c.vtep); got != c.known {
			t.Errorf("host %s: KnownVTEP(%s) = %t, want %t", c.h.addr, c.vtep, got, c.known)
		}
	}

	mac, ip, ip6 := mustMAC("02:00:00:00:00:a1"), netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fd00::a1")
	waitFor(t, "a MAC that keeps sending on A is in B's FDB, pointing to A", func() error {
		a.local.Observe(mac, ip)
		a.local.Observe(mac, ip6)
		d := snapshot(t, b, []netip.Addr{ip, ip6})
		if vtep, ok := d.fdb[mac]; !ok || vtep != a.vtep() {
			return fmt.Errorf("B: %s", d)
		}
		if d.neigh[ip] != mac || d.neigh[ip6] != mac {
			return fmt.Errorf("B: %s", d)
		}
		return nil
	})
	value, macLease, ok := getKey(t, cli, testKeys.MAC(mac))
	if !ok {
		t.Fatalf("%s is in B's FDB but not in etcd", mac)
	}
	var rec MACRecord
	if err := json.Unmarshal([]byte(value), &rec); err != nil || rec.VTEP != a.addr || !slices.Equal(rec.IPs, []netip.Addr{ip}) || !slices.Equal(rec.IPv6, []netip.Addr{ip6}) {
		t.Errorf("%s = %s, want VTEP %s, ips [%s] and ipv6 [%s]", testKeys.MAC(mac), value, a.addr, ip, ip6)
	}
	_, memberLease, _ := getKey(t, cli, testKeys.Member(a.addr))
	if macLease == 0 || macLease != memberLease {
		t.Errorf("A's MAC is on lease %x, its member key on %x: want both on A's lease", macLease, memberLease)
	}
	if d := snapshot(t, a, []netip.Addr{ip}); len(d.fdb) != 0 || len(d.neigh) != 0 {
		t.Errorf("A forwards its own MAC to the underlay: %s", d)
	}

	// A sees no more frames from the MAC: it ages out of A's table, A
	// withdraws it, and B forgets it.
	waitFor(t, "the aged MAC is withdrawn from etcd and from B", func() error {
		if _, _, ok := getKey(t, cli, testKeys.MAC(mac)); ok {
			return fmt.Errorf("%s still in etcd", testKeys.MAC(mac))
		}
		if d := snapshot(t, b, []netip.Addr{ip}); len(d.fdb) != 0 || len(d.neigh) != 0 || b.neigh.Len() != 0 {
			return fmt.Errorf("B: %s", d)
		}
		return nil
	})
	// Withdrawn by A, not lost with its lease.
	if _, l, ok := getKey(t, cli, testKeys.Member(a.addr)); !ok || l != memberLease {
		t.Errorf("A's member key: present %t, lease %x; want still on lease %x", ok, l, memberLease)
	}
	if got, want := snapshot(t, b, nil).flood, addrPorts(a); !slices.Equal(got, want) {
		t.Errorf("B floods to %v after the withdrawal, want %v", got, want)
	}
}

// TestStoppedHostIsForgotten: a host that stops revokes its lease, so the
// others forget it at once rather than when the lease expires.
func TestStoppedHostIsForgotten(t *testing.T) {
	cli := startEtcd(t)
	a := newHost(t, cli, "192.0.2.1") // 30s lease: longer than any wait below
	b := newHost(t, cli, "192.0.2.2")
	a.start()
	b.start()

	mac, ip := mustMAC("02:00:00:00:00:a1"), netip.MustParseAddr("10.1.0.1")
	a.local.Observe(mac, ip)
	waitFor(t, "B knows A and A's MAC", func() error {
		d := snapshot(t, b, []netip.Addr{ip})
		return d.compare(dataPlane{
			flood: addrPorts(a),
			fdb:   map[fdb.MAC]netip.AddrPort{mac: a.vtep()},
			neigh: map[netip.Addr]fdb.MAC{ip: mac},
		})
	})
	_, lease, ok := getKey(t, cli, testKeys.Member(a.addr))
	if !ok || lease == 0 {
		t.Fatalf("A's member key: present %t, lease %x", ok, lease)
	}

	a.stop()

	// Run has returned: the lease is gone already, and every key with it.
	ttl, err := cli.TimeToLive(t.Context(), lease)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL != -1 {
		t.Errorf("A's lease %x has %ds to live after Run returned; want it revoked", lease, ttl.TTL)
	}
	for _, key := range []string{testKeys.Member(a.addr), testKeys.MAC(mac)} {
		if v, _, ok := getKey(t, cli, key); ok {
			t.Errorf("%s = %s after A stopped", key, v)
		}
	}
	waitFor(t, "B forgets A", func() error {
		d := snapshot(t, b, []netip.Addr{ip})
		if err := d.compare(dataPlane{}); err != nil {
			return err
		}
		if isKnown(b.fdb, a.addr) {
			return errors.New("B still accepts packets from A")
		}
		return nil
	})
}

// TestLeaseLost: when its lease is revoked behind its back, a host
// registers again on a new lease and re-publishes what it owns.
func TestLeaseLost(t *testing.T) {
	cli := startEtcd(t)
	// A short lease is renewed often, so its loss is noticed soon.
	a := newHost(t, cli, "192.0.2.1", func(c *Config) { c.LeaseTTL = 3 * time.Second })
	b := newHost(t, cli, "192.0.2.2")
	a.start()
	b.start()

	mac, ip := mustMAC("02:00:00:00:00:a1"), netip.MustParseAddr("10.1.0.1")
	a.local.Observe(mac, ip) // no ageing: A publishes it for good
	var old clientv3.LeaseID
	waitFor(t, "A's member and MAC keys on one lease", func() error {
		_, ml, ok1 := getKey(t, cli, testKeys.Member(a.addr))
		_, l, ok2 := getKey(t, cli, testKeys.MAC(mac))
		if !ok1 || !ok2 || ml != l || l == 0 {
			return fmt.Errorf("member key present %t lease %x, MAC key present %t lease %x", ok1, ml, ok2, l)
		}
		old = l
		return nil
	})

	if _, err := cli.Revoke(t.Context(), old); err != nil {
		t.Fatalf("revoking A's lease: %v", err)
	}

	waitFor(t, "A registered again on a new lease, with its MAC", func() error {
		mv, ml, ok1 := getKey(t, cli, testKeys.Member(a.addr))
		v, l, ok2 := getKey(t, cli, testKeys.MAC(mac))
		switch {
		case !ok1 || !ok2:
			return fmt.Errorf("member key present %t, MAC key present %t", ok1, ok2)
		case ml == old || l == old:
			return fmt.Errorf("keys still on the revoked lease %x", old)
		case ml != l || l == 0:
			return fmt.Errorf("member key on lease %x, MAC key on %x", ml, l)
		}
		if _, err := testKeys.parse(testKeys.Member(a.addr), []byte(mv)); err != nil {
			return err
		}
		r, err := testKeys.parse(testKeys.MAC(mac), []byte(v))
		if err != nil {
			return err
		}
		if r.mac.VTEP != a.addr || !slices.Equal(r.mac.IPs, []netip.Addr{ip}) {
			return fmt.Errorf("MAC record %s", v)
		}
		return nil
	})
	_, lease, _ := getKey(t, cli, testKeys.Member(a.addr))
	ttl, err := cli.TimeToLive(t.Context(), lease)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL <= 0 {
		t.Errorf("A's new lease %x: TTL %d", lease, ttl.TTL)
	}
	if n := a.log.count(t, "etcd lease lost; registering again", "lease", fmt.Sprintf("%x", int64(old))); n != 1 {
		t.Errorf("A logged the loss of lease %x %d times, want 1", old, n)
	}
	waitFor(t, "B knows A and its MAC again", func() error {
		return snapshot(t, b, []netip.Addr{ip}).compare(dataPlane{
			flood: addrPorts(a),
			fdb:   map[fdb.MAC]netip.AddrPort{mac: a.vtep()},
			neigh: map[netip.Addr]fdb.MAC{ip: mac},
		})
	})
}

// TestMalformedValuesAreSkipped: values a reader cannot use are logged
// once per key and revision, treated as absent, and do not stop the
// reader.
func TestMalformedValuesAreSkipped(t *testing.T) {
	cli := startEtcd(t)
	b := newHost(t, cli, "192.0.2.2")
	b.start()
	b.waitSynced()

	const x = "192.0.2.9"
	putMember(t, cli, x, testPort)
	putMAC(t, cli, "02:00:00:00:00:a2", x)
	putMAC(t, cli, "02:00:00:00:00:a4", x)
	waitFor(t, "B applies the valid records", func() error {
		return snapshot(t, b, nil).compare(dataPlane{
			flood: []netip.AddrPort{vtepOf(x)},
			fdb:   map[fdb.MAC]netip.AddrPort{mustMAC("02:00:00:00:00:a2"): vtepOf(x), mustMAC("02:00:00:00:00:a4"): vtepOf(x)},
		})
	})

	garbage := []struct{ key, value string }{
		{testKeys.MAC(mustMAC("02:00:00:00:00:a1")), `{"version":1,"mac":`},
		// Replaces a valid record: the MAC must be forgotten.
		{testKeys.MAC(mustMAC("02:00:00:00:00:a2")), `{"version":1,"mac":"02:00:00:00:00:a3","vtep":"192.0.2.9"}`},
		{testKeys.Member(netip.MustParseAddr("192.0.2.10")), `{"version":1,"addr":"192.0.2.10","port":4790}`},
		{testKeys.Prefix() + "route/10.0.0.0-8", `{"version":1}`},
		// A second spelling of a04's key must not disturb the real one.
		{testKeys.Prefix() + "mac/02-00-00-00-00-a4", `{"version":1,"mac":"02:00:00:00:00:a4","vtep":"192.0.2.11"}`},
	}
	for _, g := range garbage {
		put(t, cli, g.key, g.value)
	}
	// Changes reach a watcher in order: once B has this, it has been
	// through the garbage.
	const y = "192.0.2.11"
	putMember(t, cli, y, testPort)
	putMAC(t, cli, "02:00:00:00:00:a5", y, "10.1.0.5")
	ips := []netip.Addr{netip.MustParseAddr("10.1.0.5")}
	want := dataPlane{
		flood: []netip.AddrPort{vtepOf(x), vtepOf(y)},
		fdb:   map[fdb.MAC]netip.AddrPort{mustMAC("02:00:00:00:00:a4"): vtepOf(x), mustMAC("02:00:00:00:00:a5"): vtepOf(y)},
		neigh: map[netip.Addr]fdb.MAC{ips[0]: mustMAC("02:00:00:00:00:a5")},
	}
	waitFor(t, "B skips the garbage and applies what follows it", func() error {
		return snapshot(t, b, ips).compare(want)
	})
	if isKnown(b.fdb, netip.MustParseAddr("192.0.2.10")) {
		t.Errorf("B accepts packets from a member on another port")
	}
	logCounts := func() []int {
		var n []int
		for _, g := range garbage {
			n = append(n, b.log.count(t, "skipping malformed etcd value", "key", g.key))
		}
		return n
	}
	if got := logCounts(); !slices.Equal(got, []int{1, 1, 1, 1, 1}) {
		t.Errorf("malformed values logged %v times, want once each", got)
	}

	// The second spelling goes away; the real record stays.
	del(t, cli, garbage[4].key)
	// A restarted agent lists everything again, garbage included, at the
	// revisions it has logged already.
	b.stop()
	b.start()
	putMAC(t, cli, "02:00:00:00:00:a6", y)
	want.fdb[mustMAC("02:00:00:00:00:a6")] = vtepOf(y)
	waitFor(t, "B, restarted, applies a new record", func() error {
		return snapshot(t, b, ips).compare(want)
	})
	if got := logCounts(); !slices.Equal(got, []int{1, 1, 1, 1, 1}) {
		t.Errorf("after a re-list, malformed values logged %v times, want once each", got)
	}

	// The same garbage written again is a new revision: logged again.
	put(t, cli, garbage[0].key, garbage[0].value)
	waitFor(t, "garbage written again is logged again", func() error {
		if got := logCounts(); !slices.Equal(got, []int{2, 1, 1, 1, 1}) {
			return fmt.Errorf("logged %v times", got)
		}
		return nil
	})
	if err := snapshot(t, b, ips).compare(want); err != nil {
		t.Error(err)
	}
}

// TestMACMove: a MAC claimed by a second host is forwarded there by the
// first, which forgets it and never withdraws the new owner's claim.
func TestMACMove(t *testing.T) {
	cli := startEtcd(t)
	a := newHost(t, cli, "192.0.2.1", func(c *Config) { c.Ageing = 2 * time.Second })
	b := newHost(t, cli, "192.0.2.2") // no ageing: B holds the MAC for good
	a.start()
	b.start()

	mac, ip := mustMAC("02:00:00:00:00:a1"), netip.MustParseAddr("10.1.0.1")
	waitFor(t, "B forwards the MAC to A", func() error {
		a.local.Observe(mac, ip)
		return snapshot(t, b, []netip.Addr{ip}).compare(dataPlane{
			flood: addrPorts(a),
			fdb:   map[fdb.MAC]netip.AddrPort{mac: a.vtep()},
			neigh: map[netip.Addr]fdb.MAC{ip: mac},
		})
	})

	// The container moves to B: A sees no more of it, B does.
	b.local.Observe(mac, ip)
	key := testKeys.MAC(mac)
	var bValue string
	var bLease clientv3.LeaseID
	waitFor(t, "the MAC is B's in etcd and A forwards it to B", func() error {
		v, l, ok := getKey(t, cli, key)
		if !ok {
			return fmt.Errorf("%s absent", key)
		}
		r, err := testKeys.parse(key, []byte(v))
		if err != nil {
			return err
		}
		if r.mac.VTEP != b.addr {
			return fmt.Errorf("%s = %s", key, v)
		}
		bValue, bLease = v, l
		if err := snapshot(t, a, []netip.Addr{ip}).compare(dataPlane{
			flood: addrPorts(b),
			fdb:   map[fdb.MAC]netip.AddrPort{mac: b.vtep()},
			neigh: map[netip.Addr]fdb.MAC{ip: mac},
		}); err != nil {
			return fmt.Errorf("A: %w", err)
		}
		if slices.ContainsFunc(a.local.Snapshot(), func(e fdb.LocalMAC) bool { return e.MAC == mac }) {
			return errors.New("A's local table still holds the MAC")
		}
		return nil
	})
	if _, memberLease, _ := getKey(t, cli, testKeys.Member(b.addr)); bLease != memberLease {
		t.Errorf("the moved MAC is on lease %x, B's member key on %x", bLease, memberLease)
	}
	// A forgot the MAC because B claimed it, not because it aged out.
	if n := a.log.count(t, "local MAC moved to another VTEP", "mac", logged(t, mac), "vtep", logged(t, b.addr)); n != 1 {
		t.Errorf("A logged the move %d times, want 1", n)
	}
	if err := snapshot(t, b, []netip.Addr{ip}).compare(dataPlane{flood: addrPorts(a)}); err != nil {
		t.Errorf("B forwards its own MAC to the underlay: %v", err)
	}

	// Past A's ageing, B's claim stands.
	time.Sleep(3 * time.Second) // A's ageing, and a second more
	if v, l, ok := getKey(t, cli, key); !ok || v != bValue || l != bLease {
		t.Errorf("after A's ageing, %s = %q on lease %x (present %t); want %q on lease %x", key, v, l, ok, bValue, bLease)
	}
	if err := snapshot(t, a, []netip.Addr{ip}).compare(dataPlane{
		flood: addrPorts(b),
		fdb:   map[fdb.MAC]netip.AddrPort{mac: b.vtep()},
		neigh: map[netip.Addr]fdb.MAC{ip: mac},
	}); err != nil {
		t.Errorf("A after its ageing: %v", err)
	}
}

// gapScenario prepares records, then changes them as hosts would while a
// watcher is away: members and MACs come, go and move. The deletions make
// a watcher that skips the gap keep what no longer exists.
type gapScenario struct{ t *testing.T }

func (s gapScenario) before(cli *clientv3.Client) {
	putMember(s.t, cli, "192.0.2.20", testPort)
	putMember(s.t, cli, "192.0.2.21", testPort)
	putMAC(s.t, cli, "02:00:00:00:00:c0", "192.0.2.20", "10.1.0.20")
	putMAC(s.t, cli, "02:00:00:00:00:c1", "192.0.2.21", "10.1.0.21", "10.1.0.22")
	putMAC(s.t, cli, "02:00:00:00:00:c2", "192.0.2.21", "10.1.0.25")
}

func (s gapScenario) during(cli *clientv3.Client) {
	del(s.t, cli, testKeys.Member(netip.MustParseAddr("192.0.2.20")))
	del(s.t, cli, testKeys.MAC(mustMAC("02:00:00:00:00:c0")))
	putMember(s.t, cli, "192.0.2.22", testPort)
	putMAC(s.t, cli, "02:00:00:00:00:c3", "192.0.2.22", "10.1.0.23")
	// c1 moves and keeps one of its addresses.
	putMAC(s.t, cli, "02:00:00:00:00:c1", "192.0.2.22", "10.1.0.22")
	// c2 stays and changes its address.
	putMAC(s.t, cli, "02:00:00:00:00:c2", "192.0.2.21", "10.1.0.26")
	// Here and gone within the gap.
	putMember(s.t, cli, "192.0.2.23", testPort)
	putMAC(s.t, cli, "02:00:00:00:00:c4", "192.0.2.23", "10.1.0.24")
	del(s.t, cli, testKeys.Member(netip.MustParseAddr("192.0.2.23")))
	del(s.t, cli, testKeys.MAC(mustMAC("02:00:00:00:00:c4")))
}

// all is every address the scenario names, for neighbour lookups.
func (gapScenario) all() []netip.Addr {
	var ips []netip.Addr
	for _, s := range []string{"10.1.0.20", "10.1.0.21", "10.1.0.22", "10.1.0.23", "10.1.0.24", "10.1.0.25", "10.1.0.26"} {
		ips = append(ips, netip.MustParseAddr(s))
	}
	return ips
}

// after is the data plane the scenario ends with, as written by hand.
func (gapScenario) after() dataPlane {
	return dataPlane{
		flood: []netip.AddrPort{vtepOf("192.0.2.21"), vtepOf("192.0.2.22")},
		fdb: map[fdb.MAC]netip.AddrPort{
			mustMAC("02:00:00:00:00:c1"): vtepOf("192.0.2.22"),
			mustMAC("02:00:00:00:00:c2"): vtepOf("192.0.2.21"),
			mustMAC("02:00:00:00:00:c3"): vtepOf("192.0.2.22"),
		},
		neigh: map[netip.Addr]fdb.MAC{
			netip.MustParseAddr("10.1.0.22"): mustMAC("02:00:00:00:00:c1"),
			netip.MustParseAddr("10.1.0.23"): mustMAC("02:00:00:00:00:c3"),
			netip.MustParseAddr("10.1.0.26"): mustMAC("02:00:00:00:00:c2"),
		},
	}
}

// compactNow compacts etcd's history up to its current revision.
func compactNow(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(t.Context(), "compact-marker")
	if err != nil {
		t.Fatal(err)
	}
	rev := resp.Header.Revision
	if _, err := cli.Compact(t.Context(), rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compacting at revision %d: %v", rev, err)
	}
	return rev
}

// checkResynced waits until h's data plane is exactly what etcd calls for,
// and what the scenario says by hand.
func checkResynced(t *testing.T, cli *clientv3.Client, h *host, s gapScenario) {
	t.Helper()
	want := fromEtcd(t, cli, h.addr)
	if err := want.compare(s.after()); err != nil {
		t.Fatalf("etcd does not hold what the scenario meant: %v", err)
	}
	waitFor(t, "the data plane equals what etcd holds", func() error {
		if err := snapshot(t, h, s.all()).compare(want); err != nil {
			return err
		}
		if n := h.neigh.Len(); n != len(want.neigh) {
			return fmt.Errorf("%d neighbours, want %d", n, len(want.neigh))
		}
		return nil
	})
}

// pausableWatcher holds an agent's watches as an unreachable etcd would:
// Pause cancels the watches in flight, and new ones wait until Resume.
type pausableWatcher struct {
	clientv3.Watcher

	mu      sync.Mutex
	gate    chan struct{} // closed while not paused
	cancels []context.CancelFunc
	// waiting receives when a watch starts waiting at the gate.
	waiting chan struct{}
}

func newPausableWatcher(w clientv3.Watcher) *pausableWatcher {
	open := make(chan struct{})
	close(open)
	return &pausableWatcher{Watcher: w, gate: open, waiting: make(chan struct{}, 1)}
}

func (w *pausableWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	for {
		w.mu.Lock()
		gate := w.gate
		select {
		case <-gate:
			wctx, cancel := context.WithCancel(ctx)
			w.cancels = append(w.cancels, cancel)
			w.mu.Unlock()
			return w.Watcher.Watch(wctx, key, opts...)
		default:
		}
		w.mu.Unlock()
		select {
		case w.waiting <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
			ch := make(chan clientv3.WatchResponse)
			close(ch)
			return ch
		}
	}
}

func (w *pausableWatcher) Pause() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gate = make(chan struct{})
	for _, cancel := range w.cancels {
		cancel()
	}
	w.cancels = nil
}

func (w *pausableWatcher) Resume() {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.gate)
}

// TestCompactedWatchResyncs is the acceptance test of watch resumption: a watcher
// paused while keys change and the store is compacted past its revision
// resyncs fully.
func TestCompactedWatchResyncs(t *testing.T) {
	cli := startEtcd(t)
	// B's own client, whose watches the test can hold.
	bcli, err := NewClient(context.Background(), ClientConfig{Endpoints: cli.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bcli.Close() })
	pw := newPausableWatcher(bcli.Watcher)
	bcli.Watcher = pw

	s := gapScenario{t}
	s.before(cli)
	b := newHost(t, bcli, "192.0.2.2")
	b.start()
	want := fromEtcd(t, cli, b.addr)
	waitFor(t, "B applies the records before the gap", func() error {
		return snapshot(t, b, s.all()).compare(want)
	})
	if n := b.agent.Relists(); n != 0 {
		t.Fatalf("%d compactions seen before any", n)
	}

	pw.Pause()
	select {
	case <-pw.waiting:
	case <-time.After(waitLimit):
		t.Fatalf("B's watch did not come back to wait for etcd within %s", waitLimit)
	}
	seen := b.agent.Revision()
	s.during(cli)
	rev := compactNow(t, cli)
	if rev <= seen+1 {
		t.Fatalf("compacted at %d, B has seen %d: no gap", rev, seen)
	}
	pw.Resume()

	checkResynced(t, cli, b, s)
	if n := b.agent.Relists(); n != 1 {
		t.Errorf("B re-listed after %d compacted watches, want 1", n)
	}
	if n := b.log.count(t, "etcd compacted past our revision; re-listing"); n != 1 {
		t.Errorf("B logged %d compactions, want 1", n)
	}
	if r := b.agent.Revision(); r < rev {
		t.Errorf("B's view is at revision %d, before the compaction at %d", r, rev)
	}
	// And it follows on from there.
	putMAC(t, cli, "02:00:00:00:00:c5", "192.0.2.21")
	want = s.after()
	want.fdb[mustMAC("02:00:00:00:00:c5")] = vtepOf("192.0.2.21")
	waitFor(t, "B applies a change after the resync", func() error {
		return snapshot(t, b, s.all()).compare(want)
	})
}

// TestRestartedAgentResyncs: an agent whose Run stopped and ran again,
// while keys changed and the store was compacted in between, catches up
// fully.
func TestRestartedAgentResyncs(t *testing.T) {
	cli := startEtcd(t)
	s := gapScenario{t}
	s.before(cli)
	b := newHost(t, cli, "192.0.2.2")
	b.start()
	want := fromEtcd(t, cli, b.addr)
	waitFor(t, "B applies the records before the gap", func() error {
		return snapshot(t, b, s.all()).compare(want)
	})

	b.stop()
	seen := b.agent.Revision()
	s.during(cli)
	rev := compactNow(t, cli)
	if rev <= seen+1 {
		t.Fatalf("compacted at %d, B has seen %d: no gap", rev, seen)
	}
	b.start()
	checkResynced(t, cli, b, s)
	if r := b.agent.Revision(); r < rev {
		t.Errorf("B's view is at revision %d, before the compaction at %d", r, rev)
	}
}

// TestRelistIsIdempotent: applying the same list, or the same event, twice
// leaves the same data plane, and a later list removes what is gone.
func TestRelistIsIdempotent(t *testing.T) {
	cli := startEtcd(t)
	b := newHost(t, cli, "192.0.2.2") // not started: the test drives it
	putMember(t, cli, "192.0.2.2", testPort)
	putMember(t, cli, "192.0.2.30", testPort)
	putMember(t, cli, "192.0.2.31", testPort)
	putMAC(t, cli, "02:00:00:00:00:d0", "192.0.2.30", "10.1.0.30", "10.1.0.31")
	putMAC(t, cli, "02:00:00:00:00:d1", "192.0.2.31", "10.1.0.32")
	putMAC(t, cli, "02:00:00:00:00:d2", "192.0.2.2", "10.1.0.33") // B's own
	put(t, cli, testKeys.MAC(mustMAC("02:00:00:00:00:d3")), `{"version":1,"mac":`)
	ips := []netip.Addr{}
	for _, s := range []string{"10.1.0.30", "10.1.0.31", "10.1.0.32", "10.1.0.33"} {
		ips = append(ips, netip.MustParseAddr(s))
	}
	want := dataPlane{
		flood: []netip.AddrPort{vtepOf("192.0.2.30"), vtepOf("192.0.2.31")},
		fdb: map[fdb.MAC]netip.AddrPort{
			mustMAC("02:00:00:00:00:d0"): vtepOf("192.0.2.30"),
			mustMAC("02:00:00:00:00:d1"): vtepOf("192.0.2.31"),
		},
		neigh: map[netip.Addr]fdb.MAC{
			ips[0]: mustMAC("02:00:00:00:00:d0"),
			ips[1]: mustMAC("02:00:00:00:00:d0"),
			ips[2]: mustMAC("02:00:00:00:00:d1"),
		},
	}
	check := func(when string) {
		t.Helper()
		if err := snapshot(t, b, ips).compare(want); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if n := b.neigh.Len(); n != len(want.neigh) {
			t.Fatalf("%s: %d neighbours, want %d", when, n, len(want.neigh))
		}
	}

	ctx := t.Context()
	for i := range 2 {
		if err := b.agent.follow.List(ctx); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("after list %d", i+1))
	}
	// A watch event applied twice, as after a resumed watch.
	resp, err := cli.Get(ctx, testKeys.MAC(mustMAC("02:00:00:00:00:d0")))
	if err != nil {
		t.Fatal(err)
	}
	kv := resp.Kvs[0]
	b.agent.mu.Lock()
	b.agent.putLocked(kv.Key, kv.Value, kv.ModRevision)
	b.agent.putLocked(kv.Key, kv.Value, kv.ModRevision)
	b.agent.mu.Unlock()
	check("after an event applied twice")
	if n := b.log.count(t, "skipping malformed etcd value"); n != 1 {
		t.Errorf("the malformed value was logged %d times over two lists, want 1", n)
	}

	// What was listed twice goes with one list.
	del(t, cli, testKeys.Member(netip.MustParseAddr("192.0.2.30")))
	del(t, cli, testKeys.MAC(mustMAC("02:00:00:00:00:d0")))
	if err := b.agent.follow.List(ctx); err != nil {
		t.Fatal(err)
	}
	want.flood = []netip.AddrPort{vtepOf("192.0.2.31")}
	delete(want.fdb, mustMAC("02:00:00:00:00:d0"))
	delete(want.neigh, ips[0])
	delete(want.neigh, ips[1])
	check("after a list without the deleted records")
	if isKnown(b.fdb, netip.MustParseAddr("192.0.2.30")) {
		t.Errorf("B still accepts packets from the VTEP that left")
	}
}

// TestWithdrawalKeepsAnotherOwnersClaim: a host withdraws a MAC only if
// etcd still holds what it wrote, so a claim by the MAC's new host that it
// has not seen yet survives.
func TestWithdrawalKeepsAnotherOwnersClaim(t *testing.T) {
	cli := startEtcd(t)
	a := newHost(t, cli, "192.0.2.1") // not started: the test drives it
	ctx := t.Context()
	g, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := mustMAC("02:00:00:00:00:e0"), mustMAC("02:00:00:00:00:e1")
	a.local.Observe(mine, netip.Addr{})
	a.local.Observe(theirs, netip.Addr{})
	a.agent.syncLocal(ctx, g.ID)
	for _, mac := range []fdb.MAC{mine, theirs} {
		if _, l, ok := getKey(t, cli, testKeys.MAC(mac)); !ok || l != g.ID {
			t.Fatalf("%s not published on lease %x (present %t, lease %x)", mac, g.ID, ok, l)
		}
	}

	// theirs moves to B, and A has not heard of it when both age out.
	putMAC(t, cli, theirs.String(), "192.0.2.2")
	claim, _, _ := getKey(t, cli, testKeys.MAC(theirs))
	a.local.Forget(mine)
	a.local.Forget(theirs)
	a.agent.syncLocal(ctx, g.ID)

	if v, _, ok := getKey(t, cli, testKeys.MAC(mine)); ok {
		t.Errorf("%s = %s after A withdrew it", testKeys.MAC(mine), v)
	}
	if v, _, ok := getKey(t, cli, testKeys.MAC(theirs)); !ok || v != claim {
		t.Errorf("%s = %q (present %t) after A withdrew its own claim; want B's %s", testKeys.MAC(theirs), v, ok, claim)
	}
	a.agent.mu.Lock()
	n := len(a.agent.published)
	a.agent.mu.Unlock()
	if n != 0 {
		t.Errorf("A still counts %d MACs as published", n)
	}
}

// The accessors that metrics read: a registered host is connected, its
// lease has time left and its view a revision; no error was counted.
// Once stopped it holds no lease; an agent whose etcd does not answer
// counts errors and is not connected.
func TestAgentReportsEtcdState(t *testing.T) {
	cli := startEtcd(t)
	h := newHost(t, cli, "192.0.2.1")
	if h.agent.Connected() || h.agent.LeaseTTLLeft() != 0 {
		t.Fatal("connected before Run")
	}
	h.start()
	h.waitSynced()
	waitFor(t, "the host is connected", func() error {
		if !h.agent.Connected() {
			return errors.New("not connected")
		}
		return nil
	})
	if left := h.agent.LeaseTTLLeft(); left <= 0 || left > 30*time.Second {
		t.Errorf("lease TTL left %s, want within the TTL of 30s", left)
	}
	if h.agent.Revision() == 0 {
		t.Error("revision 0 after the first list")
	}
	if n := h.agent.Errors(); n != 0 {
		t.Errorf("%d errors with etcd up, want 0", n)
	}
	h.stop()
	if h.agent.Connected() || h.agent.LeaseTTLLeft() != 0 {
		t.Error("still connected after Run returned")
	}

	closed, _ := freeLoopbackPorts(t) // free, and closed again: nothing answers there
	dead, err := NewClient(context.Background(), ClientConfig{Endpoints: []string{"http://" + closed}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Close() })
	d := newHost(t, dead, "192.0.2.2", func(c *Config) { c.LeaseTTL = 2 * time.Second })
	d.start()
	waitFor(t, "errors are counted", func() error {
		if d.agent.Errors() == 0 {
			return errors.New("no error counted")
		}
		return nil
	})
	if d.agent.Connected() {
		t.Error("connected to an etcd that does not answer")
	}
}

// An agent without a client makes one with Connect, trying again while it
// fails (a refused login logged as such), registers once it succeeds, and
// closes the client it made when it stops.
func TestAgentConnectsInTheBackground(t *testing.T) {
	cli := startEtcd(t)
	var made *clientv3.Client
	attempts := 0
	h := newHost(t, nil, "192.0.2.1", func(c *Config) {
		c.Connect = func(ctx context.Context) (*clientv3.Client, error) {
			if attempts++; attempts <= 2 {
				return nil, fmt.Errorf("attempt %d: %w", attempts, rpctypes.ErrAuthFailed)
			}
			var err error
			made, err = NewClient(context.Background(), ClientConfig{Endpoints: cli.Endpoints()})
			return made, err
		}
	})
	h.start()
	h.waitSynced()
	waitFor(t, "the member key", func() error {
		resp, err := cli.Get(t.Context(), NewKeys(DefaultPrefix, testVNI).Member(h.addr))
		if err == nil && len(resp.Kvs) == 0 {
			err = errors.New("not registered")
		}
		return err
	})
	if n := h.log.count(t, "etcd refused the login; retrying"); n != 2 || h.agent.Errors() < 2 {
		t.Errorf("logged %d refused logins and counted %d errors, want 2 of each", n, h.agent.Errors())
	}
	h.stop()
	if made.Ctx().Err() == nil {
		t.Error("the client the agent made is still open after Run returned")
	}
}
