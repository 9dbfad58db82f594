package flannel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/internal/netlab"
)

// The nodes of these tests have PublicIPs in 192.0.2.0/24 (TEST-NET-1):
// nothing is sent anywhere, the addresses only name nodes in etcd.

const (
	testConfig = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`
	waitLimit  = 10 * time.Second
)

// startEtcd runs an embedded etcd on free loopback ports and returns a
// client; both stop when the test ends.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var e *discovery.Embedded
	var err error
	for range 3 { // a port found free may be taken before etcd binds it
		e, err = discovery.StartEmbedded(ctx, discovery.EmbeddedConfig{Dir: t.TempDir(), Listen: freePort(t), PeerListen: freePort(t)})
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := discovery.NewClient(context.Background(), discovery.ClientConfig{Endpoints: e.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	put(t, cli, NewKeys(DefaultPrefix).Config(), testConfig)
	return cli
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func put(t *testing.T, cli *clientv3.Client, key, value string, opts ...clientv3.OpOption) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, value, opts...); err != nil {
		t.Fatal(err)
	}
}

// fakeDataplane records what a node installs; AddPeer fails while
// failAdd is above zero.
type fakeDataplane struct {
	mu      sync.Mutex
	local   netip.Prefix
	peers   map[netip.Prefix]Lease
	failAdd int
	removed int
}

func newFake() *fakeDataplane { return &fakeDataplane{peers: map[netip.Prefix]Lease{}} }

func (f *fakeDataplane) SetLocal(s netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.local = s
	return nil
}

func (f *fakeDataplane) AddPeer(l Lease) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAdd > 0 {
		f.failAdd--
		return errors.New("injected failure")
	}
	f.peers[l.Subnet] = l
	return nil
}

func (f *fakeDataplane) RemovePeer(l Lease) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.peers[l.Subnet] != l {
		return fmt.Errorf("removing %v, which is not installed", l)
	}
	delete(f.peers, l.Subnet)
	f.removed++
	return nil
}

func (f *fakeDataplane) Prune(keep map[netip.Prefix]Lease) error { return nil }

func (f *fakeDataplane) snapshot() (netip.Prefix, map[netip.Prefix]Lease) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.local, maps.Clone(f.peers)
}

type testNode struct {
	*Node
	dp   *fakeDataplane
	ip   netip.Addr
	env  string
	log  *netlab.LockedBuffer
	stop func()
}

type nodeOpt func(*NodeConfig)

func startNode(t *testing.T, cli *clientv3.Client, ip string, env string, opts ...nodeOpt) *testNode {
	t.Helper()
	network, err := ParseNetworkConfig([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{dp: newFake(), ip: addr(ip), env: env, log: new(netlab.LockedBuffer)}
	if n.env == "" {
		n.env = filepath.Join(t.TempDir(), "subnet.env")
	}
	cfg := NodeConfig{Client: cli, Network: network, PublicIP: n.ip, VtepMAC: VtepMAC(n.ip, 1), MTU: 1450,
		SubnetFile: n.env, Dataplane: n.dp, Resync: time.Hour,
		Logger: slog.New(slog.NewTextHandler(n.log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, o := range opts {
		o(&cfg)
	}
	n.Node = NewNode(cfg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx)
	}()
	n.stop = func() { cancel(); <-done }
	t.Cleanup(n.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of node %s:\n%s", n.ip, n.log)
		}
	})
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *testNode) waitReady(t *testing.T) netip.Prefix {
	t.Helper()
	waitFor(t, "node "+n.ip.String()+" ready", func() bool {
		ok, _ := n.Ready()
		return ok
	})
	s, _ := n.subnet()
	return s
}

// etcdLease is one lease key as etcd holds it.
type etcdLease struct {
	lease Lease
	id    int64 // etcd lease
}

// leases reads every lease from etcd, by subnet.
func leases(t *testing.T, cli *clientv3.Client) map[netip.Prefix]etcdLease {
	t.Helper()
	resp, err := cli.Get(t.Context(), testKeys.Subnets(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Prefix]etcdLease{}
	for _, kv := range resp.Kvs {
		l, err := testKeys.ParseLease(string(kv.Key), kv.Value)
		if err != nil {
			t.Fatal(err)
		}
		out[l.Subnet] = etcdLease{lease: l, id: kv.Lease}
	}
	return out
}

// Three nodes get distinct subnets, write subnet.env and install each
// other; the values in etcd are what flannel writes.
func TestNodesJoin(t *testing.T) {
	cli := startEtcd(t)
	var nodes []*testNode
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, startNode(t, cli, fmt.Sprintf("192.0.2.%d", i), ""))
	}
	subnets := map[netip.Prefix]*testNode{}
	for _, n := range nodes {
		s := n.waitReady(t)
		if subnets[s] != nil {
			t.Fatalf("subnet %s handed out twice", s)
		}
		subnets[s] = n
	}
	inEtcd := leases(t, cli)
	if len(inEtcd) != 3 {
		t.Fatalf("%d leases in etcd, want 3", len(inEtcd))
	}
	for s, n := range subnets {
		want := Lease{Subnet: s, PublicIP: n.ip, BackendType: "vxlan", VNI: 1, VtepMAC: VtepMAC(n.ip, 1)}
		if e := inEtcd[s]; e.lease != want || e.id == 0 {
			t.Errorf("etcd holds %+v for %s, want %+v on an etcd lease", e, s, want)
		}
		b, err := os.ReadFile(n.env)
		if err != nil {
			t.Fatal(err)
		}
		if want := string(SubnetEnv{Network: pfx("10.244.0.0/16"), Subnet: s, MTU: 1450}.Marshal()); string(b) != want {
			t.Errorf("subnet.env of %s: %q, want %q", n.ip, b, want)
		}
		// A node ready before the others registered learns of them
		// through its watch, a moment later.
		waitFor(t, fmt.Sprintf("node %s to install both others", n.ip), func() bool {
			_, peers := n.dp.snapshot()
			return len(peers) >= 2
		})
		local, peers := n.dp.snapshot()
		if local != s || len(peers) != 2 {
			t.Errorf("node %s: local %s, %d peers; want %s and 2", n.ip, local, len(peers), s)
		}
		waitFor(t, fmt.Sprintf("node %s to report both others installed", n.ip), func() bool { return n.Routes() == 2 })
		if !n.LeaseHeld() {
			t.Errorf("node %s holds %s but does not report a lease", n.ip, s)
		}
		for ps, pl := range peers {
			if inEtcd[ps].lease != pl || ps == s {
				t.Errorf("node %s installed %+v, etcd holds %+v", n.ip, pl, inEtcd[ps].lease)
			}
		}
	}
}

// A node restarted without its subnet.env finds its lease by PublicIP; a
// node whose subnet.env names a free subnet takes it.
func TestNodeKeepsSubnet(t *testing.T) {
	cli := startEtcd(t)
	a := startNode(t, cli, "192.0.2.1", "")
	s := a.waitReady(t)
	id := leases(t, cli)[s].id
	a.stop()
	a2 := startNode(t, cli, "192.0.2.1", filepath.Join(t.TempDir(), "subnet.env"))
	if got := a2.waitReady(t); got != s {
		t.Fatalf("restarted node got %s, had %s", got, s)
	}
	if e := leases(t, cli)[s]; e.id != id {
		t.Fatalf("restart moved the key from etcd lease %x to %x: it should keep the live one", id, e.id)
	}

	env := filepath.Join(t.TempDir(), "subnet.env")
	if err := WriteSubnetEnv(env, SubnetEnv{Network: pfx("10.244.0.0/16"), Subnet: pfx("10.244.77.0/24"), MTU: 1450}); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, cli, "192.0.2.2", env)
	if got := b.waitReady(t); got != pfx("10.244.77.0/24") {
		t.Fatalf("node with a previous subnet.env got %s, want 10.244.77.0/24", got)
	}
	// That subnet is taken now: a third node that also remembers it
	// gets another.
	c := startNode(t, cli, "192.0.2.3", env)
	if got := c.waitReady(t); got == pfx("10.244.77.0/24") || got == s {
		t.Fatalf("third node got a taken subnet %s", got)
	}
}

// A deleted lease is acquired again, the same subnet first; a lease taken
// over by another node makes this one move to a free subnet; the other
// nodes follow every change.
func TestNodeLeaseLoss(t *testing.T) {
	cli := startEtcd(t)
	a, b := startNode(t, cli, "192.0.2.1", ""), startNode(t, cli, "192.0.2.2", "")
	sa, sb := a.waitReady(t), b.waitReady(t)
	key := testKeys.Subnet(sa)

	if _, err := cli.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's lease back", func() bool { e, ok := leases(t, cli)[sa]; return ok && e.lease.PublicIP == a.ip })
	if got := a.waitReady(t); got != sa {
		t.Fatalf("after deletion a holds %s, had %s", got, sa)
	}
	b.waitReady(t)

	// An intruder takes a's key: a must move, and b must route a's new
	// subnet to a and the old one to the intruder.
	intruder := Lease{Subnet: sa, PublicIP: addr("192.0.2.99"), BackendType: "vxlan", VNI: 1, VtepMAC: VtepMAC(addr("192.0.2.99"), 1)}
	put(t, cli, key, string(intruder.Value()))
	var moved netip.Prefix
	waitFor(t, "a moved to another subnet", func() bool {
		s, ok := a.subnet()
		moved = s
		ready, _ := a.Ready()
		return ok && ready && s != sa
	})
	if local, _ := a.dp.snapshot(); local != moved {
		t.Fatalf("a's device has %s, its lease is %s", local, moved)
	}
	if got := readSubnet(t, a.env); got != moved {
		t.Fatalf("a's subnet.env says %s, its lease is %s", got, moved)
	}
	waitFor(t, "b follows", func() bool {
		_, peers := b.dp.snapshot()
		ready, _ := b.Ready()
		return ready && peers[sa] == intruder && peers[moved].PublicIP == a.ip && len(peers) == 2
	})
	waitFor(t, "a routes its old subnet to the intruder", func() bool {
		_, peers := a.dp.snapshot()
		return peers[sa] == intruder && peers[sb].PublicIP == b.ip
	})
}

func readSubnet(t *testing.T, path string) netip.Prefix {
	t.Helper()
	p, err := ReadPreviousSubnet(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A lease is renewed before it expires, on the same etcd lease; one that
// expires anyway (revoked) is acquired again.
func TestNodeRenewsLease(t *testing.T) {
	cli := startEtcd(t)
	short := func(c *NodeConfig) { c.LeaseTTL, c.RenewMargin = 3*time.Second, 2*time.Second }
	a := startNode(t, cli, "192.0.2.1", "", short)
	s := a.waitReady(t)
	id := leases(t, cli)[s].id
	time.Sleep(5 * time.Second) // longer than the TTL
	e, ok := leases(t, cli)[s]
	if !ok || e.id != id {
		t.Fatalf("after 5s with a 3s TTL: %+v, %v; want the key on etcd lease %x", e, ok, id)
	}
	if !strings.Contains(a.log.String(), "subnet lease renewed") {
		t.Fatal("no renewal logged")
	}
	if _, err := cli.Revoke(t.Context(), clientv3.LeaseID(id)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lease re-acquired", func() bool {
		e, ok := leases(t, cli)[s]
		return ok && e.id != id && e.lease.PublicIP == a.ip
	})
}

// Leases this node cannot use are skipped and logged once each; the
// node stays ready and installs the usable ones; a removed lease is
// uninstalled.
func TestNodeSkipsUnusableLeases(t *testing.T) {
	cli := startEtcd(t)
	bad := map[string]string{
		"10.244.50.0-24": `{"PublicIP":"192.0.2.50"`,
		"10.244.51.0-24": `{"PublicIP":"192.0.2.51","BackendType":"host-gw"}`,
		"10.244.52.0-24": `{"PublicIP":"192.0.2.52","BackendType":"vxlan","BackendData":{"VNI":7,"VtepMAC":"c6:d2:32:6f:8f:44"}}`,
		"10.99.53.0-24":  `{"PublicIP":"192.0.2.53","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`,
	}
	for k, v := range bad {
		put(t, cli, testKeys.Subnets()+k, v)
	}
	good := Lease{Subnet: pfx("10.244.60.0/24"), PublicIP: addr("192.0.2.60"), BackendType: "vxlan", VNI: 1, VtepMAC: VtepMAC(addr("192.0.2.60"), 1)}
	put(t, cli, testKeys.Subnet(good.Subnet), string(good.Value()))
	a := startNode(t, cli, "192.0.2.1", "")
	s := a.waitReady(t)
	if taken := []string{"10.244.50.0/24", "10.244.51.0/24", "10.244.52.0/24", "10.244.60.0/24"}; strings.Contains(strings.Join(taken, " "), s.String()) {
		t.Fatalf("node took %s, which a key already names", s)
	}
	if _, peers := a.dp.snapshot(); len(peers) != 1 || peers[good.Subnet] != good {
		t.Fatalf("installed %v, want only %v", peers, good)
	}
	// More events do not log the same bad values again.
	put(t, cli, testKeys.Subnets()+"10.244.61.0-24", string(Lease{Subnet: pfx("10.244.61.0/24"), PublicIP: addr("192.0.2.61"),
		BackendType: "vxlan", VNI: 1, VtepMAC: VtepMAC(addr("192.0.2.61"), 1)}.Value()))
	waitFor(t, "second lease installed", func() bool { _, p := a.dp.snapshot(); ready, _ := a.Ready(); return len(p) == 2 && ready })
	if _, err := cli.Delete(t.Context(), testKeys.Subnet(good.Subnet)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "removed lease uninstalled", func() bool { _, p := a.dp.snapshot(); _, ok := p[good.Subnet]; return !ok })
	for k := range bad {
		if n := strings.Count(a.log.String(), "key="+testKeys.Subnets()+k); n != 1 {
			t.Errorf("%s logged %d times, want once", k, n)
		}
	}
}

// A failing data plane keeps the node unready until a retry succeeds.
func TestNodeRetriesDataplane(t *testing.T) {
	cli := startEtcd(t)
	peer := Lease{Subnet: pfx("10.244.60.0/24"), PublicIP: addr("192.0.2.60"), BackendType: "vxlan", VNI: 1, VtepMAC: VtepMAC(addr("192.0.2.60"), 1)}
	put(t, cli, testKeys.Subnet(peer.Subnet), string(peer.Value()))
	var dp *fakeDataplane
	a := startNode(t, cli, "192.0.2.1", "", func(c *NodeConfig) {
		dp = c.Dataplane.(*fakeDataplane)
		dp.failAdd = 3
	})
	waitFor(t, "lease held", func() bool { _, ok := a.subnet(); return ok })
	// Until the three failures are used up, the node is not ready.
	for {
		dp.mu.Lock()
		left := dp.failAdd
		dp.mu.Unlock()
		ready, why := a.Ready()
		if left > 0 && ready {
			t.Fatalf("ready with %d failures to go", left)
		}
		if left == 0 {
			break
		}
		if !strings.Contains(why, "routes") && !strings.Contains(why, "subnet") && !strings.Contains(why, "listed") {
			t.Fatalf("unready for an unexpected reason: %s", why)
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.waitReady(t)
	if _, peers := dp.snapshot(); peers[peer.Subnet] != peer {
		t.Fatalf("peer not installed after the retries: %v", peers)
	}
}

// With an underlay (--underlay-cidr), a lease whose PublicIP lies outside
// it is ignored and logged once; the leases inside it are installed.
func TestNodeIgnoresLeasesOutsideUnderlay(t *testing.T) {
	cli := startEtcd(t)
	outside := Lease{Subnet: pfx("10.244.70.0/24"), PublicIP: addr("192.0.2.200"), BackendType: "vxlan", VNI: 1, VtepMAC: VtepMAC(addr("192.0.2.200"), 1)}
	inside := Lease{Subnet: pfx("10.244.71.0/24"), PublicIP: addr("192.0.2.71"), BackendType: "vxlan", VNI: 1, VtepMAC: VtepMAC(addr("192.0.2.71"), 1)}
	put(t, cli, testKeys.Subnet(outside.Subnet), string(outside.Value()))
	put(t, cli, testKeys.Subnet(inside.Subnet), string(inside.Value()))
	a := startNode(t, cli, "192.0.2.1", "", func(c *NodeConfig) {
		c.Underlay = discovery.Underlay{pfx("192.0.2.0/25")}
	})
	a.waitReady(t)
	if _, peers := a.dp.snapshot(); len(peers) != 1 || peers[inside.Subnet] != inside {
		t.Fatalf("installed %v, want only %v", peers, inside)
	}
	if n := strings.Count(a.log.String(), "key="+testKeys.Subnet(outside.Subnet)); n != 1 {
		t.Errorf("the lease outside the underlay was logged %d times, want once", n)
	}
}
