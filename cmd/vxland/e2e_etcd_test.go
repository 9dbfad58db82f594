package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// testLeaseTTL is short so that tests about dead hosts finish quickly.
const testLeaseTTL = 3 * time.Second

const etcdIP = "10.77.0.100"

var etcdEndpoint = "http://" + etcdIP + ":2379"

// startEtcdNode runs a stand-alone etcd server in its own namespace on
// the underlay, at etcdIP.
func (tp *topo) startEtcdNode() *netlab.Process { return tp.startEtcdNodeThen(nil) }

// startEtcdNodeThen is startEtcdNode that, once etcd serves and before
// its namespace is joined to the underlay, calls setup (when not nil)
// with that namespace: what setup does, nobody on the underlay sees half
// done.
func (tp *topo) startEtcdNodeThen(setup func(ns *netlab.NS)) *netlab.Process {
	tp.t.Helper()
	ns := tp.detachedNode("etcd", "pe", etcdIP)
	p := tp.runEtcd(ns)
	if setup != nil {
		setup(ns)
	}
	if err := tp.sw.SetMaster("pe", "sw0"); err != nil {
		tp.t.Fatal(err)
	}
	return p
}

// underlayNode adds a namespace name with eth0 at ip on the underlay
// switch (its port there named port), for a server that is no host.
func (tp *topo) underlayNode(name, port, ip string) *netlab.NS {
	tp.t.Helper()
	ns := tp.detachedNode(name, port, ip)
	if err := tp.sw.SetMaster(port, "sw0"); err != nil {
		tp.t.Fatal(err)
	}
	return ns
}

// detachedNode is underlayNode with the switch's port left out of the
// switch: nothing on the underlay reaches the namespace until the port
// joins sw0.
func (tp *topo) detachedNode(name, port, ip string) *netlab.NS {
	tp.t.Helper()
	ns, err := tp.lab.Namespace(name)
	if err != nil {
		tp.t.Fatal(err)
	}
	if err := tp.lab.Veth(ns, "eth0", tp.sw, port); err != nil {
		tp.t.Fatal(err)
	}
	if err := ns.Addr("eth0", ip+"/24"); err != nil {
		tp.t.Fatal(err)
	}
	return ns
}

// runEtcd runs the stand-alone etcd server in ns at etcdIP, on the data
// kept in the topology's directory (a restart keeps it), and waits until
// it serves.
func (tp *topo) runEtcd(ns *netlab.NS) *netlab.Process {
	tp.t.Helper()
	p := tp.startEtcdProcess(ns, fmt.Sprintf("%s=%s,%s:2379", etcdEnv, filepath.Join(tp.dir, "etcd"), etcdIP))
	tp.waitEtcdReady(p)
	return p
}

// startEtcdProcess starts the test binary as an etcd server in ns, with
// env saying which.
func (tp *topo) startEtcdProcess(ns *netlab.NS, env ...string) *netlab.Process {
	tp.t.Helper()
	cmd := ns.Command(tp.exe)
	cmd.Env = append(cmd.Environ(), env...)
	p, err := ns.StartCmd(cmd)
	if err != nil {
		tp.t.Fatal(err)
	}
	return p
}

// waitEtcdReady waits until the etcd server p serves clients.
func (tp *topo) waitEtcdReady(p *netlab.Process) {
	tp.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.Output(), "etcd ready") {
		select {
		case <-p.Done():
			tp.t.Fatalf("etcd exited: %v\n%s", p.Wait(), p.Output())
		default:
		}
		if time.Now().After(deadline) {
			tp.t.Fatalf("etcd not ready within 60s:\n%s", p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// etcdFlags are the flags of a host that discovers its peers through etcd.
func etcdFlags(endpoint string) []string {
	return []string{"--etcd-endpoints", endpoint, "--lease-ttl", testLeaseTTL.String()}
}

func (tp *topo) fdb(h *testHost) control.FDBState {
	tp.t.Helper()
	var f control.FDBState
	tp.get(h, "/fdb", &f)
	return f
}

// floodList returns the VTEP addresses of h's flood list, sorted.
func (tp *topo) floodList(h *testHost) []string {
	var out []string
	for _, fl := range tp.fdb(h).Flood {
		for _, v := range fl.VTEPs {
			out = append(out, v.Addr().String())
		}
	}
	slices.Sort(out)
	return out
}

// waitFor polls cond every 10ms until it holds or d passes, and returns
// how long it took.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// quietContainer is addContainer with IPv6 off, so that the container
// sends nothing (router solicitations, MLD) unless a test makes it.
func (tp *topo) quietContainer(h *testHost) *testContainer {
	tp.t.Helper()
	c := tp.addContainer(h)
	c.ns.MustRun(tp.t, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6")
	return c
}

func othersOf(tp *topo, h *testHost) []string {
	var out []string
	for _, o := range tp.hosts {
		if o != h {
			out = append(out, o.ip)
		}
	}
	slices.Sort(out)
	return out
}

// Discovery through etcd, no --peer; the
// first host runs the embedded etcd.
func TestEtcdThreeHostsDiscover(t *testing.T) {
	tp := newTopo(t, 42)
	for range 3 {
		tp.addHost()
	}
	h1 := tp.hosts[0]
	ep := "http://" + h1.ip + ":2379"
	tp.start(h1, nil, append(etcdFlags(ep), "--embedded-etcd", filepath.Join(tp.dir, "etcd"),
		"--embedded-etcd-listen", h1.ip+":2379")...)
	for _, h := range tp.hosts[1:] {
		tp.start(h, nil, etcdFlags(ep)...)
	}
	for _, h := range tp.hosts {
		waitFor(t, 10*time.Second, h.ns.Name+" sees the other hosts", func() bool {
			return slices.Equal(tp.floodList(h), othersOf(tp, h))
		})
	}
	var all []*testContainer
	for _, h := range tp.hosts {
		all = append(all, tp.addContainer(h), tp.addContainer(h))
	}
	ctx := testCtx(t, 60*time.Second)
	for _, a := range all {
		for _, b := range all {
			if a != b {
				if err := netlab.Reach(ctx, a.ns, b.ns, b.ip); err != nil {
					t.Errorf("%s -> %s: %v", a.ns, b.ns, err)
				}
			}
		}
	}
	// Every host learned every remote container from etcd.
	for _, h := range tp.hosts {
		var want []string
		for _, o := range tp.hosts {
			if o == h {
				continue
			}
			for _, c := range o.ctrs {
				mac, err := c.ns.HardwareAddr("eth0")
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, mac.String()+"@"+o.ip)
			}
		}
		waitFor(t, 5*time.Second, h.ns.Name+" has every remote container's MAC from etcd", func() bool {
			have := map[string]bool{}
			for _, e := range tp.fdb(h).Entries {
				if e.Origin == fdb.OriginRemote.String() {
					have[e.MAC+"@"+e.VTEP.Addr().String()] = true
				}
			}
			for _, w := range want {
				if !have[w] {
					return false
				}
			}
			return true
		})
	}
}

// reachDeadline bounds a wait for a change through etcd to reach the
// data plane: a failure, not a measure; the time taken is logged.
const reachDeadline = 20 * time.Second

// reachWithin reports how long it took until a TCP connection from from
// to ip in to succeeded, trying a fresh connection every 100 ms so that a
// lost SYN costs 100 ms, not TCP's 1 s retransmission timeout.
func reachWithin(from, to *testContainer, d time.Duration) (time.Duration, error) {
	var ln net.Listener
	if err := to.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp4", to.ip+":0")
		return err
	}); err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	start := time.Now()
	var last error
	for time.Since(start) < d {
		err := from.ns.Do(func() error {
			c, err := net.DialTimeout("tcp4", ln.Addr().String(), 100*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return time.Since(start), nil
		}
		last = err
	}
	return 0, fmt.Errorf("%s -> %s not reachable within %s: %w", from.ns, ln.Addr(), d, last)
}

// newEtcdTopo builds n hosts that run vxland against a stand-alone etcd
// node on the underlay, with no --peer.
func newEtcdTopo(t *testing.T, n int) (*topo, *netlab.Process) {
	t.Helper()
	tp := newTopo(t, 42)
	etcd := tp.startEtcdNode()
	for range n {
		tp.addHost()
	}
	for _, h := range tp.hosts {
		tp.start(h, nil, etcdFlags(etcdEndpoint)...)
	}
	return tp, etcd
}

// A killed host disappears within the
// lease TTL + 2 s, a restarted one is reachable within 2 s; convergence
// is measured.
func TestEtcdHostDeathAndRestart(t *testing.T) {
	tp, _ := newEtcdTopo(t, 3)
	h1, h2, h3 := tp.hosts[0], tp.hosts[1], tp.hosts[2]
	c1, c3 := tp.addContainer(h1), tp.addContainer(h3)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.Reach(ctx, c1.ns, c3.ns, c3.ip); err != nil {
		t.Fatal(err)
	}
	mentions := func(h *testHost, ip string) bool {
		f := tp.fdb(h)
		for _, fl := range f.Flood {
			for _, v := range fl.VTEPs {
				if v.Addr().String() == ip {
					return true
				}
			}
		}
		for _, e := range f.Entries {
			if e.VTEP.Addr().String() == ip {
				return true
			}
		}
		return false
	}
	waitFor(t, 5*time.Second, "h1 knows h3's container", func() bool { return mentions(h1, h3.ip) })

	if err := h3.proc.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-h3.proc.Done()
	gone := waitFor(t, testLeaseTTL+2*time.Second, "h3 gone from h1 and h2", func() bool {
		return !mentions(h1, h3.ip) && !mentions(h2, h3.ip)
	})
	t.Logf("killed host gone from the others' FDB and flood list after %s (lease TTL %s)", gone.Round(time.Millisecond), testLeaseTTL)

	// Restart: reachable again once it is up; how long it took is logged,
	// not asserted (a loaded machine's etcd takes seconds to write).
	tp.start(h3, nil, etcdFlags(etcdEndpoint)...)
	took, err := reachWithin(c1, c3, reachDeadline)
	if err != nil {
		t.Fatalf("restarted host: %v", err)
	}
	t.Logf("restarted host reachable %s after it came up", took.Round(time.Millisecond))

	// Convergence: a new host's registration reaches every other host.
	h4 := tp.addHost()
	tp.start(h4, nil, etcdFlags(etcdEndpoint)...)
	registered := time.Now()
	conv := waitFor(t, 5*time.Second, "every host has h4", func() bool {
		for _, h := range tp.hosts[:3] {
			if !mentions(h, h4.ip) {
				return false
			}
		}
		return true
	})
	t.Logf("convergence: new host's registration seen by all %d others within %s (polled every 10ms, from its control socket answering at %s)",
		3, conv.Round(time.Millisecond), registered.Format("15:04:05.000"))
}

// pacedTransfer sends n bytes from c in from to a listener in to, in
// 32 KB chunks every interval, and checks they arrive intact.
func pacedTransfer(ctx context.Context, from, to *testContainer, port, n int, interval time.Duration) error {
	var ln net.Listener
	if err := to.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", to.ip, port))
		return err
	}); err != nil {
		return err
	}
	defer ln.Close()
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i*7 + i>>10)
	}
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		buf, err := io.ReadAll(c)
		if err == nil && !slices.Equal(buf, data) {
			err = fmt.Errorf("received %d bytes, not what was sent (%d bytes)", len(buf), n)
		}
		got <- err
	}()
	conn, err := from.ns.Dial(ctx, "tcp4", fmt.Sprintf("%s:%d", to.ip, port))
	if err != nil {
		return err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for off := 0; off < n; off += 32 << 10 {
		select {
		case <-ctx.Done():
			conn.Close()
			return ctx.Err()
		case <-tick.C:
		}
		if _, err := conn.Write(data[off:min(off+32<<10, n)]); err != nil {
			conn.Close()
			return err
		}
	}
	conn.(*net.TCPConn).CloseWrite()
	defer conn.Close()
	select {
	case err := <-got:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// etcdClient connects to etcd from inside ns: every connection is dialled
// on a thread in that namespace.
func etcdClient(t *testing.T, ns *netlab.NS, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return ns.Dial(ctx, "tcp", addr)
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// checkFDBMatchesEtcd asserts that h's flood list holds exactly the other
// registered VTEPs and its remote entries exactly the other hosts' MACs.
func checkFDBMatchesEtcd(tp *topo, cli *clientv3.Client, h *testHost) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys := discovery.NewKeys(discovery.DefaultPrefix, uint32(tp.vni))
	resp, err := cli.Get(ctx, keys.Prefix(), clientv3.WithPrefix())
	if err != nil {
		return err
	}
	var members, macs []string
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		switch {
		case strings.Contains(k, "/vtep/"):
			var m discovery.Member
			if err := json.Unmarshal(kv.Value, &m); err != nil {
				return err
			}
			if m.Addr.String() != h.ip {
				members = append(members, m.Addr.String())
			}
		case strings.Contains(k, "/mac/"):
			var r discovery.MACRecord
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return err
			}
			if r.VTEP.String() != h.ip {
				macs = append(macs, r.MAC+"@"+r.VTEP.String())
			}
		}
	}
	var remote []string
	for _, e := range tp.fdb(h).Entries {
		if e.Origin == fdb.OriginRemote.String() {
			remote = append(remote, e.MAC+"@"+e.VTEP.Addr().String())
		}
	}
	slices.Sort(members)
	slices.Sort(macs)
	slices.Sort(remote)
	if flood := tp.floodList(h); !slices.Equal(flood, members) {
		return fmt.Errorf("%s: flood list %v, etcd members %v", h.ns, flood, members)
	}
	if !slices.Equal(remote, macs) {
		return fmt.Errorf("%s: remote FDB entries %v, etcd MACs %v", h.ns, remote, macs)
	}
	return nil
}

// Etcd paused for longer than the lease TTL.
func TestEtcdOutage(t *testing.T) {
	tp, etcd := newEtcdTopo(t, 3)
	c1, c2 := tp.addContainer(tp.hosts[0]), tp.addContainer(tp.hosts[1])
	tp.addContainer(tp.hosts[2])
	ctx := testCtx(t, 90*time.Second)
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}

	// A transfer of ~10 s runs across a pause of TTL + 2 s.
	done := make(chan error, 1)
	go func() { done <- pacedTransfer(ctx, c1, c2, 6000, 8<<20, 40*time.Millisecond) }()
	time.Sleep(time.Second)
	if err := etcd.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(testLeaseTTL + 2*time.Second)
	if err := etcd.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("transfer across the etcd outage: %v", err)
	}

	// Every host re-registered, and each FDB equals what etcd holds.
	cli := etcdClient(t, tp.hosts[0].ns, etcdEndpoint)
	for _, h := range tp.hosts {
		var last error
		waitFor(t, 15*time.Second, h.ns.Name+"'s FDB equals etcd", func() bool {
			last = checkFDBMatchesEtcd(tp, cli, h)
			return last == nil
		})
		_ = last
	}
	resp, err := cli.Get(ctx, discovery.NewKeys(discovery.DefaultPrefix, 42).Prefix()+"vtep/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != len(tp.hosts) {
		t.Fatalf("%d hosts registered after the outage, want %d", len(resp.Kvs), len(tp.hosts))
	}
}

// sendGARP makes c announce itself with a gratuitous ARP, as a container
// runtime does for a new interface.
func sendGARP(c *testContainer, mac net.HardwareAddr) error {
	ip := netip.MustParseAddr(c.ip).As4()
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], 0x0806)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], 0x0800)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], 1)
	copy(a[8:14], mac)
	copy(a[14:18], ip[:])
	copy(a[24:28], ip[:])
	return c.ns.SendFrames("eth0", [][]byte{f})
}

// A MAC moves from one host to another.
func TestEtcdMACMove(t *testing.T) {
	tp, _ := newEtcdTopo(t, 3)
	h1, h2, h3 := tp.hosts[0], tp.hosts[1], tp.hosts[2]
	c1, c2 := tp.quietContainer(h1), tp.quietContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}
	mac, err := c2.ns.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	owner := func(h *testHost) string {
		for _, e := range tp.fdb(h).Entries {
			if e.MAC == mac.String() && e.Origin == fdb.OriginRemote.String() {
				return e.VTEP.Addr().String()
			}
		}
		return ""
	}
	waitFor(t, 5*time.Second, "h1 has c2's MAC behind h2", func() bool { return owner(h1) == h2.ip })

	// Re-create the container behind h3 with the same MAC and address.
	c2.ns.MustRun(t, "ip", "link", "del", "eth0")
	moved := tp.quietContainer(h3)
	moved.ns.MustRun(t, "ip", "link", "set", "eth0", "down")
	moved.ns.MustRun(t, "ip", "link", "set", "eth0", "address", mac.String())
	moved.ns.MustRun(t, "ip", "addr", "flush", "dev", "eth0")
	moved.ns.MustRun(t, "ip", "addr", "add", c2.ip+"/24", "dev", "eth0")
	moved.ns.MustRun(t, "ip", "link", "set", "eth0", "up")
	moved.ip = c2.ip
	if err := sendGARP(moved, mac); err != nil {
		t.Fatal(err)
	}
	took, err := reachWithin(c1, moved, reachDeadline)
	if err != nil {
		for _, h := range tp.hosts {
			t.Logf("%s fdb %+v\nstats %+v", h.ns, tp.fdb(h), tp.stats(h))
			t.Logf("%s bridge fdb:\n%s", h.ns, h.ns.MustRun(t, "bridge", "fdb", "show", "br", "br0"))
		}
		t.Logf("c1 neigh: %s", c1.ns.MustRun(t, "ip", "neigh"))
		t.Logf("moved neigh: %s", moved.ns.MustRun(t, "ip", "neigh"))
		t.Logf("moved addr: %s", moved.ns.MustRun(t, "ip", "addr"))
		t.Fatalf("moved MAC: %v", err)
	}
	t.Logf("moved MAC reachable at its new place %s after the container announced itself", took.Round(time.Millisecond))
	if o := owner(h1); o != h3.ip {
		t.Fatalf("h1's FDB has the moved MAC behind %q, want %s", o, h3.ip)
	}
}

// ARP for a published IP is answered on the
// local host and never crosses the underlay.
func TestEtcdARPSuppression(t *testing.T) {
	tp, _ := newEtcdTopo(t, 2)
	h1, h2 := tp.hosts[0], tp.hosts[1]
	// The hosts' bridges and TAPs send no IPv6 (router solicitations,
	// MLD reports) either: a frame vxland floods must be an ARP request.
	for _, h := range tp.hosts {
		for _, conf := range []string{"all", "default"} {
			if err := h.ns.SetSysctl("net.ipv6.conf."+conf+".disable_ipv6", "1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	c1, c2 := tp.quietContainer(h1), tp.quietContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	// c2 talks first, so its ARP tells h2 its address, which h2 publishes.
	if err := netlab.Reach(ctx, c2.ns, c1.ns, c1.ip); err != nil {
		t.Fatal(err)
	}
	mac2, err := c2.ns.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "h1 has c2 from etcd", func() bool {
		for _, e := range tp.fdb(h1).Entries {
			if e.MAC == mac2.String() && e.Origin == fdb.OriginRemote.String() {
				return true
			}
		}
		return false
	})

	c1.ns.MustRun(t, "ip", "neigh", "flush", "dev", "eth0")
	b1, b2 := tp.stats(h1), tp.stats(h2)
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}
	a1, a2 := tp.stats(h1), tp.stats(h2)
	if a1.ARPAnswered <= b1.ARPAnswered {
		t.Fatalf("h1 answered no ARP request locally (arp_answered %d -> %d)", b1.ARPAnswered, a1.ARPAnswered)
	}
	if a1.ARPFlooded != b1.ARPFlooded || a1.TxFlooded != b1.TxFlooded {
		t.Fatalf("an ARP request crossed the underlay: arp_flooded %d -> %d, tx_flooded %d -> %d",
			b1.ARPFlooded, a1.ARPFlooded, b1.TxFlooded, a1.TxFlooded)
	}
	if a2.ARPAnswered != b2.ARPAnswered {
		t.Fatalf("h2 answered an ARP it should never have seen")
	}
	neigh := c1.ns.MustRun(t, "ip", "neigh", "show", c2.ip, "dev", "eth0")
	if !strings.Contains(neigh, "lladdr "+mac2.String()) {
		t.Fatalf("c1 resolved %s to %q, want %s", c2.ip, neigh, mac2)
	}
}
