package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/tap"
)

// topo is an underlay switch (a bridge in its own namespace) with hosts on
// it; each host has a bridge br0 with containers on it.
type topo struct {
	t      *testing.T
	lab    *netlab.Lab
	sw     *netlab.NS
	dir    string
	hosts  []*testHost
	exe    string
	vni    int
	mtu    int
	nextIP int
	ipv6   bool // underlay on IPv6 (fd77::N/64) instead of 10.77.0.N/24
}

type testHost struct {
	ns   *netlab.NS
	ip   string // underlay address
	sock string // control socket
	proc *netlab.Process
	ctrs []*testContainer
}

type testContainer struct {
	ns *netlab.NS
	ip string
}

func newTopo(t *testing.T, vni int) *topo {
	t.Helper()
	lab := netlab.NewForTest(t)
	sw, err := lab.Namespace("sw")
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Bridge("sw0"); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &topo{t: t, lab: lab, sw: sw, dir: t.TempDir(), exe: exe, vni: vni, mtu: 1450}
}

// addHost adds host i (1-based) with underlay address 10.77.0.i on the
// switch.
func (tp *topo) addHost() *testHost {
	tp.t.Helper()
	i := len(tp.hosts) + 1
	ns, err := tp.lab.Namespace(fmt.Sprintf("h%d", i))
	if err != nil {
		tp.t.Fatal(err)
	}
	port := fmt.Sprintf("p%d", i)
	if err := tp.lab.Veth(ns, "eth0", tp.sw, port); err != nil {
		tp.t.Fatal(err)
	}
	if err := tp.sw.SetMaster(port, "sw0"); err != nil {
		tp.t.Fatal(err)
	}
	h := &testHost{ns: ns, ip: fmt.Sprintf("10.77.0.%d", i), sock: filepath.Join(tp.dir, fmt.Sprintf("h%d.sock", i))}
	cidr := h.ip + "/24"
	if tp.ipv6 {
		h.ip = fmt.Sprintf("fd77::%d", i)
		cidr = h.ip + "/64"
	}
	if err := ns.Addr("eth0", cidr); err != nil {
		tp.t.Fatal(err)
	}
	tp.hosts = append(tp.hosts, h)
	return h
}

// daemonCmd returns the command that runs vxland in ns.
func (tp *topo) daemonCmd(ns *netlab.NS, args ...string) *exec.Cmd {
	cmd := ns.Command(append([]string{tp.exe}, args...)...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	return cmd
}

// start runs vxland on h with the given peers and extra flags and waits
// until its control socket answers.
func (tp *topo) start(h *testHost, peers []string, extra ...string) {
	tp.t.Helper()
	args := []string{"--vni", fmt.Sprint(tp.vni), "--local-ip", h.ip, "--bridge", "br0", "--tap", "vxtap0",
		"--control-socket", h.sock, "--log-level", "debug"}
	for _, p := range peers {
		args = append(args, "--peer", p)
	}
	tp.launch(h, tp.daemonCmd(h.ns, append(args, extra...)...))
}

// launch runs cmd, a vxland made by daemonCmd, on h and waits until its
// control socket answers.
func (tp *topo) launch(h *testHost, cmd *exec.Cmd) {
	tp.t.Helper()
	p, err := h.ns.StartCmd(cmd)
	if err != nil {
		tp.t.Fatal(err)
	}
	h.proc = p
	tp.t.Cleanup(func() {
		if tp.t.Failed() {
			tp.t.Logf("vxland on %s:\n%s", h.ns, p.Output())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		var s overlay.Stats
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := control.Get(ctx, h.sock, "/stats", &s)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-p.Done():
			tp.t.Fatalf("vxland on %s exited: %v\n%s", h.ns, p.Wait(), p.Output())
		default:
		}
		if time.Now().After(deadline) {
			tp.t.Fatalf("vxland on %s did not come up: %v\n%s", h.ns, err, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startAll starts vxland on every host with every other host as a peer.
func (tp *topo) startAll(extra ...string) {
	for _, h := range tp.hosts {
		var peers []string
		for _, o := range tp.hosts {
			if o != h {
				peers = append(peers, o.ip)
			}
		}
		tp.start(h, peers, extra...)
	}
}

// addContainer attaches a container with overlay address 10.200.0.N to h's
// bridge br0.
func (tp *topo) addContainer(h *testHost) *testContainer {
	tp.t.Helper()
	tp.nextIP++
	n := tp.nextIP
	c := &testContainer{ip: fmt.Sprintf("10.200.0.%d", 10+n)}
	ns, err := tp.lab.Container(h.ns, "br0", fmt.Sprintf("vc%d", n), fmt.Sprintf("c%d", n), c.ip+"/24", tp.mtu)
	if err != nil {
		tp.t.Fatal(err)
	}
	c.ns = ns
	h.ctrs = append(h.ctrs, c)
	return c
}

func (tp *topo) stats(h *testHost) overlay.Stats {
	tp.t.Helper()
	var s overlay.Stats
	tp.get(h, "/stats", &s)
	return s
}

// get fetches endpoint from h's control socket into v.
func (tp *topo) get(h *testHost, endpoint string, v any) {
	tp.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := control.Get(ctx, h.sock, endpoint, v); err != nil {
		tp.t.Fatal(err)
	}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

const tenMB = 10 << 20

// Two hosts carry TCP and answer ARP across the overlay.
// Every offload set runs with the default queues (one per CPU); the fast
// path runs with a single queue too, which is served by the same code,
// and with forwarding threads that poll before they sleep.
func TestTwoHostsTCPAndARP(t *testing.T) {
	for _, flags := range [][]string{
		{"--offload=all"}, {"--offload=none"}, {"--offload=gso,gro,batch"}, {"--offload=tso"},
		{"--offload=all", "--queues=1"}, {"--offload=all", "--poll=200us"},
	} {
		t.Run(strings.Join(flags, ","), func(t *testing.T) { testTwoHosts(t, flags...) })
	}
}

func testTwoHosts(t *testing.T, flags ...string) {
	tp := newTopo(t, 42)
	h1, h2 := tp.addHost(), tp.addHost()
	tp.startAll(flags...)
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	ctx := testCtx(t, 90*time.Second)

	if err := netlab.TCPTransfer(ctx, c1.ns, c2.ns, c2.ip+":5001", tenMB); err != nil {
		t.Fatalf("c1 -> c2: %v", err)
	}
	if err := netlab.TCPTransfer(ctx, c2.ns, c1.ns, c1.ip+":5002", tenMB); err != nil {
		t.Fatalf("c2 -> c1: %v", err)
	}
	// ARP resolved across the overlay: c1 knows c2's real MAC.
	mac2, err := c2.ns.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	neigh := c1.ns.MustRun(t, "ip", "neigh", "show", c2.ip, "dev", "eth0")
	if !strings.Contains(neigh, "lladdr "+mac2.String()) {
		t.Fatalf("c1's neighbour entry for %s is %q, want lladdr %s", c2.ip, neigh, mac2)
	}
	s1, s2 := tp.stats(h1), tp.stats(h2)
	if s1.TxBytes < tenMB || s2.RxBytes < tenMB {
		t.Fatalf("counters do not show the transfer: h1 %+v, h2 %+v", s1, s2)
	}
}

// UDP bursts of every size cross the overlay whole and in order,
// with the fast path's UDP coalescing (USO) on the receiving TAP.
func TestTwoHostsUDPBursts(t *testing.T) {
	tp := newTopo(t, 44)
	h1, h2 := tp.addHost(), tp.addHost()
	tp.startAll()
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}
	udpBursts(t, c1, c2)
	udpBursts(t, c2, c1)
}

// udpBursts sends bursts of UDP datagrams from one container to another,
// in runs of equal sizes up to the largest that fits the MTU (1450 - 28),
// and checks that every one arrives whole and in order.
func udpBursts(t *testing.T, from, to *testContainer) {
	t.Helper()
	var rx *net.UDPConn
	if err := to.ns.Do(func() error {
		var err error
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(to.ip), Port: 6000})
		if err == nil {
			err = rx.SetReadBuffer(8 << 20)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	var tx *net.UDPConn
	if err := from.ns.Do(func() error {
		var err error
		tx, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(to.ip), Port: 6000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()

	sizes := []int{8, 64, 512, 1422, 1000}
	const bursts, perBurst = 20, 50
	datagram := func(i int) []byte {
		b := make([]byte, sizes[i/perBurst%len(sizes)])
		for j := range b {
			b[j] = byte(i + j)
		}
		binary.BigEndian.PutUint32(b, uint32(i))
		return b
	}
	go func() {
		for i := range bursts * perBurst {
			if _, err := tx.Write(datagram(i)); err != nil {
				return
			}
			if i%perBurst == perBurst-1 {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
	buf := make([]byte, 2048)
	for i := range bursts * perBurst {
		rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("%s -> %s: after %d of %d datagrams: %v", from.ip, to.ip, i, bursts*perBurst, err)
		}
		if want := datagram(i); !bytes.Equal(buf[:n], want) {
			t.Fatalf("%s -> %s: datagram %d: got %d bytes starting % x, want %d starting % x",
				from.ip, to.ip, i, n, buf[:min(n, 8)], len(want), want[:min(len(want), 8)])
		}
	}
}

// A multi-queue TAP with SO_REUSEPORT sockets. Many flows arrive
// whole; with the fast path, which sends each flow from a source port of
// its own, they spread over the queues in both directions on both hosts.
func TestMultiQueueSpreadsFlows(t *testing.T) {
	for _, offload := range []string{"all", "none"} {
		t.Run("offload="+offload, func(t *testing.T) {
			tp := newTopo(t, 43)
			h1, h2 := tp.addHost(), tp.addHost()
			tp.startAll("--offload", offload, "--queues", "2")
			c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
			ctx := testCtx(t, 90*time.Second)
			// 16 flows: the chance that the kernel hashes all of them
			// to one queue, on either side, is about 2^-14.
			const flows = 16
			errs := make(chan error, flows)
			for i := range flows {
				go func() {
					errs <- netlab.TCPTransfer(ctx, c1.ns, c2.ns, fmt.Sprintf("%s:%d", c2.ip, 5100+i), 256<<10)
				}()
			}
			for range flows {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			for _, h := range []*testHost{h1, h2} {
				s := tp.stats(h)
				if len(s.Queues) != 2 {
					t.Fatalf("host %s reports %d queues, want 2", h.ns.Name, len(s.Queues))
				}
				if offload == "none" {
					// Without the fast path every datagram leaves
					// from the one port, so the receiving kernel
					// has one flow to hash: only delivery counts.
					continue
				}
				for i, q := range s.Queues {
					if q.RxPackets == 0 || q.TxPackets == 0 {
						t.Errorf("host %s queue %d moved rx %d, tx %d packets; want both directions on both queues: %+v",
							h.ns.Name, i, q.RxPackets, q.TxPackets, s.Queues)
					}
				}
			}
		})
	}
}

// Three hosts with static peers reach each other.
func TestThreeHostsStaticPeers(t *testing.T) {
	tp := newTopo(t, 7)
	for range 3 {
		tp.addHost()
	}
	tp.startAll()
	var all []*testContainer
	for _, h := range tp.hosts {
		all = append(all, tp.addContainer(h))
	}
	ctx := testCtx(t, 90*time.Second)
	for _, a := range all {
		for _, b := range all {
			if a != b {
				if err := netlab.Reach(ctx, a.ns, b.ns, b.ip); err != nil {
					t.Errorf("%s -> %s: %v", a.ns, b.ns, err)
				}
			}
		}
	}
	if t.Failed() {
		return
	}

	// One broadcast from c1 arrives exactly once at each other container.
	const port = 9999
	payload := fmt.Appendf(nil, "broadcast %d", time.Now().UnixNano())
	var wg sync.WaitGroup
	counts := make([]int, len(all))
	ready := make(chan error, len(all))
	for i, c := range all[1:] {
		var pc net.PacketConn
		if err := c.ns.Do(func() (err error) {
			pc, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer pc.Close()
			buf := make([]byte, 2048)
			// Count for a while after the send: a duplicate would
			// arrive within microseconds of the original.
			pc.SetReadDeadline(time.Now().Add(3 * time.Second))
			ready <- nil
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if bytes.Equal(buf[:n], payload) {
					counts[i+1]++
				}
			}
		})
	}
	for range all[1:] {
		<-ready
	}
	if err := all[0].ns.Do(func() error {
		c, err := net.Dial("udp4", fmt.Sprintf("10.200.0.255:%d", port))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, c := range all[1:] {
		if counts[i+1] != 1 {
			t.Errorf("%s received the broadcast %d times, want exactly 1", c.ns, counts[i+1])
		}
	}
}

// kernelHost configures h as a host whose overlay is the Linux kernel's own
// vxlan device on bridge br0, flooding to peers.
func (tp *topo) kernelHost(h *testHost, port int, peers ...string) {
	tp.kernelVNI(h, tp.vni, "vx0", "br0", port, peers...)
}

// kernelVNI adds to h the kernel's vxlan device dev of vni on bridge br,
// flooding to peers.
func (tp *topo) kernelVNI(h *testHost, vni int, dev, br string, port int, peers ...string) {
	tp.t.Helper()
	h.ns.MustRun(tp.t, "ip", "link", "add", dev, "type", "vxlan", "id", fmt.Sprint(vni),
		"dstport", fmt.Sprint(port), "local", h.ip, "dev", "eth0")
	h.ns.MustRun(tp.t, "ip", "link", "set", dev, "mtu", fmt.Sprint(tp.mtu))
	if err := h.ns.Bridge(br); err != nil {
		tp.t.Fatal(err)
	}
	if err := h.ns.SetMaster(dev, br); err != nil {
		tp.t.Fatal(err)
	}
	h.ns.MustRun(tp.t, "ip", "link", "set", dev, "up")
	for _, p := range peers {
		h.ns.MustRun(tp.t, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", dev, "dst", p)
	}
}

// Interoperation: the Linux
// kernel's vxlan is the peer, on both ports, with vxland's fast path on
// and off, over a veth underlay as created (the kernel sender then leaves
// inner checksums partial and sends 64 KB datagrams) and over one that
// behaves like a wire (segmentation offloads off, as a real NIC).
func TestKernelVXLANInterop(t *testing.T) {
	for _, underlay := range []string{"default", "wire-like"} {
		for _, offload := range []string{"all", "none"} {
			for _, port := range []int{encap.DefaultPort, encap.LinuxPort} {
				t.Run(fmt.Sprintf("%s/offload=%s/%d", underlay, offload, port), func(t *testing.T) {
					testKernelInterop(t, underlay, offload, port)
				})
			}
		}
	}
	// A forwarding thread that never sleeps forwards the same.
	t.Run("default/offload=all/poll=always", func(t *testing.T) {
		testKernelInterop(t, "default", "all", encap.DefaultPort, "--poll=always")
	})
}

func testKernelInterop(t *testing.T, underlay, offload string, port int, extra ...string) {
	tp := newTopo(t, 42)
	kh, vh := tp.addHost(), tp.addHost()
	if underlay == "wire-like" {
		if _, err := exec.LookPath("ethtool"); err != nil {
			t.Skip("ethtool not installed (apt-get install ethtool): cannot make the underlay wire-like")
		}
		kh.ns.MustRun(t, "ethtool", "-K", "eth0", "tx-udp_tnl-segmentation", "off",
			"tx-udp_tnl-csum-segmentation", "off", "tx-udp-segmentation", "off", "tso", "off", "gro", "on")
	}
	tp.kernelHost(kh, port, vh.ip)
	tp.start(vh, []string{kh.ip}, append([]string{"--port", fmt.Sprint(port), "--offload", offload}, extra...)...)
	kc, vc := tp.addContainer(kh), tp.addContainer(vh)
	ctx := testCtx(t, 90*time.Second)
	size := tenMB
	if offload == "all" {
		size = 32 << 20 // large transfers push super-frames both ways
	}
	if err := netlab.TCPTransfer(ctx, kc.ns, vc.ns, vc.ip+":5001", size); err != nil {
		t.Fatalf("kernel -> vxland: %v", err)
	}
	if err := netlab.TCPTransfer(ctx, vc.ns, kc.ns, kc.ip+":5002", size); err != nil {
		t.Fatalf("vxland -> kernel: %v", err)
	}
	udpBursts(t, kc, vc)
	udpBursts(t, vc, kc)
	s := tp.stats(vh)
	t.Logf("vxland: rx %d frames, checksums completed %d, frames segmented %d, drops %v",
		s.RxPackets, s.RxChecksumCompleted, s.RxSegmented, nonZero(s.Drops))
	if s.RxBytes < uint64(size) || s.TxBytes < uint64(size) {
		t.Fatalf("the transfers did not go through vxland: %+v", s)
	}
	// The TAP driver counts its own drops; the daemon's statistics (what
	// vxland show stats prints) carry them.
	for _, reason := range []string{tap.DropMalformed, tap.DropOversize} {
		if _, ok := s.Drops[reason]; !ok {
			t.Errorf("the TAP's drop reason %q is missing from the daemon's stats: %v", reason, s.Drops)
		}
	}
}

func nonZero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// The TAP's MTU is the underlay's less 50 bytes on IPv4 and 70 on IPv6,
// and both underlays carry traffic, also to and from the kernel's vxlan.
func TestIPv6UnderlayAndMTU(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(t *testing.T) {
			tp := newTopo(t, 42)
			tp.ipv6 = v6
			tp.mtu = map[bool]int{false: 1450, true: 1430}[v6]
			h1, h2, kh := tp.addHost(), tp.addHost(), tp.addHost()
			tp.start(h1, []string{h2.ip, kh.ip})
			tp.start(h2, []string{h1.ip, kh.ip})
			tp.kernelHost(kh, encap.DefaultPort, h1.ip, h2.ip)
			for _, h := range []*testHost{h1, h2} {
				out := h.ns.MustRun(t, "ip", "link", "show", "vxtap0")
				if want := fmt.Sprintf("mtu %d ", tp.mtu); !strings.Contains(out, want) {
					t.Fatalf("TAP on %s: %q, want %s", h.ns, out, want)
				}
			}
			c1, c2, kc := tp.addContainer(h1), tp.addContainer(h2), tp.addContainer(kh)
			ctx := testCtx(t, 60*time.Second)
			for _, p := range [][2]*testContainer{{c1, c2}, {c2, c1}, {c1, kc}, {kc, c2}} {
				if err := netlab.TCPTransfer(ctx, p[0].ns, p[1].ns, p[1].ip+":5001", 2<<20); err != nil {
					t.Fatalf("%s -> %s: %v", p[0].ns, p[1].ns, err)
				}
			}
		})
	}
}

// Hostile input on the underlay.
func TestBadUnderlayInput(t *testing.T) {
	tp := newTopo(t, 42)
	h1, h2 := tp.addHost(), tp.addHost()
	// A third namespace on the underlay with two addresses: .3 is a
	// configured peer of h2, .10 is not.
	x := tp.addHost()
	const peerIP, strangerIP = "10.77.0.3", "10.77.0.10"
	x.ns.MustRun(t, "ip", "addr", "add", strangerIP+"/24", "dev", "eth0")
	tp.start(h1, []string{h2.ip})
	tp.start(h2, []string{h1.ip, peerIP})
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}

	// c2 listens for UDP that a forged frame would deliver.
	const victimPort = 7777
	victim := listenUDP(t, c2, victimPort)
	mac2, err := c2.ns.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	forged := forgedUDP(t, mac2, c2.ip, victimPort)
	vx := func(vni uint32, frame []byte) []byte { return vxlanPacket(t, vni, frame) }
	noI := vx(42, forged)
	noI[0] = 0
	reserved := vx(42, forged)
	reserved[1] = 0x80

	before := tp.stats(h2)
	sends := []struct {
		from, reason string
		pkt          []byte
	}{
		{strangerIP, "short", []byte{0x08, 0, 0, 0}},
		{strangerIP, "no_i_flag", noI},
		{strangerIP, "reserved_bits", reserved},
		{strangerIP, "vni_mismatch", vx(43, forged)},
		{strangerIP, "unknown_vtep", vx(42, forged)},
		{peerIP, "inner_short", vx(42, forged[:13])},
	}
	want := map[string]uint64{}
	for _, s := range sends {
		want[s.reason]++
		if err := sendUDP(x.ns, s.from, h2.ip+":4789", s.pkt); err != nil {
			t.Fatalf("sending %s from %s: %v", s.reason, s.from, err)
		}
	}

	// Wait until every drop is counted, then check each count exactly.
	deadline := time.Now().Add(10 * time.Second)
	var after overlay.Stats
	for {
		after = tp.stats(h2)
		done := true
		for r, n := range want {
			if after.Drops[r]-before.Drops[r] < n {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for r, n := range want {
		if got := after.Drops[r] - before.Drops[r]; got != n {
			t.Errorf("drops[%s] grew by %d, want %d", r, got, n)
		}
	}

	// Normal traffic keeps flowing, and the forged frame never arrived.
	if err := netlab.TCPTransfer(ctx, c1.ns, c2.ns, c2.ip+":5003", 1<<20); err != nil {
		t.Fatalf("traffic after hostile input: %v", err)
	}
	victim.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, from, err := victim.ReadFrom(make([]byte, 2048)); err == nil {
		t.Fatalf("a forged frame from a non-peer reached the container: %d bytes from %v", n, from)
	}
}

// listenUDP returns a UDP socket of c at port, closed when the test ends.
func listenUDP(t *testing.T, c *testContainer, port int) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	if err := c.ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", c.ip, port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// vxlanPacket returns frame behind a VXLAN header of vni.
func vxlanPacket(t *testing.T, vni uint32, frame []byte) []byte {
	t.Helper()
	b := make([]byte, encap.HeaderLen+len(frame))
	if err := encap.Encode(b, vni); err != nil {
		t.Fatal(err)
	}
	copy(b[encap.HeaderLen:], frame)
	return b
}

// sendUDP sends pkt in one IPv4 datagram from the address from (any
// port) in ns to the address and port to.
func sendUDP(ns *netlab.NS, from, to string, pkt []byte) error {
	return ns.Do(func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from+":0")),
			net.UDPAddrFromAddrPort(netip.MustParseAddrPort(to)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(pkt)
		return err
	})
}

// forgedUDP is an Ethernet/IPv4/UDP frame to the container at dstIP.
func forgedUDP(t *testing.T, dst net.HardwareAddr, dstIP string, port int) []byte {
	t.Helper()
	ip := netip.MustParseAddr(dstIP).As4()
	payload := []byte("forged")
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:6], dst)
	copy(f[6:12], []byte{0x02, 0xba, 0xd0, 0, 0, 1})
	f[12], f[13] = 0x08, 0x00
	iph := f[14:34]
	iph[0] = 0x45
	total := 20 + 8 + len(payload)
	iph[2], iph[3] = byte(total>>8), byte(total)
	iph[8], iph[9] = 64, 17
	copy(iph[12:16], []byte{10, 200, 0, 99})
	copy(iph[16:20], ip[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(iph[i])<<8 | uint32(iph[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	cs := ^uint16(sum)
	iph[10], iph[11] = byte(cs>>8), byte(cs)
	udp := f[34:]
	udp[0], udp[1] = 0x30, 0x39
	udp[2], udp[3] = byte(port>>8), byte(port)
	udp[4], udp[5] = 0, byte(8+len(payload))
	// UDP checksum 0: none, valid on IPv4.
	copy(udp[8:], payload)
	return f
}

// SIGTERM shuts down cleanly and, with --persist=false, removes the TAP.
func TestShutdownRemovesTAP(t *testing.T) {
	tp := newTopo(t, 42)
	h := tp.addHost()
	tp.start(h, nil, "--persist=false")
	if _, err := h.ns.Run("ip", "link", "show", "vxtap0"); err != nil {
		t.Fatalf("TAP missing while running: %v", err)
	}
	terminate(t, h, "")
	if _, err := os.Stat(h.sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket left behind: %v", err)
	}
}

// terminate sends h's vxland (--persist=false) SIGTERM and fails the test
// unless it exits cleanly within 10 s and removes its TAP; when says in
// what situation.
func terminate(t *testing.T, h *testHost, when string) {
	t.Helper()
	stop(t, h, when)
	if out, err := h.ns.Run("ip", "link", "show", "vxtap0"); err == nil {
		t.Fatalf("TAP still present after shutdown%s: %s", when, out)
	}
}

// stop sends h's vxland SIGTERM and fails the test unless it exits
// cleanly within 10 s.
func stop(t *testing.T, h *testHost, when string) {
	t.Helper()
	if err := h.proc.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.proc.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("vxland did not exit within 10s of SIGTERM%s", when)
	}
	if err := h.proc.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM%s: %v\n%s", when, err, h.proc.Output())
	}
}

// The workers of the fast path sleep in poll holding their P; a daemon
// stopped in the middle of a transfer, with every queue busy, still exits
// cleanly and (--persist=false) removes its TAP.
func TestShutdownUnderLoad(t *testing.T) {
	tp := newTopo(t, 45)
	h1, h2 := tp.addHost(), tp.addHost()
	tp.startAll("--queues", "2", "--persist=false")
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	ctx, cancel := context.WithCancel(testCtx(t, 60*time.Second))
	defer cancel()
	transfer := make(chan error, 4)
	for i := range 4 {
		go func() {
			transfer <- netlab.TCPTransfer(ctx, c1.ns, c2.ns, fmt.Sprintf("%s:%d", c2.ip, 5300+i), 1<<30) // far more than is sent before the stop
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); tp.stats(h1).TxBytes < 64<<20; {
		if time.Now().After(deadline) {
			t.Fatalf("the transfers did not get going: %+v", tp.stats(h1))
		}
		time.Sleep(20 * time.Millisecond)
	}
	terminate(t, h1, " under load")
	cancel()
	for range 4 {
		<-transfer // cut off by the shutdown; only the daemon's exit matters
	}
}

// Bad flags and missing prerequisites exit 2
// with a message that names the flag or the cause.
func TestBadFlagsExit2(t *testing.T) {
	tp := newTopo(t, 1)
	h := tp.addHost()
	h.ns.MustRun(t, "ip", "addr", "add", "fd77::1/64", "dev", "eth0", "nodad")
	cases := []struct {
		name string
		args []string
		want string
		prep func(cmd *exec.Cmd) *exec.Cmd
	}{
		{name: "vni too large", args: []string{"--vni", "16777216"}, want: "--vni"},
		{name: "port 0", args: []string{"--port", "0"}, want: "--port"},
		{name: "port too large", args: []string{"--port", "65536"}, want: "--port"},
		{name: "bad address", args: []string{"--local-ip", "10.77.0.999"}, want: "--local-ip"},
		{name: "bad peer", args: []string{"--peer", "host-b"}, want: "--peer"},
		{name: "address not on host", args: []string{"--local-ip", "10.77.0.200"}, want: "--local-ip"},
		{name: "no such interface", args: []string{"--iface", "nosuch0"}, want: "--iface"},
		{name: "bad metrics address", args: []string{"--metrics-listen", "8473"}, want: "--metrics-listen"},
		{name: "metrics address not on host", args: []string{"--local-ip", h.ip, "--metrics-listen", "10.77.0.200:8473"}, want: "--metrics-listen"},
		{name: "mtu larger than the underlay carries", args: []string{"--local-ip", h.ip, "--mtu", "1451"}, want: "--mtu 1451 is larger than underlay"},
		{name: "tap mtu below the overlay mtu", args: []string{"--local-ip", h.ip, "--tap-mtu", "1449"}, want: "--tap-mtu 1449 is below the overlay MTU 1450"},
		{name: "ttl 0", args: []string{"--ttl", "0"}, want: "--ttl"},
		{name: "tos too large", args: []string{"--tos", "0x100"}, want: "--tos"},
		{name: "df maybe", args: []string{"--df", "maybe"}, want: "--df"},
		{name: "group not multicast", args: []string{"--group", "10.1.1.1", "--iface", "eth0", "--underlay-cidr", "10.77.0.0/24"}, want: "--group"},
		{name: "group without iface", args: []string{"--group", "239.1.1.1", "--underlay-cidr", "10.77.0.0/24"}, want: "--group 239.1.1.1 needs --iface"},
		{name: "group of the other family", args: []string{"--iface", "eth0", "--group", "ff05::42", "--underlay-cidr", "10.77.0.0/24"}, want: "--group"},
		{name: "poll not a duration", args: []string{"--poll", "sometimes"}, want: "--poll"},
		{name: "no UDP checksum over IPv6", args: []string{"--local-ip", "fd77::1", "--udp-csum=false"}, want: "--udp-csum"},
		{name: "env var", args: nil, want: "VXLAND_VNI", prep: func(cmd *exec.Cmd) *exec.Cmd {
			cmd.Env = append(cmd.Env, "VXLAND_VNI=abc")
			return cmd
		}},
		{name: "no /dev/net/tun", args: []string{"--local-ip", h.ip}, want: "/dev/net/tun", prep: hideTun},
		{name: "not root", args: []string{"--local-ip", h.ip}, want: "root", prep: func(cmd *exec.Cmd) *exec.Cmd {
			return asNobody(t, cmd)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := tp.daemonCmd(h.ns, append(tc.args, "--control-socket", filepath.Join(tp.dir, "x.sock"))...)
			if tc.prep != nil {
				cmd = tc.prep(cmd)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want status 2; stderr: %s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q does not name %s", stderr.String(), tc.want)
			}
			if lines := strings.Count(strings.TrimSpace(stderr.String()), "\n"); lines != 0 {
				t.Errorf("want one line, got %d:\n%s", lines+1, stderr.String())
			}
		})
	}
}

// hideTun runs cmd in a private mount namespace where /dev/net is empty.
func hideTun(cmd *exec.Cmd) *exec.Cmd {
	args := append([]string{"-m", "sh", "-c", `mount -t tmpfs none /dev/net && exec "$@"`, "sh"}, cmd.Args...)
	c := exec.Command("unshare", args...)
	c.Env = cmd.Env
	return c
}

// asNobody runs cmd's program as user nobody (through setpriv, inside the
// namespace), from a copy of the test binary that nobody may execute: go
// test keeps its binary in a private directory.
func asNobody(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	dir, err := os.MkdirTemp("", "vxland-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "vxland")
	if err := os.WriteFile(copyPath, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// cmd is "ip netns exec NS EXE ARGS...": put setpriv before EXE.
	args := append([]string{}, cmd.Args[:4]...)
	args = append(args, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", copyPath)
	args = append(args, cmd.Args[5:]...)
	c := exec.Command(cmd.Path, args[1:]...)
	c.Env = cmd.Env
	return c
}
