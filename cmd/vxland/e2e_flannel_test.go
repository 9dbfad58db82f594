package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// The flannel network every test writes, as an operator would with
// etcdctl put /coreos.com/network/config.
const flannelNetworkConfig = `{"Network": "10.244.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan"}}`

// flannelLab is a topo with an etcd node that holds a flannel network.
type flannelLab struct {
	*topo
	cli   *clientv3.Client
	nodes []*flannelNode
}

// flannelNode is a host of the flannel network: a vxland node, or one set
// up exactly as flannel sets up its kernel vxlan device.
type flannelNode struct {
	*testHost
	envFile string
	healthz string // --healthz-listen, "" if none
	nPods   int
	pods    []*testContainer
	bridge  bool // cni0 exists
}

func newFlannelLab(t *testing.T, writeConfig bool) *flannelLab {
	tp := newTopo(t, 1)
	etcd := tp.startEtcdNode()
	fl := &flannelLab{topo: tp, cli: etcdClient(t, etcd.NS, etcdEndpoint)}
	if writeConfig {
		fl.writeConfig()
	}
	return fl
}

func (fl *flannelLab) writeConfig() {
	fl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := fl.cli.Put(ctx, "/coreos.com/network/config", flannelNetworkConfig); err != nil {
		fl.t.Fatal(err)
	}
}

func (fl *flannelLab) addNode() *flannelNode {
	h := fl.addHost()
	n := &flannelNode{testHost: h, envFile: filepath.Join(fl.dir, h.ns.Name+"-subnet.env")}
	h.ns.MustRun(fl.t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	fl.nodes = append(fl.nodes, n)
	return n
}

// start runs vxland --mode=flannel on n and waits until its control socket
// answers /healthz (not /readyz: a node waits for the network config).
func (fl *flannelLab) start(n *flannelNode, extra ...string) {
	fl.t.Helper()
	args := []string{"--mode=flannel", "--etcd-endpoints", etcdEndpoint, "--local-ip", n.ip,
		"--control-socket", n.sock, "--subnet-file", n.envFile, "--log-level", "debug"}
	if n.healthz != "" {
		args = append(args, "--healthz-listen", n.healthz)
	}
	p, err := n.ns.StartCmd(fl.daemonCmd(n.ns, append(args, extra...)...))
	if err != nil {
		fl.t.Fatal(err)
	}
	n.proc = p
	fl.t.Cleanup(func() {
		if fl.t.Failed() {
			fl.t.Logf("vxland on %s:\n%s", n.ns, p.Output())
		}
	})
	waitFor(fl.t, 15*time.Second, "vxland on "+n.ns.Name+" answers /healthz", func() bool {
		select {
		case <-p.Done():
			fl.t.Fatalf("vxland on %s exited: %v\n%s", n.ns, p.Wait(), p.Output())
		default:
		}
		code, _, err := getUnix(n.sock, "/healthz")
		return err == nil && code == http.StatusOK
	})
}

func (fl *flannelLab) waitReady(n *flannelNode) {
	fl.t.Helper()
	var last string
	d := waitFor(fl.t, 20*time.Second, "vxland on "+n.ns.Name+" ready", func() bool {
		code, body, err := getUnix(n.sock, "/readyz")
		last = fmt.Sprint(code, " ", body, " ", err)
		return err == nil && code == http.StatusOK
	})
	fl.t.Logf("%s ready after %s (last answer: %s)", n.ns.Name, d.Round(time.Millisecond), strings.TrimSpace(last))
}

// getUnix fetches path from a daemon's control socket.
func getUnix(sock, path string) (int, string, error) {
	return httpGet(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}, path)
}

// getTCP fetches path from addr, dialled from inside ns.
func getTCP(ns *netlab.NS, addr, path string) (int, string, error) {
	return httpGet(func(ctx context.Context) (net.Conn, error) {
		return ns.Dial(ctx, "tcp", addr)
	}, path)
}

func httpGet(dial func(context.Context) (net.Conn, error), path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dial(ctx)
	}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://vxland"+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), err
}

// subnetEnv reads n's subnet.env into a map.
func (n *flannelNode) subnetEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(n.envFile)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			t.Fatalf("%s: line %q is not KEY=VALUE", n.envFile, line)
		}
		env[k] = v
	}
	return env
}

// subnet is n's subnet as its subnet.env says.
func (n *flannelNode) subnet(t *testing.T) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(n.subnetEnv(t)["FLANNEL_SUBNET"])
	if err != nil {
		t.Fatalf("%s: FLANNEL_SUBNET: %v", n.envFile, err)
	}
	return p.Masked()
}

// addPod attaches a pod to n's cni0 bridge with the next address of the
// subnet and a default route via the bridge, as the flannel CNI plugin
// (through the bridge plugin) would.
func (fl *flannelLab) addPod(n *flannelNode, subnet netip.Prefix) *testContainer {
	fl.t.Helper()
	gw := subnet.Addr().Next()
	if !n.bridge {
		if err := n.ns.Bridge("cni0"); err != nil {
			fl.t.Fatal(err)
		}
		if err := n.ns.Addr("cni0", netip.PrefixFrom(gw, subnet.Bits()).String()); err != nil {
			fl.t.Fatal(err)
		}
		n.bridge = true
	}
	fl.nextIP++
	n.nPods++
	ip := gw
	for range 9 + n.nPods {
		ip = ip.Next()
	}
	c := &testContainer{ip: ip.String()}
	ns, err := fl.lab.Container(n.ns, "cni0", fmt.Sprintf("veth%d", fl.nextIP), fmt.Sprintf("pod%d", fl.nextIP),
		netip.PrefixFrom(ip, subnet.Bits()).String(), 1450)
	if err != nil {
		fl.t.Fatal(err)
	}
	ns.MustRun(fl.t, "ip", "route", "add", "default", "via", gw.String())
	c.ns = ns
	n.pods = append(n.pods, c)
	return c
}

// etcdLease is a lease as flannel writes it, read back for the test.
type etcdLease struct {
	PublicIP    string
	BackendType string
	BackendData struct {
		VNI     int
		VtepMAC string
	}
}

// leases returns the leases in etcd by subnet.
func (fl *flannelLab) leases() map[netip.Prefix]etcdLease {
	fl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := fl.cli.Get(ctx, "/coreos.com/network/subnets/", clientv3.WithPrefix())
	if err != nil {
		fl.t.Fatal(err)
	}
	out := map[netip.Prefix]etcdLease{}
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), "/coreos.com/network/subnets/")
		p, err := netip.ParsePrefix(strings.Replace(name, "-", "/", 1))
		if err != nil {
			fl.t.Fatalf("lease key %s: %v", kv.Key, err)
		}
		var l etcdLease
		if err := json.Unmarshal(kv.Value, &l); err != nil {
			fl.t.Fatalf("lease %s: %v", kv.Key, err)
		}
		out[p] = l
	}
	return out
}

// checkProgrammed asserts that n's kernel has, for each other subnet, the
// permanent neighbour and the onlink route flannel installs.
func checkProgrammed(t *testing.T, n *flannelNode, others map[netip.Prefix]etcdLease) error {
	routes := n.ns.MustRun(t, "ip", "-4", "route", "show", "dev", "flannel.1")
	neigh := n.ns.MustRun(t, "ip", "-4", "neigh", "show", "dev", "flannel.1")
	for s, l := range others {
		if r := fmt.Sprintf("%s via %s onlink", s, s.Addr()); !strings.Contains(routes, r) {
			return fmt.Errorf("%s: no route %q in:\n%s", n.ns, r, routes)
		}
		if e := fmt.Sprintf("%s lladdr %s PERMANENT", s.Addr(), l.BackendData.VtepMAC); !strings.Contains(neigh, e) {
			return fmt.Errorf("%s: no neighbour %q in:\n%s", n.ns, e, neigh)
		}
	}
	return nil
}

// waitProgrammed is checkProgrammed until it passes, for 5 s at most:
// readiness covers the leases a node has seen, and the others' may still
// be on their way through its watch.
func waitProgrammed(t *testing.T, n *flannelNode, others map[netip.Prefix]etcdLease) error {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := checkProgrammed(t, n, others)
		if err == nil || time.Now().After(deadline) {
			if err != nil {
				err = fmt.Errorf("not within 5s: %w", err)
			}
			return err
		}
	}
}

func without(m map[netip.Prefix]etcdLease, s netip.Prefix) map[netip.Prefix]etcdLease {
	out := map[netip.Prefix]etcdLease{}
	for k, v := range m {
		if k != s {
			out[k] = v
		}
	}
	return out
}

// Three vxland nodes join a flannel network.
func TestFlannelThreeNodes(t *testing.T) {
	fl := newFlannelLab(t, false)
	n1 := fl.addNode()
	n1.healthz = n1.ip + ":8471"
	fl.start(n1)
	// Alive but not ready while the network config is missing.
	if code, body, err := getUnix(n1.sock, "/readyz"); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before the network config exists: %d %q %v, want 503", code, body, err)
	}
	if code, _, err := getTCP(n1.ns, n1.healthz, "/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz on --healthz-listen: %d %v, want 200", code, err)
	}
	if _, err := os.Stat(n1.envFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("subnet.env exists before the node has a lease: %v", err)
	}
	fl.writeConfig()
	for range 2 {
		fl.start(fl.addNode())
	}
	for _, n := range fl.nodes {
		fl.waitReady(n)
	}
	if code, _, err := getTCP(n1.ns, n1.healthz, "/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("/readyz on --healthz-listen: %d %v, want 200", code, err)
	}

	leases := fl.leases()
	if len(leases) != 3 {
		t.Fatalf("%d leases in etcd, want 3: %v", len(leases), leases)
	}
	network := netip.MustParsePrefix("10.244.0.0/16")
	seen := map[netip.Prefix]bool{}
	for _, n := range fl.nodes {
		env := n.subnetEnv(t)
		s := n.subnet(t)
		want := map[string]string{
			"FLANNEL_NETWORK": "10.244.0.0/16",
			"FLANNEL_SUBNET":  netip.PrefixFrom(s.Addr().Next(), 24).String(),
			"FLANNEL_MTU":     "1450",
			"FLANNEL_IPMASQ":  "false",
		}
		if fmt.Sprint(env) != fmt.Sprint(want) || s.Bits() != 24 || !network.Contains(s.Addr()) || s.Addr() == network.Addr() {
			t.Errorf("%s: subnet.env %v, want %v in %s, not its first /24", n.ns, env, want, network)
		}
		if seen[s] {
			t.Errorf("subnet %s handed out twice", s)
		}
		seen[s] = true
		mac, err := n.ns.HardwareAddr("flannel.1")
		if err != nil {
			t.Fatal(err)
		}
		l, ok := leases[s]
		if !ok || l.PublicIP != n.ip || l.BackendType != "vxlan" || l.BackendData.VNI != 1 || l.BackendData.VtepMAC != mac.String() {
			t.Errorf("%s: lease of %s is %+v, want PublicIP %s, vxlan, VNI 1, VtepMAC %s", n.ns, s, l, n.ip, mac)
		}
		link := n.ns.MustRun(t, "ip", "-4", "addr", "show", "dev", "flannel.1")
		if !strings.Contains(link, "mtu 1450 ") || !strings.Contains(link, "inet "+s.Addr().String()+"/32 ") {
			t.Errorf("%s: flannel.1 should hold %s/32 with MTU 1450:\n%s", n.ns, s.Addr(), link)
		}
		if err := waitProgrammed(t, n, without(leases, s)); err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}

	for _, n := range fl.nodes {
		fl.addPod(n, n.subnet(t))
	}
	ctx := testCtx(t, 60*time.Second)
	for _, a := range fl.nodes {
		for _, b := range fl.nodes {
			if a != b {
				if err := netlab.Reach(ctx, a.pods[0].ns, b.pods[0].ns, b.pods[0].ip); err != nil {
					t.Errorf("pod on %s -> pod on %s: %v", a.ns, b.ns, err)
				}
			}
		}
	}
	if err := netlab.TCPTransfer(ctx, fl.nodes[0].pods[0].ns, fl.nodes[2].pods[0].ns, fl.nodes[2].pods[0].ip+":5001", 4<<20); err != nil {
		t.Fatal(err)
	}
	// Nothing is flooded in flannel mode: every frame had a destination.
	for _, n := range fl.nodes {
		s := fl.stats(n.testHost)
		if s.TxFlooded != 0 || s.TxPackets == 0 {
			t.Errorf("%s: tx_flooded %d, tx_packets %d: want no floods and some traffic", n.ns, s.TxFlooded, s.TxPackets)
		}
	}
}

// A node restarted keeps its subnet and its
// MAC; a node whose lease key is deleted acquires one again.
// newFlannelPair returns a flannel network of two ready vxland nodes
// with a pod each.
func newFlannelPair(t *testing.T) (fl *flannelLab, n1, n2 *flannelNode, p1, p2 *testContainer) {
	t.Helper()
	fl = newFlannelLab(t, true)
	n1, n2 = fl.addNode(), fl.addNode()
	for _, n := range fl.nodes {
		fl.start(n)
		fl.waitReady(n)
	}
	return fl, n1, n2, fl.addPod(n1, n1.subnet(t)), fl.addPod(n2, n2.subnet(t))
}

func TestFlannelRestartAndLeaseLoss(t *testing.T) {
	fl, n1, n2, p1, p2 := newFlannelPair(t)
	s2 := n2.subnet(t)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.Reach(ctx, p1.ns, p2.ns, p2.ip); err != nil {
		t.Fatal(err)
	}
	mac, err := n2.ns.HardwareAddr("flannel.1")
	if err != nil {
		t.Fatal(err)
	}

	// Restart without subnet.env: only the lease of its PublicIP in etcd
	// can give it the same subnet back.
	n2.proc.Stop(5 * time.Second)
	if err := os.Remove(n2.envFile); err != nil {
		t.Fatal(err)
	}
	fl.start(n2)
	fl.waitReady(n2)
	if got := n2.subnet(t); got != s2 {
		t.Fatalf("restarted node has subnet %s, had %s", got, s2)
	}
	mac2, err := n2.ns.HardwareAddr("flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	if mac2.String() != mac.String() || fl.leases()[s2].BackendData.VtepMAC != mac.String() {
		t.Fatalf("restarted node's VTEP MAC is %s (etcd: %s), was %s", mac2, fl.leases()[s2].BackendData.VtepMAC, mac)
	}
	if err := netlab.Reach(ctx, p1.ns, p2.ns, p2.ip); err != nil {
		t.Fatalf("after restart: %v", err)
	}

	// Lease key deleted: n2 acquires one again (the same subnet, which is
	// free), and n1 removes and re-installs its route.
	key := "/coreos.com/network/subnets/" + strings.Replace(s2.String(), "/", "-", 1)
	resp, err := fl.cli.Delete(ctx, key)
	if err != nil || resp.Deleted != 1 {
		t.Fatalf("deleting %s: %v, %d deleted", key, err, resp.Deleted)
	}
	took := waitFor(t, 10*time.Second, "n2's lease back in etcd", func() bool {
		l, ok := fl.leases()[s2]
		return ok && l.PublicIP == n2.ip && l.BackendData.VtepMAC == mac.String()
	})
	t.Logf("deleted lease re-acquired after %s", took.Round(time.Millisecond))
	// The key hangs on a live etcd lease again.
	g, err := fl.cli.Get(ctx, key)
	if err != nil || len(g.Kvs) != 1 || g.Kvs[0].Lease == 0 {
		t.Fatalf("re-acquired key %s: %v %v, want one key on an etcd lease", key, err, g)
	}
	for _, n := range fl.nodes {
		fl.waitReady(n)
	}
	if err := waitProgrammed(t, n1, map[netip.Prefix]etcdLease{s2: fl.leases()[s2]}); err != nil {
		t.Fatal(err)
	}
	if err := netlab.Reach(ctx, p1.ns, p2.ns, p2.ip); err != nil {
		t.Fatalf("after lease re-acquisition: %v", err)
	}
	if err := netlab.Reach(ctx, p2.ns, p1.ns, p1.ip); err != nil {
		t.Fatalf("after lease re-acquisition: %v", err)
	}
}

// kernelFlannelNode sets n up exactly as flannel sets up a node with its
// kernel vxlan backend, with subnet as its lease, which it writes to etcd
// on an etcd lease of 24 h.
func (fl *flannelLab) kernelFlannelNode(n *flannelNode, subnet netip.Prefix) {
	t := fl.t
	t.Helper()
	n.ns.MustRun(t, "ip", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "local", n.ip, "dev", "eth0",
		"dstport", "8472", "nolearning")
	n.ns.MustRun(t, "ip", "link", "set", "flannel.1", "mtu", "1450")
	n.ns.MustRun(t, "ip", "addr", "add", subnet.Addr().String()+"/32", "dev", "flannel.1")
	n.ns.MustRun(t, "ip", "link", "set", "flannel.1", "up")
	mac, err := n.ns.HardwareAddr("flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := fl.cli.Grant(ctx, int64((24 * time.Hour).Seconds()))
	if err != nil {
		t.Fatal(err)
	}
	key := "/coreos.com/network/subnets/" + strings.Replace(subnet.String(), "/", "-", 1)
	value := fmt.Sprintf(`{"PublicIP":%q,"PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":%q}}`, n.ip, mac)
	resp, err := fl.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, value, clientv3.WithLease(g.ID))).Commit()
	if err != nil || !resp.Succeeded {
		t.Fatalf("writing the kernel node's lease: %v, %v", err, resp)
	}
}

// kernelFlannelAddPeer installs, on a kernel flannel node, what flannel
// installs for another node's lease, in flannel's order.
func kernelFlannelAddPeer(t *testing.T, n *flannelNode, s netip.Prefix, l etcdLease) {
	t.Helper()
	n.ns.MustRun(t, "ip", "neigh", "replace", s.Addr().String(), "lladdr", l.BackendData.VtepMAC, "dev", "flannel.1", "nud", "permanent")
	n.ns.MustRun(t, "bridge", "fdb", "append", l.BackendData.VtepMAC, "dev", "flannel.1", "dst", l.PublicIP, "self", "permanent")
	n.ns.MustRun(t, "ip", "route", "replace", s.String(), "via", s.Addr().String(), "dev", "flannel.1", "onlink")
}

// A node running flannel's kernel vxlan
// backend and vxland nodes share the network.
func TestFlannelKernelInterop(t *testing.T) {
	fl := newFlannelLab(t, true)
	kn := fl.addNode()
	ks := netip.MustParsePrefix("10.244.200.0/24")
	fl.kernelFlannelNode(kn, ks)
	v1, v2 := fl.addNode(), fl.addNode()
	for _, n := range []*flannelNode{v1, v2} {
		fl.start(n)
		fl.waitReady(n)
	}
	leases := fl.leases()
	if len(leases) != 3 {
		t.Fatalf("%d leases, want 3: %v", len(leases), leases)
	}
	// The vxland nodes programmed their side from the kernel node's lease.
	kmac, err := kn.ns.HardwareAddr("flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*flannelNode{v1, v2} {
		if err := waitProgrammed(t, n, without(leases, n.subnet(t))); err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, e := range fl.fdb(n.testHost).Entries {
			if e.MAC == kmac.String() && e.VTEP == netip.MustParseAddrPort(kn.ip+":8472") && e.Origin == fdb.OriginRemote.String() {
				found = true
			}
		}
		if !found {
			t.Fatalf("%s: no FDB entry %s -> %s:8472 from the kernel node's lease: %+v", n.ns, kmac, kn.ip, fl.fdb(n.testHost))
		}
	}
	for s, l := range without(leases, ks) {
		kernelFlannelAddPeer(t, kn, s, l)
	}

	kp := fl.addPod(kn, ks)
	p1, p2 := fl.addPod(v1, v1.subnet(t)), fl.addPod(v2, v2.subnet(t))
	ctx := testCtx(t, 60*time.Second)
	for _, pr := range [][2]*testContainer{{kp, p1}, {p1, kp}, {kp, p2}, {p2, kp}} {
		if err := netlab.Reach(ctx, pr[0].ns, pr[1].ns, pr[1].ip); err != nil {
			t.Errorf("%s -> %s: %v", pr[0].ns, pr[1].ns, err)
		}
	}
	if t.Failed() {
		return
	}
	if err := netlab.TCPTransfer(ctx, kp.ns, p1.ns, p1.ip+":5001", 4<<20); err != nil {
		t.Fatalf("kernel node's pod -> vxland node's pod: %v", err)
	}
	if err := netlab.TCPTransfer(ctx, p1.ns, kp.ns, kp.ip+":5002", 4<<20); err != nil {
		t.Fatalf("vxland node's pod -> kernel node's pod: %v", err)
	}
	// A forwarding thread adds a batch's bytes to its counters after the
	// batch is written, so the last batch may show a moment after the
	// transfer completed.
	s := fl.stats(v1.testHost)
	crossed := func() bool { return s.RxBytes >= 4<<20 && s.TxBytes >= 4<<20 }
	for deadline := time.Now().Add(5 * time.Second); !crossed() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		s = fl.stats(v1.testHost)
	}
	t.Logf("%s after the transfers: rx %d bytes, tx %d bytes, checksums completed %d, segmented %d, drops %v",
		v1.ns, s.RxBytes, s.TxBytes, s.RxChecksumCompleted, s.RxSegmented, nonZero(s.Drops))
	if !crossed() {
		t.Fatalf("the transfers did not cross vxland on %s: %+v", v1.ns, s)
	}
}

func TestFlannelFlags(t *testing.T) {
	const ep = "http://192.0.2.1:2379"
	c, err := parse([]string{"--mode=flannel", "--etcd-endpoints", ep}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != modeFlannel || c.EtcdPrefix != "/coreos.com/network" || c.TAP != "" || c.SubnetFile != "/run/flannel/subnet.env" ||
		c.ControlSocket != "/run/vxland/flannel.sock" || c.HealthzListen != "" || c.PublicIP.IsValid() {
		t.Fatalf("flannel defaults: %+v", c)
	}
	c, err = parse([]string{"--mode=flannel", "--etcd-endpoints", ep, "--public-ip", "192.0.2.7", "--tap", "fl0",
		"--healthz-listen", "127.0.0.1:8471", "--subnet-file", "/tmp/x.env"}, map[string]string{"VXLAND_ETCD_PREFIX": "/mine"})
	if err != nil {
		t.Fatal(err)
	}
	if c.EtcdPrefix != "/mine" || c.TAP != "fl0" || c.PublicIP != netip.MustParseAddr("192.0.2.7") ||
		c.HealthzListen != "127.0.0.1:8471" || c.SubnetFile != "/tmp/x.env" {
		t.Fatalf("flannel flags not applied: %+v", c)
	}
	if c, err := parse(nil, nil); err != nil || c.Mode != modeL2 || c.EtcdPrefix != "/vxland" {
		t.Fatalf("l2 stays the default: %+v, %v", c, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode=bridge"}, "--mode"},
		{[]string{"--mode=flannel"}, "--etcd-endpoints"},
		{[]string{"--mode=flannel", "--etcd-endpoints", ep, "--vni", "5"}, "--vni"},
		{[]string{"--mode=flannel", "--etcd-endpoints", ep, "--port", "4789"}, "--port"},
		{[]string{"--mode=flannel", "--etcd-endpoints", ep, "--peer", "192.0.2.2"}, "--peer"},
		{[]string{"--mode=flannel", "--etcd-endpoints", ep, "--bridge", "br0"}, "--bridge"},
		{[]string{"--mode=flannel", "--etcd-endpoints", ep, "--tap-mtu", "1500"}, "--tap-mtu"},
		{[]string{"--mode=flannel", "--etcd-endpoints", ep, "--embedded-etcd", "/tmp/e"}, "--embedded-etcd"},
		{[]string{"--mode=flannel", "--etcd-endpoints", ep, "--public-ip", "host"}, "--public-ip"},
		{[]string{"--mode=flannel", "--etcd-endpoints", ep, "--public-ip", "2001:db8::1"}, "--public-ip"},
		{[]string{"--mode=flannel", "--etcd-endpoints", ep, "--local-ip", "2001:db8::1"}, "--local-ip"},
		{[]string{"--mode=flannel", "--etcd-endpoints", ep, "--healthz-listen", "8471"}, "--healthz-listen"},
		{[]string{"--mode=flannel", "--etcd-endpoints", ep, "--subnet-file", ""}, "--subnet-file"},
		{[]string{"--public-ip", "192.0.2.7"}, "--public-ip"},
		{[]string{"--healthz-listen", "127.0.0.1:1"}, "--healthz-listen"},
	} {
		_, err := parse(tc.args, nil)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want a usage error naming %s", tc.args, err, tc.want)
		}
	}
	// The daemon says so in one line and exits 2.
	var stderr strings.Builder
	if code := run([]string{"--mode=flannel"}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--etcd-endpoints") ||
		strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}
