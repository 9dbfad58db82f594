package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/internal/metrics/metricstest"
	"github.com/vxland/vxland/internal/netlab"
)

// metricsPort is where the tests' daemons serve metrics, on the host's
// underlay address inside its namespace.
const metricsPort = "8473"

func metricsAddr(h *testHost) string { return net.JoinHostPort(h.ip, metricsPort) }

// scrape reads h's /metrics from inside h's namespace and parses it with
// Prometheus' text parser.
func scrape(t *testing.T, h *testHost) metricstest.Families {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return h.ns.Dial(ctx, network, addr)
	}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr(h)+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("scraping %s: %v", h.ns, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s", h.ns, resp.Status)
	}
	f, err := metricstest.Parse(resp.Body)
	if err != nil {
		t.Fatalf("scraping %s: %v", h.ns, err)
	}
	return f
}

// value is one sample of a scrape, which must be there.
func value(t *testing.T, f metricstest.Families, name string, labels ...string) float64 {
	t.Helper()
	v, ok := f.Value(name, labels...)
	if !ok {
		t.Fatalf("no sample %s%v", name, labels)
	}
	return v
}

// checkProbes checks /healthz and the /readyz status on the control
// socket and, when addr is not "", on the TCP listener at addr in ns.
func checkProbes(t *testing.T, sock string, ns *netlab.NS, addr string, readyz int) string {
	t.Helper()
	type get func(path string) (int, string, error)
	gets := map[string]get{"control socket": func(p string) (int, string, error) { return getUnix(sock, p) }}
	if addr != "" {
		gets[addr] = func(p string) (int, string, error) { return getTCP(ns, addr, p) }
	}
	var body string
	for where, g := range gets {
		if code, _, err := g("/healthz"); err != nil || code != http.StatusOK {
			t.Errorf("/healthz on %s: %d %v, want 200", where, code, err)
		}
		code, b, err := g("/readyz")
		if err != nil || code != readyz {
			t.Errorf("/readyz on %s: %d %q %v, want %d", where, code, b, err, readyz)
		}
		body = b
	}
	return body
}

// Metrics scraped from two running daemons follow the traffic: pings and
// a TCP transfer raise the packet and byte counters by at least what was
// sent, a frame with a wrong VNI from a known peer raises
// drops{reason="vni_mismatch"} by exactly one, and the FDB, the flood
// list, the queues and the build are there. Both probes answer ready.
func TestMetricsFollowTraffic(t *testing.T) {
	tp := newTopo(t, 42)
	h1, h2 := tp.addHost(), tp.addHost()
	tp.start(h1, []string{h2.ip}, "--metrics-listen", metricsAddr(h1), "--queues", "2")
	tp.start(h2, []string{h1.ip}, "--metrics-listen", metricsAddr(h2), "--queues", "2")
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*testHost{h1, h2} {
		if body := checkProbes(t, h.sock, h.ns, metricsAddr(h), http.StatusOK); !strings.Contains(body, "[+]tap ok") || !strings.Contains(body, "[+]underlay ok") {
			t.Errorf("/readyz on %s: %q, want the TAP and the underlay checked", h.ns, body)
		}
	}

	vni := []string{"vni", "42"}
	b1, b2 := scrape(t, h1), scrape(t, h2)
	const pings = 20
	if _, err := netlab.Ping(ctx, c1.ns, c2.ip, pings); err != nil {
		t.Fatal(err)
	}
	a1, a2 := scrape(t, h1), scrape(t, h2)
	grew := func(before, after metricstest.Families, name string, labels ...string) float64 {
		return value(t, after, name, labels...) - value(t, before, name, labels...)
	}
	for _, c := range []struct {
		h             *testHost
		before, after metricstest.Families
		name          string
	}{
		{h1, b1, a1, "vxland_tx_packets_total"}, // requests out
		{h2, b2, a2, "vxland_rx_packets_total"}, // requests in
		{h2, b2, a2, "vxland_tx_packets_total"}, // replies out
		{h1, b1, a1, "vxland_rx_packets_total"}, // replies in
	} {
		if d := grew(c.before, c.after, c.name, vni...); d < pings {
			t.Errorf("%s on %s grew by %v after %d pings, want at least %d", c.name, c.h.ns, d, pings, pings)
		}
	}

	const size = 1 << 20
	b1, b2 = a1, a2
	if err := netlab.TCPTransfer(ctx, c1.ns, c2.ns, c2.ip+":5001", size); err != nil {
		t.Fatal(err)
	}
	a1, a2 = scrape(t, h1), scrape(t, h2)
	if d := grew(b1, a1, "vxland_tx_bytes_total", vni...); d < size {
		t.Errorf("h1 tx bytes grew by %v over a %d-byte transfer", d, size)
	}
	if d := grew(b2, a2, "vxland_rx_bytes_total", vni...); d < size {
		t.Errorf("h2 rx bytes grew by %v over a %d-byte transfer", d, size)
	}

	// A datagram for VNI 43 from h1's address, a known peer of h2.
	reason := []string{"vni", "42", "reason", "vni_mismatch"}
	before := value(t, a2, "vxland_drops_total", reason...)
	pkt := make([]byte, encap.HeaderLen+60)
	if err := encap.Encode(pkt, 43); err != nil {
		t.Fatal(err)
	}
	if err := sendUDP(h1.ns, h1.ip, h2.ip+":4789", pkt); err != nil {
		t.Fatal(err)
	}
	var after metricstest.Families
	waitFor(t, 10*time.Second, "the wrong VNI counted", func() bool {
		after = scrape(t, h2)
		return value(t, after, "vxland_drops_total", reason...) > before
	})
	if d := value(t, after, "vxland_drops_total", reason...) - before; d != 1 {
		t.Errorf("drops{reason=vni_mismatch} grew by %v, want 1", d)
	}

	// Tables, queues, build.
	if v := value(t, after, "vxland_flood_vteps", vni...); v != 1 {
		t.Errorf("h2 flood list has %v VTEPs, want 1", v)
	}
	if v := value(t, after, "vxland_known_vteps"); v != 1 {
		t.Errorf("h2 knows %v VTEPs, want 1", v)
	}
	if v := value(t, after, "vxland_fdb_entries", "vni", "42", "origin", "learned"); v < 1 {
		t.Errorf("h2 has %v learned FDB entries, want c1's MAC at least", v)
	}
	var queues float64
	for _, l := range after.Labels("vxland_queue_rx_packets_total") {
		queues += value(t, after, "vxland_queue_rx_packets_total", "queue", l["queue"])
	}
	if len(after.Labels("vxland_queue_rx_packets_total")) != 2 || queues != value(t, after, "vxland_rx_packets_total", vni...) {
		t.Errorf("per-queue rx %v over %d queues, total %v: want 2 queues that sum to the total",
			queues, len(after.Labels("vxland_queue_rx_packets_total")), value(t, after, "vxland_rx_packets_total", vni...))
	}
	if v := value(t, after, "vxland_build_info", "version", versionString()); v != 1 {
		t.Errorf("vxland_build_info{version=%q} = %v", versionString(), v)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := after[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}

	// A TAP taken off its bridge is put back (the readiness check that
	// fails meanwhile is tested in overlay/hostnet, TestCheckTAP): the
	// repair is counted, and the daemon is ready again.
	h2.ns.MustRun(t, "ip", "link", "set", "vxtap0", "nomaster")
	waitFor(t, 15*time.Second, "h2 heals its TAP", func() bool {
		v, ok := scrape(t, h2).Value("vxland_host_setup_heals_total")
		return ok && v >= 1
	})
	if body := checkProbes(t, h2.sock, h2.ns, metricsAddr(h2), http.StatusOK); !strings.Contains(body, "[+]tap ok") {
		t.Errorf("/readyz after the heal: %q", body)
	}
}

// A daemon whose etcd does not answer is alive but not ready, on the
// control socket and the metrics listener, and says why; it becomes
// ready once etcd answers and the FDB is filled from it.
func TestReadyzWaitsForEtcd(t *testing.T) {
	tp := newTopo(t, 42)
	etcd := tp.startEtcdNode()
	if err := etcd.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Cmd.Process.Signal(syscall.SIGCONT) })
	h := tp.addHost()
	tp.start(h, nil, append(etcdFlags(etcdEndpoint), "--metrics-listen", metricsAddr(h))...)

	body := checkProbes(t, h.sock, h.ns, metricsAddr(h), http.StatusServiceUnavailable)
	if !strings.Contains(body, "[-]etcd") || !strings.Contains(body, "[+]tap ok") {
		t.Errorf("/readyz while etcd is paused: %q, want etcd named as what is missing", body)
	}
	if v := value(t, scrape(t, h), "vxland_etcd_synced"); v != 0 {
		t.Errorf("vxland_etcd_synced = %v while etcd is paused", v)
	}

	if err := etcd.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "ready once etcd answers", func() bool {
		code, _, err := getUnix(h.sock, "/readyz")
		return err == nil && code == http.StatusOK
	})
	checkProbes(t, h.sock, h.ns, metricsAddr(h), http.StatusOK)
	var f metricstest.Families
	waitFor(t, 10*time.Second, "registered in etcd", func() bool {
		f = scrape(t, h)
		return value(t, f, "vxland_etcd_connected") == 1
	})
	if v := value(t, f, "vxland_etcd_synced"); v != 1 {
		t.Errorf("vxland_etcd_synced = %v once ready", v)
	}
	if v := value(t, f, "vxland_etcd_lease_ttl_seconds"); v <= 0 || v > testLeaseTTL.Seconds() {
		t.Errorf("lease TTL left %vs, want within the TTL of %s", v, testLeaseTTL)
	}
	if v := value(t, f, "vxland_etcd_watch_revision"); v <= 0 {
		t.Errorf("watch revision %v", v)
	}
}

// In flannel mode the metrics listener serves the probes too, ready only
// once the node is, and the node's lease and routes.
func TestFlannelMetrics(t *testing.T) {
	fl := newFlannelLab(t, false)
	n1, n2 := fl.addNode(), fl.addNode()
	fl.start(n1, "--metrics-listen", metricsAddr(n1.testHost))
	body := checkProbes(t, n1.sock, n1.ns, metricsAddr(n1.testHost), http.StatusServiceUnavailable)
	if !strings.Contains(body, "[-]flannel") || !strings.Contains(body, "[-]tap") {
		t.Errorf("/readyz before the network config: %q, want the TAP and the flannel node not ready", body)
	}
	fl.writeConfig()
	fl.start(n2, "--metrics-listen", metricsAddr(n2.testHost))
	for _, n := range []*flannelNode{n1, n2} {
		// A node is ready once it routes every other lease: n1 was ready
		// alone, and is not again until it routes n2's new one.
		var f metricstest.Families
		waitFor(t, 10*time.Second, n.ns.Name+" routes the other node", func() bool {
			f = scrape(t, n.testHost)
			v, ok := f.Value("vxland_flannel_routes")
			return ok && v == 1
		})
		fl.waitReady(n)
		checkProbes(t, n.sock, n.ns, metricsAddr(n.testHost), http.StatusOK)
		if v := value(t, f, "vxland_flannel_lease_held"); v != 1 {
			t.Errorf("%s: lease held %v", n.ns, v)
		}
		if v := value(t, f, "vxland_known_vteps"); v != 1 {
			t.Errorf("%s: %v known VTEPs, want the other node", n.ns, v)
		}
		if _, ok := f.Value("vxland_rx_packets_total", "vni", "1"); !ok {
			t.Errorf("%s: no data plane counters for VNI 1", n.ns)
		}
	}
}

// --version prints the version linked in, or "devel" without one, and
// exits 0; VXLAND_VERSION in the environment does not make a daemon print
// it.
func TestVersion(t *testing.T) {
	var out, errOut strings.Builder
	if code := run([]string{"--version"}, &out, &errOut); code != 0 || out.String() != "vxland "+versionString()+"\n" {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	if !strings.HasPrefix(versionString(), "devel") {
		t.Errorf("a test binary, built without -X main.version, says %q", versionString())
	}
	defer func(v string) { version = v }(version)
	version = "v1.2.3-4-gabcdef0"
	out.Reset()
	if code := run([]string{"--version"}, &out, &errOut); code != 0 || out.String() != fmt.Sprintf("vxland %s\n", version) {
		t.Fatalf("--version with a linked-in version: exit %d, stdout %q", code, out.String())
	}
	for _, v := range []string{"true", "not-a-bool"} {
		if _, err := parse(nil, map[string]string{"VXLAND_VERSION": v}); err != nil {
			t.Errorf("VXLAND_VERSION=%s: %v, want the daemon's configuration", v, err)
		}
	}
}
