package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/metrics/metricstest"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// The real host's topology. Two hosts joined by one veth: "vx" runs the
// vxland under test, "kp" the kernel's own VXLAN device, whose control
// plane a bench agent plays (registration and its container's MAC). Each
// has a container on its bridge. All of it lives in network namespaces
// that the bench creates and deletes; nothing touches the root
// namespace.
//
// etcd is reached through a proxy: the bench listens on loopback inside
// vx, one port per member, and forwards each connection to the member
// through the agents' meter, so that the bench's cuts and holds (the
// killed leader, the compaction) reach the real vxland as they reach the
// agents.
var (
	realVTEP   = netip.MustParseAddr("10.77.0.1")
	kernelVTEP = netip.MustParseAddr("10.77.0.2")
	// The containers' MACs have 0xff in their third byte, so that no
	// stand-in takes them for one of the bench's event slots.
	realContainerMAC   = fdb.MAC{0x02, 0x00, 0xff, 0, 0, 1}
	kernelContainerMAC = fdb.MAC{0x02, 0x00, 0xff, 0, 0, 2}
	realContainerIP    = netip.MustParseAddr("10.200.0.1")
	kernelContainerIP  = netip.MustParseAddr("10.200.0.2")
)

const (
	realMTU       = 1450
	realMetrics   = "127.0.0.1:8473" // inside vx
	realStartWait = 15 * time.Second
)

// RealHost is what a real vxland measured among the simulated hosts.
type RealHost struct {
	// RemoteMACs is how many MACs behind other VTEPs etcd held when it
	// started; Join from its start until its FDB held them all.
	RemoteMACs int
	Join       time.Duration
	// LastMAC is from the kernel peer's container MAC handed to its
	// agent, after all the others, until vxland's FDB had it; Ping the
	// round trips from the container behind vxland to that one, through
	// vxland and the kernel's VXLAN.
	LastMAC time.Duration
	Ping    netlab.PingStats
	// RSS and HeapInuse after it joined and forwarded (VmRSS, and
	// go_memstats_heap_inuse_bytes from its metrics); HWM is VmHWM at the
	// end of the run, the peak over every phase.
	RSS, HWM, HeapInuse int64
	// Anon and File split RSS: the daemon's private memory, and the
	// pages of its executable it has touched (shared with the page
	// cache, given back under memory pressure).
	Anon, File int64
	// Relist is from the release of the compaction's cut until its watch
	// had listed again past the compaction (0 if it did not within
	// Options.Wait); FDBMismatch says how its FDB differed from etcd after
	// it, empty when equal.
	Relist      time.Duration
	FDBMismatch string
}

// realHost is the running topology.
type realHost struct {
	lab      *netlab.Lab
	vx       *netlab.NS
	c1       *netlab.NS
	proc     *netlab.Process
	sock     string
	kernel   *host // the kernel peer's agent
	proxies  []net.Listener
	proxying sync.WaitGroup
	http     *http.Client
	res      *RealHost
}

// startRealHost builds the topology and the etcd proxies; vxland itself
// starts in joinRealHost.
func (b *runner) startRealHost(ctx context.Context) (err error) {
	if err := netlab.Check(); err != nil {
		return fmt.Errorf("a real vxland host: %w", err)
	}
	lab, err := netlab.New("vxcb")
	if err != nil {
		return err
	}
	r := &realHost{lab: lab, sock: filepath.Join(b.o.Dir, "vxland.sock"), res: &RealHost{}}
	b.real = r
	vx, err := lab.Namespace("vx")
	if err != nil {
		return err
	}
	kp, err := lab.Namespace("kp")
	if err != nil {
		return err
	}
	r.vx = vx
	if err := lab.Veth(vx, "eth0", kp, "eth0"); err != nil {
		return err
	}
	for _, h := range []struct {
		ns   *netlab.NS
		addr netip.Addr
	}{{vx, realVTEP}, {kp, kernelVTEP}} {
		if err := h.ns.Addr("eth0", h.addr.String()+"/24"); err != nil {
			return err
		}
		if err := h.ns.Bridge("br0"); err != nil {
			return err
		}
	}
	for _, step := range [][]string{
		{"ip", "link", "add", "vx0", "type", "vxlan", "id", strconv.Itoa(benchVNI),
			"dstport", strconv.Itoa(benchPort), "local", kernelVTEP.String(), "dev", "eth0"},
		{"ip", "link", "set", "vx0", "mtu", strconv.Itoa(realMTU), "master", "br0", "up"},
		{"bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", realVTEP.String()},
	} {
		if _, err := kp.Run(step...); err != nil {
			return err
		}
	}
	if r.c1, err = container(lab, vx, "v1", "c1", realContainerMAC, realContainerIP); err != nil {
		return err
	}
	if _, err = container(lab, kp, "v2", "c2", kernelContainerMAC, kernelContainerIP); err != nil {
		return err
	}
	for _, ep := range b.cluster.Endpoints() {
		var ln net.Listener
		if err := vx.Do(func() (err error) {
			ln, err = net.Listen("tcp", "127.0.0.1:0")
			return err
		}); err != nil {
			return err
		}
		r.proxies = append(r.proxies, ln)
		r.proxying.Go(func() { b.proxy(ctx, ln, strings.TrimPrefix(ep, "http://")) })
	}
	r.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return vx.Dial(ctx, network, addr)
		},
	}}
	r.kernel, err = b.newHost(ctx, kernelVTEP, "kernel-peer", &standIn{clock: b.clock})
	return err
}

// container adds a container to br0 of host, quiet (no IPv6) and with a
// MAC of the bench's choosing.
func container(lab *netlab.Lab, host *netlab.NS, hostIf, name string, mac fdb.MAC, ip netip.Addr) (*netlab.NS, error) {
	c, err := lab.Container(host, "br0", hostIf, name, ip.String()+"/24", realMTU)
	if err != nil {
		return nil, err
	}
	if err := c.SetSysctl("net.ipv6.conf.all.disable_ipv6", "1"); err != nil {
		return nil, err
	}
	_, err = c.Run("ip", "link", "set", "eth0", "address", mac.String())
	return c, err
}

// proxy forwards the connections accepted on ln to etcd at addr until ln
// is closed.
func (b *runner) proxy(ctx context.Context, ln net.Listener, addr string) {
	for {
		down, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer down.Close()
			up, err := b.meter.dial(ctx, addr)
			if err != nil {
				return
			}
			defer up.Close()
			// Either side ending ends both: a cut upstream is a reset
			// connection for vxland too.
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, down); done <- struct{}{} }()
			go func() { _, _ = io.Copy(down, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// joinRealHost starts vxland once etcd holds every simulated host's MACs,
// waits until its FDB holds them all, then publishes the kernel peer's
// container MAC, last, and pings that container from the one behind
// vxland.
func (b *runner) joinRealHost(ctx context.Context, res *Result) error {
	r := b.real
	res.Real = r.res
	_, macs, err := b.etcdState(ctx)
	if err != nil {
		return err
	}
	for _, vtep := range macs {
		if vtep != realVTEP {
			r.res.RemoteMACs++
		}
	}
	var endpoints []string
	for _, ln := range r.proxies {
		endpoints = append(endpoints, "http://"+ln.Addr().String())
	}
	start := time.Now()
	r.proc, err = r.vx.Start(b.o.Vxland, "--vni", strconv.Itoa(benchVNI), "--port", strconv.Itoa(benchPort),
		"--local-ip", realVTEP.String(), "--bridge", "br0", "--tap", "vxtap0", "--mtu", strconv.Itoa(realMTU),
		"--control-socket", r.sock, "--metrics-listen", realMetrics,
		"--etcd-endpoints", strings.Join(endpoints, ","), "--lease-ttl", "10s", "--log-level", "warn")
	if err != nil {
		return err
	}
	if err := b.waitReal(ctx, realStartWait+b.o.Wait, "vxland's FDB holds every remote MAC", func(m metricstest.Families) bool {
		n, _ := m.Value("vxland_fdb_entries", "origin", "remote")
		return int(n) >= r.res.RemoteMACs
	}); err != nil {
		return err
	}
	r.res.Join = time.Since(start)

	start = time.Now()
	r.kernel.local.Observe(kernelContainerMAC, kernelContainerIP)
	if err := b.waitReal(ctx, b.o.Wait, "vxland's FDB has the last MAC", func(m metricstest.Families) bool {
		n, _ := m.Value("vxland_fdb_entries", "origin", "remote")
		return int(n) >= r.res.RemoteMACs+1
	}); err != nil {
		return err
	}
	r.res.LastMAC = time.Since(start)
	if r.res.FDBMismatch, err = b.realMismatch(ctx); err != nil {
		return err
	}
	if r.res.FDBMismatch != "" {
		return fmt.Errorf("vxland's FDB after it joined: %s", r.res.FDBMismatch)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if r.res.Ping, err = netlab.Ping(pingCtx, r.c1, kernelContainerIP.String(), 5); err != nil {
		return fmt.Errorf("the container behind vxland to the one behind the kernel's VXLAN, whose MAC was published last: %w", err)
	}
	m, err := r.scrape(ctx)
	if err != nil {
		return err
	}
	heap, _ := m.Value("go_memstats_heap_inuse_bytes")
	r.res.HeapInuse = int64(heap)
	r.res.RSS, _, err = r.proc.Memory()
	if err == nil {
		r.res.Anon, r.res.File, err = r.proc.Resident()
	}
	return err
}

// relistMark is what the real vxland's watch had done before a compaction.
type relistMark struct{ relists float64 }

func (b *runner) markRealRelist(ctx context.Context) (relistMark, error) {
	if b.real == nil {
		return relistMark{}, nil
	}
	m, err := b.real.scrape(ctx)
	if err != nil {
		return relistMark{}, err
	}
	n, _ := m.Value("vxland_etcd_relists_total")
	return relistMark{relists: n}, nil
}

// awaitRealRelist waits until the real vxland listed etcd again after
// mark and its watch is past rev, and compares its FDB with etcd.
func (b *runner) awaitRealRelist(ctx context.Context, mark relistMark, rev int64, start time.Time) error {
	r := b.real
	if r == nil {
		return nil
	}
	err := b.waitReal(ctx, b.o.Wait, "vxland re-listed", func(m metricstest.Families) bool {
		n, _ := m.Value("vxland_etcd_relists_total")
		w, _ := m.Value("vxland_etcd_watch_revision")
		return n > mark.relists && int64(w) >= rev
	})
	if err == nil {
		r.res.Relist = time.Since(start)
	} else if !errors.Is(err, errNotConverged) {
		return err
	}
	if r.res.FDBMismatch, err = b.realMismatch(ctx); err != nil {
		return err
	}
	_, r.res.HWM, err = r.proc.Memory()
	return err
}

// waitReal is wait for a condition on the real vxland's metrics, bounded
// by d; it fails at once should vxland exit.
func (b *runner) waitReal(ctx context.Context, d time.Duration, what string, cond func(metricstest.Families) bool) error {
	r := b.real
	deadline := time.Now().Add(d)
	for {
		m, err := r.scrape(ctx)
		if err == nil && cond(m) {
			return nil
		}
		select {
		case <-r.proc.Done():
			return fmt.Errorf("vxland exited: %v\n%s", r.proc.Wait(), r.proc.Output())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.o.Progress("%s: not within %s (last scrape error: %v)", what, d, err)
			return fmt.Errorf("%s: %w within %s", what, errNotConverged, d)
		}
	}
}

// scrape reads the real vxland's metrics.
func (r *realHost) scrape(ctx context.Context) (metricstest.Families, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+realMetrics+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("vxland metrics: %s", resp.Status)
	}
	return metricstest.Parse(resp.Body)
}

// realMismatch compares the real vxland's FDB, from its control socket,
// with etcd's MACs behind other VTEPs; "" when equal.
func (b *runner) realMismatch(ctx context.Context) (string, error) {
	_, macs, err := b.etcdState(ctx)
	if err != nil {
		return "", err
	}
	getCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var st control.FDBState
	if err := control.Get(getCtx, b.real.sock, "/fdb", &st); err != nil {
		return "", err
	}
	have := make(map[string]netip.Addr)
	for _, e := range st.Entries {
		if e.Origin == fdb.OriginRemote.String() {
			have[e.MAC] = e.VTEP.Addr()
		}
	}
	want := 0
	for mac, vtep := range macs {
		if vtep == realVTEP {
			continue
		}
		want++
		if have[mac.String()] != vtep {
			return fmt.Sprintf("MAC %s: FDB has %v, etcd %s", mac, have[mac.String()], vtep), nil
		}
	}
	if len(have) != want {
		return fmt.Sprintf("%d MACs from etcd in the FDB, etcd has %d behind other VTEPs", len(have), want), nil
	}
	return "", nil
}

// close stops vxland and the kernel peer's agent, deletes the
// namespaces and stops the proxies.
func (r *realHost) close() {
	if r.kernel != nil {
		r.kernel.stop()
	}
	_ = r.lab.Close()
	for _, ln := range r.proxies {
		ln.Close()
	}
	r.proxying.Wait()
}
