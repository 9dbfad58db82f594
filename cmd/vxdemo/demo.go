package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
)

// The demo's network.
const (
	vni            = 42
	numHosts       = 3
	containersEach = 2
	underlayMTU    = 1500
	overlayMTU     = underlayMTU - encap.OverheadIPv4 // 1450
	etcdEndpoint   = "http://10.77.0.1:2379"
	etcdListen     = "10.77.0.1:2379"
	leaseTTL       = "10s"
	bridgeName     = "br0"
	tapName        = "vxtap0"
	transferPort   = 5001
)

// How long each step may take before the demo gives up on it.
const (
	etcdStartTimeout   = 30 * time.Second
	daemonStartTimeout = 15 * time.Second
	discoveryTimeout   = 20 * time.Second
	publishTimeout     = 15 * time.Second
	trafficTimeout     = 60 * time.Second
	stopGrace          = 5 * time.Second
)

// demo is one run: the lab, the hosts and what the steps measured.
type demo struct {
	opts  options
	out   io.Writer
	lab   *netlab.Lab
	dir   string // control sockets and etcd's data
	sw    *netlab.NS
	hosts []*host
	// byMAC names the container behind each MAC, for the tables.
	byMAC map[string]*container
	// talked holds the containers that exchanged frames with another host,
	// and transfer what the overhead step needs: both measured by the
	// traffic step.
	talked   map[*container]bool
	transfer transferResult
}

// host is a namespace on the underlay switch running vxland.
type host struct {
	name string // "h1"
	ip   string // underlay address, 10.77.0.N
	sock string // vxland's control socket
	ns   *netlab.NS
	proc *netlab.Process
	ctrs []*container
}

// container is a namespace whose eth0 hangs on its host's bridge br0.
type container struct {
	name string // "h2-c1"
	host *host
	ip   string // overlay address 10.200.0.HC
	mac  string // 02:00:00:00:0H:0C, so that tables can be read
	ns   *netlab.NS
}

type transferResult struct {
	bytes    int                 // TCP payload
	underlay netlab.LinkCounters // h1's underlay eth0 transmit counters during it
}

func newDemo(opts options, out io.Writer) (*demo, error) {
	lab, err := netlab.New("vxdemo")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vxdemo-")
	if err != nil {
		lab.Close()
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	d := &demo{opts: opts, out: out, lab: lab, dir: dir,
		byMAC: make(map[string]*container), talked: make(map[*container]bool)}
	for i := 1; i <= numHosts; i++ {
		h := &host{name: fmt.Sprintf("h%d", i), ip: fmt.Sprintf("10.77.0.%d", i),
			sock: filepath.Join(dir, fmt.Sprintf("h%d.sock", i))}
		for j := 1; j <= containersEach; j++ {
			c := &container{name: fmt.Sprintf("h%d-c%d", i, j), host: h,
				ip: fmt.Sprintf("10.200.0.%d%d", i, j), mac: fmt.Sprintf("02:00:00:00:%02x:%02x", i, j)}
			h.ctrs = append(h.ctrs, c)
			d.byMAC[c.mac] = c
		}
		d.hosts = append(d.hosts, h)
	}
	return d, nil
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) section(n int, title string) {
	d.printf("\n%d. %s\n%s\n", n, title, strings.Repeat("-", len(title)+3))
}

type step struct {
	title string
	run   func(context.Context) error
}

// steps are the demo's steps, in order; cleanup comes after them.
func (d *demo) steps() []step {
	return []step{
		{"The machines", d.build},
		{"Starting vxland on each host", d.startDaemons},
		{"The hosts find each other through etcd", d.showDiscovery},
		{"Containers on different hosts talk", d.showTraffic},
		{"What each host learned: its forwarding table (FDB)", d.showFDB},
		{"Counters", d.showCounters},
		{"What VXLAN costs: overhead per packet, and the MTU", d.showOverhead},
	}
}

// run runs the steps in order and stops at the first that fails.
func (d *demo) run(ctx context.Context) error {
	steps := d.steps()
	d.printf("vxdemo: vxland's overlay on three hosts, built out of network namespaces.\n")
	for i, s := range steps {
		d.section(i+1, s.title)
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, strings.ToLower(s.title), err)
		}
	}
	return nil
}

// ---- 1. the machines ----

func (d *demo) build(ctx context.Context) error {
	sw, err := d.namespace("sw")
	if err != nil {
		return err
	}
	d.sw = sw
	if err := sw.Bridge("sw0"); err != nil {
		return err
	}
	for i, h := range d.hosts {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if h.ns, err = d.namespace(h.name); err != nil {
			return err
		}
		port := fmt.Sprintf("p%d", i+1)
		if err := d.lab.Veth(h.ns, "eth0", sw, port); err != nil {
			return err
		}
		if err := sw.SetMaster(port, "sw0"); err != nil {
			return err
		}
		if err := h.ns.Addr("eth0", h.ip+"/24"); err != nil {
			return err
		}
		if err := makeContainerBridge(h.ns); err != nil {
			return err
		}
		for j, c := range h.ctrs {
			if err := d.addContainer(c, fmt.Sprintf("vc%d", j+1)); err != nil {
				return err
			}
		}
	}
	d.printTopology()
	return nil
}

// namespace creates a namespace with IPv6 off. IPv6 would make every
// interface send neighbour discovery from its own random MAC, and those
// MACs would crowd the forwarding tables this demo prints; everything here
// is IPv4.
func (d *demo) namespace(name string) (*netlab.NS, error) {
	ns, err := d.lab.Namespace(name)
	if err != nil {
		return nil, err
	}
	for _, key := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := ns.SetSysctl(key, "1"); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

// makeContainerBridge makes the bridge a container runtime would have made
// (docker0, cni0), to which vxland attaches its TAP.
//
// Its IGMP snooping is off. A snooping bridge joins 224.0.0.106 when it
// comes up and reports so, from its own MAC, for a second or two; the
// bridge of a real host has been up for long before vxland starts, but here
// vxland starts at once, so the report would cross the overlay, and the
// bridge's MAC would be published and show up in every FDB beside the
// containers' ones.
func makeContainerBridge(ns *netlab.NS) error {
	if _, err := ns.Run("ip", "link", "add", bridgeName, "type", "bridge", "mcast_snooping", "0"); err != nil {
		return err
	}
	if _, err := ns.Run("ip", "link", "set", bridgeName, "up"); err != nil {
		return err
	}
	return nil
}

// addContainer makes c's namespace, with eth0 on the host's bridge through
// the veth hostIf, c's MAC and address, and the overlay MTU.
func (d *demo) addContainer(c *container, hostIf string) error {
	ns, err := d.namespace(c.name)
	if err != nil {
		return err
	}
	c.ns = ns
	if err := d.lab.Veth(c.host.ns, hostIf, ns, "eth0"); err != nil {
		return err
	}
	if err := c.host.ns.SetMaster(hostIf, bridgeName); err != nil {
		return err
	}
	if _, err := ns.Run("ip", "link", "set", "eth0", "address", c.mac, "mtu", fmt.Sprint(overlayMTU)); err != nil {
		return fmt.Errorf("container %s: %w", c.name, err)
	}
	return ns.Addr("eth0", c.ip+"/24")
}

func (d *demo) printTopology() {
	d.printf("Three hosts, h1 to h3, stand on an underlay network, 10.77.0.0/24 with MTU %d:\n", underlayMTU)
	d.printf("a switch (bridge sw0) joins them, like the network between three servers.\n")
	d.printf("On each host, containers hang on the bridge br0 (like docker0), on one overlay\n")
	d.printf("network, 10.200.0.0/24 with MTU %d, that spans all three hosts.\n\n", overlayMTU)
	const col, stem = 24, 8 // column width; where a host's link to the switch is drawn
	d.printf("%s\n", centre("underlay switch sw0, 10.77.0.0/24", stem+2*col+1))
	link := strings.Repeat("-", col-1)
	d.printf("%s+%s+%s+\n", strings.Repeat(" ", stem), link, link)
	d.printf("%s|%s|%s|\n", strings.Repeat(" ", stem), strings.Repeat(" ", col-1), strings.Repeat(" ", col-1))
	rows := make([][]string, 3+containersEach)
	for _, h := range d.hosts {
		role := "vxland"
		if h == d.hosts[0] {
			role = "vxland + etcd"
		}
		rows[0] = append(rows[0], fmt.Sprintf("  %s %s", h.name, h.ip))
		rows[1] = append(rows[1], "  "+role)
		rows[2] = append(rows[2], "  br0 + "+tapName)
		for j, c := range h.ctrs {
			branch := "|-"
			if j == len(h.ctrs)-1 {
				branch = "`-"
			}
			rows[3+j] = append(rows[3+j], fmt.Sprintf("   %s %s %s", branch, c.name, c.ip))
		}
	}
	for _, r := range rows {
		d.printf("%s\n", strings.TrimRight(columns(r, col), " "))
	}
	d.printf("\nThe switch, every host and every container is a network namespace (\"ip netns\n")
	d.printf("list\" shows them, named %s...). Container h<H>-c<C> has the MAC\n", d.namePrefix())
	d.printf("02:00:00:00:0H:0C, so that the tables below read easily.\n")
}

func columns(cells []string, width int) string {
	var b strings.Builder
	for _, c := range cells {
		fmt.Fprintf(&b, "%-*s", width, c)
	}
	return b.String()
}

func centre(s string, width int) string {
	if pad := (width - len(s)) / 2; pad > 0 {
		return strings.Repeat(" ", pad) + s
	}
	return s
}

// namePrefix is what the names of this process's namespaces start with.
func (d *demo) namePrefix() string { return fmt.Sprintf("vxdemo%d-", os.Getpid()) }

// ---- 2. starting vxland ----

func (d *demo) vxlandArgs(h *host) []string {
	args := []string{d.opts.vxland, "--vni", fmt.Sprint(vni), "--local-ip", h.ip,
		"--etcd-endpoints", etcdEndpoint, "--bridge", bridgeName, "--tap", tapName,
		"--control-socket", h.sock, "--lease-ttl", leaseTTL, "--log-level", d.opts.logLevel}
	args = append(args, d.opts.extra...)
	if h == d.hosts[0] {
		args = append(args, "--embedded-etcd", filepath.Join(d.dir, "etcd"), "--embedded-etcd-listen", etcdListen)
	}
	return args
}

func (d *demo) startDaemons(ctx context.Context) error {
	d.printf("Each host runs vxland with the same VNI and the address of etcd, and no --peer:\n")
	d.printf("nobody tells a host where the others are. On h1:\n\n")
	d.printf("%s\n", shellLine(append([]string{"vxland"}, d.vxlandArgs(d.hosts[0])[1:]...), "    ", 80))
	d.printf("The two --embedded-etcd flags make h1's vxland also run etcd, inside its own\n")
	d.printf("process, listening on the underlay. h2 and h3 run the same command with their\n")
	d.printf("own --local-ip, without those two flags.\n\n")

	for i, h := range d.hosts {
		start := time.Now()
		p, err := h.ns.Start(d.vxlandArgs(h)...)
		if err != nil {
			return err
		}
		h.proc = p
		if err := waitDaemon(ctx, h, daemonStartTimeout); err != nil {
			return err
		}
		if i == 0 {
			if err := d.waitEtcd(ctx, h); err != nil {
				return err
			}
			d.printf("  h1: vxland up (pid %d), etcd answering on %s after %.1fs\n", p.Pid(), etcdListen, time.Since(start).Seconds())
			continue
		}
		d.printf("  %s: vxland up (pid %d) after %.1fs\n", h.name, p.Pid(), time.Since(start).Seconds())
	}
	return nil
}

// shellLine formats a command as a shell would accept it, a flag and its
// value kept together, lines continued with a backslash before width.
func shellLine(args []string, indent string, width int) string {
	var words []string
	for i := 0; i < len(args); i++ {
		w := args[i]
		if strings.HasPrefix(w, "--") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			i++
			w += " " + args[i]
		}
		words = append(words, w)
	}
	var b strings.Builder
	line := indent
	for i, w := range words {
		if i > 0 && len(line)+1+len(w)+2 > width {
			b.WriteString(line + " \\\n")
			line = indent + "    "
		} else if i > 0 {
			line += " "
		}
		line += w
	}
	b.WriteString(line + "\n")
	return b.String()
}

// waitDaemon waits until h's vxland answers on its control socket.
func waitDaemon(ctx context.Context, h *host, timeout time.Duration) error {
	var lastErr error
	err := poll(ctx, timeout, func(ctx context.Context) (bool, error) {
		if err := exited(h); err != nil {
			return false, err
		}
		var s overlay.Stats
		lastErr = control.Get(ctx, h.sock, "/stats", &s)
		return lastErr == nil, nil
	})
	if err != nil && exited(h) == nil {
		err = fmt.Errorf("vxland on %s did not answer on its control socket: %w (last: %v)", h.name, err, lastErr)
	}
	return err
}

// waitEtcd waits until the etcd inside h's vxland answers a read from
// h's namespace: vxland's control socket answers before etcd is ready.
func (d *demo) waitEtcd(ctx context.Context, h *host) error {
	var lastErr error
	err := poll(ctx, etcdStartTimeout, func(ctx context.Context) (bool, error) {
		if err := exited(h); err != nil {
			return false, err
		}
		_, lastErr = readEtcd(ctx, h.ns, etcdEndpoint, d.etcdPrefix())
		return lastErr == nil, nil
	})
	if err != nil && exited(h) == nil {
		err = fmt.Errorf("the embedded etcd on %s did not answer at %s: %w (last: %v)", h.name, etcdEndpoint, err, lastErr)
	}
	return err
}

// exited returns an error if h's vxland has exited.
func exited(h *host) error {
	select {
	case <-h.proc.Done():
		return fmt.Errorf("vxland on %s exited at start (%v)", h.name, h.proc.Wait())
	default:
		return nil
	}
}

func (d *demo) etcdPrefix() string { return discovery.NewKeys(discovery.DefaultPrefix, vni).Prefix() }

// poll calls check every 100ms, each call bounded to a few seconds, until
// it reports done, fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, check func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		done, err := check(cctx)
		ccancel()
		if err != nil || done {
			return err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				return fmt.Errorf("gave up after %v", timeout)
			}
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// ---- 3. discovery ----

func (d *demo) showDiscovery(ctx context.Context) error {
	d.printf("Each vxland registers its host in etcd and watches the other hosts' keys. A\n")
	d.printf("host it sees becomes a VXLAN peer: broadcasts (ARP, ...) are copied to it, and\n")
	d.printf("VXLAN packets from it are accepted. Waiting until each host lists the other\n")
	d.printf("two...\n\n")

	start := time.Now()
	floods := make(map[*host][]netip.Addr)
	err := poll(ctx, discoveryTimeout, func(ctx context.Context) (bool, error) {
		complete := true
		for _, h := range d.hosts {
			st, err := fdbState(ctx, h)
			if err != nil {
				return false, err
			}
			floods[h] = floodList(st)
			for _, o := range d.hosts {
				if o != h && !slices.Contains(floods[h], netip.MustParseAddr(o.ip)) {
					complete = false
				}
			}
		}
		return complete, nil
	})
	if err != nil {
		for _, h := range d.hosts {
			d.printf("  %s (%s) sends broadcasts to: %s\n", h.name, h.ip, addrList(floods[h]))
		}
		d.printEtcd(ctx, "vtep/")
		return fmt.Errorf("the hosts did not all find each other: %w", err)
	}
	for _, h := range d.hosts {
		d.printf("  %s (%s) sends broadcasts to: %s\n", h.name, h.ip, addrList(floods[h]))
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		d.printf("\nThey had all found each other by the time the last vxland was up. ")
	} else {
		d.printf("\nThey had all found each other %.1fs after the last vxland was up. ", took.Seconds())
	}
	d.printf("This is what\netcd holds, read from h2 as etcdctl would: one key per host, on that host's\n")
	d.printf("lease (TTL %s). ", leaseTTL)
	d.printf("A host that dies stops renewing its lease; etcd deletes its key\n")
	d.printf("and the others drop it from their lists.\n\n")
	return d.printEtcd(ctx, "vtep/")
}

func fdbState(ctx context.Context, h *host) (control.FDBState, error) {
	var st control.FDBState
	if err := control.Get(ctx, h.sock, "/fdb", &st); err != nil {
		return st, fmt.Errorf("reading the FDB of %s: %w", h.name, err)
	}
	return st, nil
}

// floodList returns the VTEP addresses of our VNI's flood list.
func floodList(st control.FDBState) []netip.Addr {
	var out []netip.Addr
	for _, f := range st.Flood {
		if f.VNI == vni {
			for _, v := range f.VTEPs {
				out = append(out, v.Addr())
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func addrList(addrs []netip.Addr) string {
	if len(addrs) == 0 {
		return "(nobody)"
	}
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// printEtcd prints the keys of our VNI whose name after the VNI prefix
// starts with kind ("vtep/", "mac/"), read from h2 (from h1 if h2 is not
// there).
func (d *demo) printEtcd(ctx context.Context, kind string) error {
	from := d.hosts[0]
	if len(d.hosts) > 1 && d.hosts[1].ns != nil {
		from = d.hosts[1]
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kvs, err := readEtcd(ctx, from.ns, etcdEndpoint, d.etcdPrefix()+kind)
	if err != nil {
		d.printf("  (etcd could not be read: %v)\n", err)
		return err
	}
	if len(kvs) == 0 {
		d.printf("  (no key under %s)\n", d.etcdPrefix()+kind)
	}
	for _, kv := range kvs {
		d.printf("  %s\n      %s\n", kv.Key, describeValue(kv))
	}
	return nil
}

// ---- 4. traffic ----

func (d *demo) showTraffic(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, trafficTimeout)
	defer cancel()
	src := d.hosts[0].ctrs[0]
	d.printf("Ping (ICMP echo) from %s (%s) to every other container, %d requests\n", src.name, src.ip, d.opts.pings)
	d.printf("each. The first request to a container also waits for ARP to find its MAC,\n")
	d.printf("which is why max is above avg.\n\n")
	var failed []string
	for _, h := range d.hosts {
		for _, c := range h.ctrs {
			if c == src {
				continue
			}
			how := "on another host: VXLAN through vxland"
			if c.host == src.host {
				how = "same host: br0 switches it, no VXLAN"
			}
			stats, err := netlab.Ping(ctx, src.ns, c.ip, d.opts.pings)
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			d.printf("  to %s %-12s %s\n      (%s)\n", c.name, c.ip, stats, how)
			if stats.Received() == 0 {
				failed = append(failed, fmt.Sprintf("%s: %v", c.name, err))
			} else if c.host != src.host {
				d.talked[src], d.talked[c] = true, true
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("no ping reply from %s", strings.Join(failed, "; "))
	}

	dst := d.hosts[1].ctrs[0]
	n := d.opts.transferMB * 1_000_000
	addr := fmt.Sprintf("%s:%d", dst.ip, transferPort)
	d.printf("\nTCP: %d MB from %s to %s (%s), checked with SHA-256 on\narrival.\n", d.opts.transferMB, src.name, dst.name, addr)
	before, err := txCounters(d.hosts[0].ns, "eth0")
	if err != nil {
		return err
	}
	start := time.Now()
	if err := netlab.TCPTransfer(ctx, src.ns, dst.ns, addr, n); err != nil {
		return err
	}
	elapsed := time.Since(start)
	after, err := txCounters(d.hosts[0].ns, "eth0")
	if err != nil {
		return err
	}
	d.transfer = transferResult{bytes: n,
		underlay: netlab.LinkCounters{Packets: after.Packets - before.Packets, Bytes: after.Bytes - before.Bytes}}
	d.printf("  %d bytes arrived intact in %.2fs: %.0f Mbit/s\n", n, elapsed.Seconds(), float64(n)*8/elapsed.Seconds()/1e6)
	d.printf("  Every segment was read from a TAP, wrapped and sent over UDP by vxland on h1,\n")
	d.printf("  then unwrapped and written to a TAP by vxland on h2: all in user space.\n")
	return nil
}

// ---- 5. FDB ----

func (d *demo) showFDB(ctx context.Context) error {
	d.printf("vxland forwards a frame to the host its destination MAC lives on. A host\n")
	d.printf("publishes a container's MAC in etcd when the container first sends a frame\n")
	d.printf("through vxland; the other hosts install it as a remote entry (\"extern_learn\",\n")
	d.printf("as the kernel calls entries a controller installs). Waiting until\n")
	d.printf("every host has an entry for each container that talked across hosts...\n\n")

	states := make(map[*host]control.FDBState)
	var missing []string
	err := poll(ctx, publishTimeout, func(ctx context.Context) (bool, error) {
		missing = missing[:0]
		for _, h := range d.hosts {
			st, err := fdbState(ctx, h)
			if err != nil {
				return false, err
			}
			states[h] = st
			for _, o := range d.hosts {
				for _, c := range o.ctrs {
					if o != h && d.talked[c] && !hasEntry(st, c.mac, o.ip, fdb.OriginRemote.String()) {
						missing = append(missing, fmt.Sprintf("%s has no remote entry for %s (%s)", h.name, c.name, c.mac))
					}
				}
			}
		}
		return len(missing) == 0, nil
	})
	for _, h := range d.hosts {
		d.printf("%s (%s), as \"vxland show fdb\" prints it:\n", h.name, h.ip)
		d.printFDB(states[h])
		d.printf("\n")
	}
	if err != nil {
		d.printf("What etcd holds for MACs:\n")
		d.printEtcd(ctx, "mac/")
		return fmt.Errorf("%s: %w", strings.Join(missing, "; "), err)
	}
	d.printf("The 00:00:00:00:00:00 lines are the flood list: where broadcasts go. A host's\n")
	d.printf("own containers are not in its FDB: br0 reaches them directly.\n")
	for _, h := range d.hosts {
		for _, c := range h.ctrs {
			if !d.talked[c] {
				d.printf("%s is in no FDB: it only talked to a container on its own host, so no\n", c.name)
				d.printf("frame of it ever went through vxland, and nobody needs to know where it is.\n")
			}
		}
	}
	d.printf("\nIn etcd, one key per MAC, written by the host it lives on, with the IP address\n")
	d.printf("it claimed in ARP:\n\n")
	if err := d.printEtcd(ctx, "mac/"); err != nil {
		return err
	}
	return d.showLocalARP(ctx)
}

// showLocalARP has a container that has not talked across hosts yet ping
// one whose address is in etcd, and shows that its host's vxland answered
// its ARP request itself.
func (d *demo) showLocalARP(ctx context.Context) error {
	var quiet, target *container
	for _, h := range d.hosts {
		for _, c := range h.ctrs {
			if quiet == nil && !d.talked[c] {
				quiet = c
			}
		}
	}
	if quiet == nil {
		return nil
	}
	for _, h := range d.hosts {
		for _, c := range h.ctrs {
			if h != quiet.host && d.talked[c] {
				target = c // the last one: furthest away in the tables
			}
		}
	}
	if target == nil {
		return nil
	}
	h := quiet.host
	d.printf("\nThat IP address spares a broadcast: %s now pings %s (%s).\n", quiet.name, target.name, target.ip)
	d.printf("Its ARP request, \"who has %s?\", is answered by vxland on %s from\n", target.ip, h.name)
	d.printf("etcd's record; it is not copied to the other hosts.\n\n")
	var before, after overlay.Stats
	if err := control.Get(ctx, h.sock, "/stats", &before); err != nil {
		return fmt.Errorf("reading the counters of %s: %w", h.name, err)
	}
	stats, pingErr := netlab.Ping(ctx, quiet.ns, target.ip, 2)
	d.printf("  to %s %-12s %s\n", target.name, target.ip, stats)
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err := control.Get(ctx, h.sock, "/stats", &after); err != nil {
		return fmt.Errorf("reading the counters of %s: %w", h.name, err)
	}
	d.printf("  vxland on %s: ARP answered locally %d -> %d, ARP requests flooded %d -> %d\n",
		h.name, before.ARPAnswered, after.ARPAnswered, before.ARPFlooded, after.ARPFlooded)
	var problems []string
	if stats.Received() == 0 {
		problems = append(problems, pingErr.Error())
	} else {
		d.talked[quiet], d.talked[target] = true, true
	}
	if after.ARPAnswered == before.ARPAnswered {
		problems = append(problems, fmt.Sprintf("vxland on %s did not answer %s's ARP request for %s, whose MAC and address etcd holds", h.name, quiet.name, target.ip))
	}
	if len(problems) == 0 {
		return nil
	}
	// Say what the kernel and vxland saw, to tell where the answer got lost.
	for reason, n := range after.Drops {
		if grew := n - before.Drops[reason]; grew > 0 {
			d.printf("  vxland on %s dropped %d more packet(s) as %q\n", h.name, grew, reason)
		}
	}
	neigh, err := quiet.ns.Run("ip", "neigh", "show", target.ip)
	if err != nil {
		neigh = err.Error()
	}
	if neigh = strings.TrimSpace(neigh); neigh == "" {
		neigh = "(none)"
	}
	d.printf("  %s's ARP entry for %s: %s\n", quiet.name, target.ip, neigh)
	return errors.New(strings.Join(problems, "; "))
}

func hasEntry(st control.FDBState, mac, vtep, origin string) bool {
	for _, e := range st.Entries {
		if e.VNI == vni && e.MAC == mac && e.VTEP.Addr().String() == vtep && e.Origin == origin {
			return true
		}
	}
	return false
}

// ---- cleanup ----

// cleanup stops every vxland (h1 last: its etcd serves the others while
// they revoke their leases), deletes every namespace and the temporary
// directory, and checks that no namespace of this process is left.
func (d *demo) cleanup() error {
	d.section(len(d.steps())+1, "Cleaning up")
	var wg sync.WaitGroup
	stop := func(h *host) {
		if h.proc == nil {
			return
		}
		h.proc.Stop(stopGrace)
		status := "cleanly"
		if err := h.proc.Wait(); err != nil {
			status = fmt.Sprintf("with %v", err)
		}
		d.printf("  vxland on %s stopped %s\n", h.name, status)
	}
	for _, h := range d.hosts[1:] {
		wg.Go(func() { stop(h) })
	}
	wg.Wait()
	stop(d.hosts[0])

	var errs []error
	if err := d.lab.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", d.dir, err))
	}
	left, err := leftoverNamespaces(d.namePrefix())
	switch {
	case err != nil:
		errs = append(errs, err)
	case len(left) > 0:
		errs = append(errs, fmt.Errorf("namespaces left behind: %s (remove with: ip netns delete NAME)", strings.Join(left, " ")))
	default:
		d.printf("  All namespaces deleted: \"ip netns list\" shows nothing named %s*.\n", d.namePrefix())
	}
	return errors.Join(errs...)
}

// leftoverNamespaces lists the named network namespaces starting with prefix.
func leftoverNamespaces(prefix string) ([]string, error) {
	entries, err := os.ReadDir("/var/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			left = append(left, e.Name())
		}
	}
	return left, nil
}

// printLogTails prints the end of each vxland's log, for a failed run.
func (d *demo) printLogTails(w io.Writer) {
	const lines = 20
	for _, h := range d.hosts {
		if h.proc == nil {
			continue
		}
		out := strings.Split(strings.TrimRight(h.proc.Output(), "\n"), "\n")
		if len(out) > lines {
			out = out[len(out)-lines:]
		}
		fmt.Fprintf(w, "\nLast lines of vxland's log on %s (--log-level debug shows more):\n", h.name)
		for _, l := range out {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// printLogs prints every vxland's whole log.
func (d *demo) printLogs(w io.Writer) {
	for _, h := range d.hosts {
		if h.proc != nil {
			fmt.Fprintf(w, "\nvxland's log on %s:\n%s", h.name, h.proc.Output())
		}
	}
}
