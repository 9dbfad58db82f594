package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay"
)

// Addresses and names shared by all topologies. Each topology is its own set
// of namespaces, so they reuse them without colliding.
const (
	benchVNI       = 42
	benchPort      = 4789
	underlayIf     = "eth0"
	hostBridge     = "br0"
	overlaySubnet  = "10.200.0.%d/24" // containers of the overlays, one L2 segment
	routedSubnet   = "10.201.%d.0/24" // native routing: one subnet behind each host
	vxlandStartMax = 15 * time.Second
)

func underlayIP(host int) string { return fmt.Sprintf("10.77.0.%d", host) }

// topology is one configuration's two hosts and two containers, with the
// iperf3 server running in the measured destination.
type topology struct {
	config Config
	hosts  [2]*netlab.NS
	ctrs   [2]*netlab.NS
	// src sends and dst receives in every test: the hosts for the underlay,
	// the containers otherwise.
	src, dst *netlab.NS
	dstIP    string
	vxland   []*netlab.Process
	// vxlandSocks are the vxland processes' control sockets.
	vxlandSocks []string
}

// vxlandPIDs returns the PIDs whose CPU time counts as vxland's.
func (t *topology) vxlandPIDs() []int {
	var pids []int
	for _, p := range t.vxland {
		pids = append(pids, p.Pid())
	}
	return pids
}

// run lets the topology's vxland daemons run (SIGCONT) or stops them
// (SIGSTOP). Only the configuration being measured runs its daemons: one
// that polls (vxland-poll) would otherwise take CPU from the others'
// measurements, all of which share the machine.
func (t *topology) run(on bool) {
	sig := syscall.SIGSTOP
	if on {
		sig = syscall.SIGCONT
	}
	for _, p := range t.vxland {
		_ = syscall.Kill(p.Pid(), sig)
	}
}

// shortName is the part of the namespace names that says the configuration.
func shortName(c Config) string {
	switch c {
	case Underlay:
		return "ul"
	case NativeRouting:
		return "nr"
	case KernelVXLAN:
		return "kv"
	case Vxland:
		return "vx"
	case VxlandBase:
		return "vb"
	case VxlandPoll:
		return "vp"
	}
	return string(c)
}

// buildTopology creates configuration c in lab and checks that the
// destination answers.
func buildTopology(ctx context.Context, lab *netlab.Lab, o Options, c Config, workDir string) (t *topology, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("build %s topology: %w", c, err)
		}
	}()
	t = &topology{config: c}
	short := shortName(c)
	for i := range t.hosts {
		if t.hosts[i], err = lab.Namespace(fmt.Sprintf("%s-h%d", short, i+1)); err != nil {
			return nil, err
		}
	}
	h1, h2 := t.hosts[0], t.hosts[1]
	if err := lab.Veth(h1, underlayIf, h2, underlayIf); err != nil {
		return nil, err
	}
	for i, h := range t.hosts {
		if err := run(h, "ip", "link", "set", underlayIf, "mtu", strconv.Itoa(o.MTU)); err != nil {
			return nil, err
		}
		if err := h.Addr(underlayIf, underlayIP(i+1)+"/24"); err != nil {
			return nil, err
		}
		if o.Mode == WireLike {
			if err := run(h, append([]string{"ethtool", "-K", underlayIf}, wireLikeFeatures...)...); err != nil {
				return nil, err
			}
		}
		if err := h.Bridge(hostBridge); err != nil {
			return nil, err
		}
	}

	ctrMTU := o.MTU
	if c.Overlay() {
		ctrMTU = o.MTU - encap.OverheadIPv4
	}
	switch c {
	case NativeRouting:
		err = t.routeSubnets()
	case KernelVXLAN:
		err = t.kernelVXLAN(ctrMTU)
	case Vxland, VxlandBase, VxlandPoll:
		err = t.startVxland(ctx, o.executable(c), o.vxlandFlags(c), o.VxlandCPUs, workDir)
	}
	if err != nil {
		return nil, err
	}

	for i, h := range t.hosts {
		cidr := fmt.Sprintf(overlaySubnet, 10+i+1)
		if c == NativeRouting {
			cidr = fmt.Sprintf("10.201.%d.2/24", i+1)
		}
		hostIf := fmt.Sprintf("vc%d", i+1)
		if t.ctrs[i], err = lab.Container(h, hostBridge, hostIf, fmt.Sprintf("%s-c%d", short, i+1), cidr, ctrMTU); err != nil {
			return nil, err
		}
		// Both ends of the container's veth get its MTU, as a CNI plugin
		// sets them.
		if err := run(h, "ip", "link", "set", hostIf, "mtu", strconv.Itoa(ctrMTU)); err != nil {
			return nil, err
		}
		if c == NativeRouting {
			if err := run(t.ctrs[i], "ip", "route", "add", "default", "via", fmt.Sprintf("10.201.%d.1", i+1)); err != nil {
				return nil, err
			}
		}
	}

	switch c {
	case Underlay:
		t.src, t.dst, t.dstIP = h1, h2, underlayIP(2)
	case NativeRouting:
		t.src, t.dst, t.dstIP = t.ctrs[0], t.ctrs[1], "10.201.2.2"
	default:
		t.src, t.dst, t.dstIP = t.ctrs[0], t.ctrs[1], fmt.Sprintf("10.200.0.%d", 12)
	}
	reachCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := netlab.Reach(reachCtx, t.src, t.dst, t.dstIP); err != nil {
		return nil, err
	}
	if _, err := startIperfServer(ctx, t.dst, t.dstIP, o.AppCPUs); err != nil {
		return nil, err
	}
	return t, nil
}

// routeSubnets gives each host's bridge the gateway of its container
// subnet and a route to the other host's subnet via the underlay, and turns
// forwarding on in the hosts: plain routing, as Calico's BGP mode programs.
func (t *topology) routeSubnets() error {
	for i, h := range t.hosts {
		other := 2 - i // 1-based number of the other host
		if err := h.Addr(hostBridge, fmt.Sprintf("10.201.%d.1/24", i+1)); err != nil {
			return err
		}
		if err := run(h, "ip", "route", "add", fmt.Sprintf(routedSubnet, other), "via", underlayIP(other)); err != nil {
			return err
		}
		if err := h.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
			return err
		}
	}
	return nil
}

// kernelVXLAN puts a Linux vxlan device on each host's bridge, flooding
// unknown destinations to the other host, as flannel's vxlan backend does.
func (t *topology) kernelVXLAN(mtu int) error {
	for i, h := range t.hosts {
		other := underlayIP(2 - i)
		steps := [][]string{
			{"ip", "link", "add", "vx0", "type", "vxlan", "id", strconv.Itoa(benchVNI),
				"dstport", strconv.Itoa(benchPort), "local", underlayIP(i + 1), "dev", underlayIf},
			{"ip", "link", "set", "vx0", "mtu", strconv.Itoa(mtu), "master", hostBridge, "up"},
			{"bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", other},
		}
		for _, s := range steps {
			if err := run(h, s...); err != nil {
				return err
			}
		}
	}
	return nil
}

// startVxland runs vxland on both hosts, each with the other as static
// peer, its TAP on the host bridge, and waits until both answer on their
// control sockets. cpus, if any, confine it.
func (t *topology) startVxland(ctx context.Context, exe string, flags []string, cpus []int, workDir string) error {
	for i, h := range t.hosts {
		sock := filepath.Join(workDir, fmt.Sprintf("%s-h%d.sock", shortName(t.config), i+1))
		args := []string{"--vni", strconv.Itoa(benchVNI), "--port", strconv.Itoa(benchPort),
			"--local-ip", underlayIP(i + 1), "--peer", underlayIP(2 - i),
			"--bridge", hostBridge, "--tap", "vxtap0", "--control-socket", sock, "--log-level", "warn"}
		p, err := h.Start(pinned(cpus, append(append([]string{exe}, args...), flags...)...)...)
		if err != nil {
			return err
		}
		t.vxland = append(t.vxland, p)
		t.vxlandSocks = append(t.vxlandSocks, sock)
		if err := waitVxland(ctx, p, sock); err != nil {
			return err
		}
	}
	return nil
}

func waitVxland(ctx context.Context, p *netlab.Process, sock string) error {
	ctx, cancel := context.WithTimeout(ctx, vxlandStartMax)
	defer cancel()
	for {
		var s overlay.Stats
		getCtx, getCancel := context.WithTimeout(ctx, time.Second)
		err := control.Get(getCtx, sock, "/stats", &s)
		getCancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("vxland in %s exited: %w\n%s", p.NS, p.Wait(), p.Output())
		case <-ctx.Done():
			return fmt.Errorf("vxland in %s did not answer on %s: %w (last error: %w)\n%s", p.NS, sock, ctx.Err(), err, p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// run runs a command in ns, dropping its output unless it fails.
func run(ns *netlab.NS, args ...string) error {
	_, err := ns.Run(args...)
	return err
}
