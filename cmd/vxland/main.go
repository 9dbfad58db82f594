// Command vxland is a userspace VXLAN overlay daemon: it carries the
// Ethernet frames of a TAP device on a Linux bridge to the other hosts of
// the overlay, over RFC 7348 VXLAN.
//
// Exit status: 0 after a clean shutdown (SIGINT or SIGTERM), 1 when the
// daemon fails while running, 2 for a bad flag, configuration value or
// missing prerequisite.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/etcdwatch"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/hostnet"
	"github.com/vxland/vxland/overlay/tap"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "show":
			return show(args[1:], os.Getenv, stdout, stderr)
		case "trace":
			return trace(args[1:], os.Getenv, stdout, stderr)
		case "capture":
			return capture(args[1:], os.Getenv, stdout, stderr)
		case "fdb":
			return fdbCommand(args[1:], os.Getenv, stdout, stderr)
		}
	}
	cfg, err := parseConfig(args, os.Getenv, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errVersion) {
		fmt.Fprintln(stdout, "vxland", versionString())
		return 0
	}
	if err == nil {
		err = preflight(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vxland: %v\n", err)
		var ue *usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	level := new(slog.LevelVar)
	level.Set(cfg.LogLevel)
	log := newLogger(stderr, cfg.LogFormat, level)
	// Each queue's forwarding thread keeps its P while it waits for
	// packets, so that a wake-up costs the runtime nothing (overlay.Run):
	// one more P per queue lets the rest of the daemon (etcd client,
	// control socket, the runtime's own work) keep the ones it had.
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + cfg.Queues)
	setGCPercent(os.Getenv)
	// SIGHUP reloads the configuration; without Notify it would end the
	// process on the spot, its etcd lease left to expire.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sv := newSupervisor(cfg, func() (*config, error) { return parseConfig(args, os.Getenv, io.Discard) }, level, log)
	start := daemon
	if cfg.Mode == modeFlannel {
		start = flannelDaemon
	}
	done := make(chan error, 1)
	go func() { done <- start(ctx, cfg, log, sv) }()
	if err := sv.serve(ctx, hup, done); err != nil {
		log.Error("vxland stopped", "err", err)
		var ue *usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	log.Info("vxland stopped")
	return 0
}

// daemonGCPercent is the daemon's GOGC unless the environment sets one.
// Most of its live heap is the data plane's batch and GRO buffers
// (about 20 MB), allocated once, and the data path allocates nothing:
// the garbage is the control plane's (a list of 10,000 MACs from etcd
// leaves about 13 MB). With Go's default of 100 a collection waits until
// the heap has grown by as much as the buffers hold, so that garbage
// stays resident; collecting after a quarter of it instead costs little,
// since the buffers hold no pointers for the collector to scan.
const daemonGCPercent = 25

// setGCPercent sets daemonGCPercent unless the environment has GOGC.
func setGCPercent(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(daemonGCPercent)
	}
}

func newLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// tunPath is the TUN/TAP clone device.
const tunPath = "/dev/net/tun"

// preflight checks what the daemon needs from the system, so that a
// missing piece gets one clear line instead of a failure half-way up.
func preflight(cfg *config) error {
	if os.Geteuid() != 0 {
		return usagef("vxland must run as root (it creates a TAP device and configures a bridge)")
	}
	if _, err := os.Stat(tunPath); err != nil {
		return usagef("%s is missing: load the tun module (modprobe tun) or give the container the device", tunPath)
	}
	if cfg.Iface != "" && !hostnet.InterfaceExists(cfg.Iface) {
		return usagef("--iface %q: no such interface", cfg.Iface)
	}
	return nil
}

// pickMTU returns the overlay MTU: mtu (named by source) when set, else
// the underlay's less the VXLAN overhead. A larger one is refused unless
// force is set: vxland sends with DF and never fragments, so frames that
// do not fit the underlay would be refused by it, not carried.
func pickMTU(u hostnet.Underlay, mtu int, source string, force bool) (int, error) {
	fit := u.OverlayMTU()
	switch {
	case mtu == 0 && fit < 68:
		return 0, usagef("underlay %s has MTU %d, too small for VXLAN; set --mtu", u.Iface, u.MTU)
	case mtu == 0:
		return fit, nil
	case mtu > fit && !force:
		return 0, usagef("%s %d is larger than underlay %s carries whole (MTU %d less %d bytes of VXLAN overhead: %d); lower it, or add --force-mtu",
			source, mtu, u.Iface, u.MTU, u.MTU-fit, fit)
	}
	return mtu, nil
}

// pickTAPMTU returns the TAP's link MTU: tapMTU when set, else the overlay
// MTU mtu. Below mtu it is refused: the bridge would drop frames that the
// overlay carries. Above, the bridge hands vxland the packets of
// containers with a larger MTU, which the data plane drops and answers
// with ICMP "too big" (path MTU discovery), where a TAP of the overlay
// MTU would have them dropped by the bridge, unanswered.
func pickTAPMTU(tapMTU, mtu int) (int, error) {
	switch {
	case tapMTU == 0:
		return mtu, nil
	case tapMTU < mtu:
		return 0, flagErrorf("tap-mtu", "%d is below the overlay MTU %d: the bridge would drop what the overlay carries; raise it, or leave it 0", tapMTU, mtu)
	}
	return tapMTU, nil
}

// daemon brings the overlay up, runs it until ctx is done and takes it down.
// It is ready for systemd once the data plane is up and, with etcd, the
// FDB is in step with it; a reload changes its static peers (sv).
func daemon(ctx context.Context, cfg *config, log *slog.Logger, sv *supervisor) error {
	u, err := hostnet.ResolveUnderlay(cfg.Iface, cfg.LocalIP)
	if err != nil {
		switch {
		case cfg.LocalIP.IsValid():
			return usagef("--local-ip %s: %v", cfg.LocalIP, err)
		case cfg.Iface != "":
			return usagef("--iface %s: %v", cfg.Iface, err)
		}
		return usagef("%v", err)
	}
	if err := checkPeerFamily(cfg.Peers, u.Addr); err != nil {
		return err
	}
	if err := cfg.Outer.checkFamily(u.Addr); err != nil {
		return err
	}
	for _, p := range cfg.VNIs {
		if p.Group.IsValid() && p.Group.Is4() != u.Addr.Is4() {
			return usagef("--group %s: not the same address family as this host's VTEP address %s", p.Group, u.Addr)
		}
	}
	if err := cfg.Underlay.Check(u.Addr); err != nil {
		return usagef("--underlay-cidr %s: this host's VTEP address %s is outside it", cfg.Underlay, u.Addr)
	}
	mtu, err := pickMTU(u, cfg.MTU, "--mtu", cfg.ForceMTU)
	if err != nil {
		return err
	}
	tapMTU, err := pickTAPMTU(cfg.TAPMTU, mtu)
	if err != nil {
		return err
	}

	// The servers answer from here on; every return stops them (cancel)
	// and waits for them.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	checks := []pending{{checkTAP, "TAP not open yet"}, {checkUnderlay, "UDP sockets not bound yet"}}
	if cfg.UseEtcd() {
		checks = append(checks, pending{checkEtcd, "FDB not yet filled from etcd"})
	}
	st, err := startStatus(ctx, cfg, log, checks...)
	defer func() {
		cancel()
		st.wait()
	}()
	if err != nil {
		return err
	}

	// Everything opened below is closed in reverse order on return.
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	conns, err := openUnderlay(cfg, netip.AddrPortFrom(u.Addr, cfg.Port), u.Iface, log)
	if err != nil {
		return err
	}
	st.done(checkUnderlay)
	// From here the overlay owns conns and the TAPs once Run starts; until
	// then they are ours to close.
	running := false
	var taps []*tap.Device
	closers = append(closers, func() {
		if !running {
			for _, t := range taps {
				t.Close()
			}
			closeConns(conns)
		}
	})
	env := &vniEnv{ctx: ctx, cfg: cfg, u: u, mtu: mtu, tapMTU: tapMTU, conns: conns, st: st, log: log}
	var (
		ovs     []*overlay.Overlay
		ups     []*vniUp
		members []vniTables // the tables the etcd agents drive, by VNI
	)
	for _, p := range cfg.VNIs {
		v, err := env.bringUpVNI(p)
		if err != nil {
			return err
		}
		taps = append(taps, v.tap)
		sv.attachPeers(v.tables.fdb, p.VNI, u.Addr)
		members = append(members, v.tables)
		ovs = append(ovs, v.ov)
		ups = append(ups, v)
	}
	run := ovs[0].Run
	var live *liveVNIs
	if len(ovs) == 1 {
		st.tapUp(ups[0].host)
		st.dataPlaneUp(ups[0].dp)
	} else {
		mux, err := overlay.NewMux(conns, ovs)
		if err != nil {
			return err
		}
		live = &liveVNIs{env: env, mux: mux, up: ups}
		live.publish()
		run = mux.Run
	}

	up := make(chan struct{})
	close(up)
	ready := (<-chan struct{})(up)
	if cfg.UseEtcd() {
		agents, stopDiscovery, synced, err := startDiscovery(ctx, cfg, u.Addr, members, st, log)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		if err != nil {
			return err
		}
		closers = append(closers, stopDiscovery)
		ready = synced
		if live != nil {
			live.agents = agents
		}
	}
	if live != nil {
		// Reloads change the VNIs from here on, their agents with them.
		sv.serveVNIs(live)
	}
	go sv.readyWhen(ctx, ready)

	log.Info("vxland up", "version", versionString(), "vni", cfg.Values["vni"], "local", u.Addr, "port", cfg.Port, "iface", u.Iface,
		"mtu", mtu, "tap_mtu", tapMTU, "peers", len(cfg.Peers),
		"etcd", cfg.UseEtcd(), "control", cfg.ControlSocket, "persist", cfg.Persist)
	running = true
	err = run(ctx)
	cancel()
	return errors.Join(err, st.wait())
}

// vniTables are the tables of one VNI that its etcd agent drives.
type vniTables struct {
	vni       uint32
	fdb       *fdb.Table
	local     *fdb.LocalTable
	neighbors *fdb.Neighbors
}

// startDiscovery starts the embedded etcd if asked, connects to etcd and
// runs the control plane in the background: one agent per VNI, all on
// one etcd client (when etcd must be logged in to later, each agent makes
// its own in the background). agents starts and stops the agents of VNIs
// a reload adds and removes; stop stops all of it, revoking this host's
// leases; synced is closed once every VNI's FDB is in step with etcd for
// the first time.
//
// Each agent registers, publishes and watches under its VNI's keys, on a
// lease of its own: the agent re-registers by itself when its lease is
// lost, and a lease shared between agents would have them re-register
// each other's keys. A host serving n VNIs holds n leases, renewed over
// the one client's connection.
func startDiscovery(ctx context.Context, cfg *config, self netip.Addr, vnis []vniTables, st *status, log *slog.Logger) (agents *vniAgents, stop func(), synced <-chan struct{}, err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	endpoints := cfg.EtcdEndpoints
	if cfg.EmbeddedEtcd != "" {
		e, err := discovery.StartEmbedded(ctx, discovery.EmbeddedConfig{Dir: cfg.EmbeddedEtcd, Listen: cfg.EmbeddedEtcdListen,
			CertFile: cfg.EmbeddedEtcdCertFile, KeyFile: cfg.EmbeddedEtcdKeyFile, ClientCAFile: cfg.EmbeddedEtcdClientCAFile})
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, nil, ctx.Err() // stopped while etcd was starting
			}
			return nil, nil, nil, usagef("--embedded-etcd %s: %v", cfg.EmbeddedEtcd, err)
		}
		stops = append(stops, e.Close)
		log.Info("embedded etcd serving", "endpoints", e.Endpoints(), "dir", cfg.EmbeddedEtcd)
		if len(endpoints) == 0 {
			endpoints = e.Endpoints()
		}
		go func() {
			select {
			case err := <-e.Err():
				log.Error("embedded etcd failed; forwarding continues with the current FDB", "err", err)
			case <-ctx.Done():
			}
		}()
	}
	// With a user name the client logs in when it is made, so it waits
	// for etcd: a refused password ends the daemon here (exit 2), while
	// an etcd that does not answer is logged in to by the agent in the
	// background, and forwarding starts without it.
	connect := func(ctx context.Context) (*clientv3.Client, error) { return newEtcdClient(ctx, cfg, endpoints) }
	cli, err := connect(ctx)
	var ue *usageError
	switch {
	case err == nil:
		stops = append(stops, func() { cli.Close() })
	case cfg.EtcdUsername != "" && !errors.As(err, &ue):
		log.Warn("etcd does not answer the login; forwarding starts, and the login is retried in the background", "err", err)
	default:
		stop()
		return nil, nil, nil, err
	}
	hostname, _ := os.Hostname()
	agents = newVNIAgents(ctx, func(v vniTables) *discovery.Agent {
		return discovery.New(discovery.Config{
			Client: cli, Connect: connect, Prefix: cfg.EtcdPrefix, VNI: v.vni, Self: self, Port: cfg.Port, Hostname: hostname,
			LeaseTTL: cfg.LeaseTTL, Ageing: cfg.FDBAgeing, Underlay: cfg.Underlay,
			FDB: v.fdb, Local: v.local, Neighbors: v.neighbors, Logger: log, AfterList: returnListMemory,
		})
	}, st, log)
	started := agents.start(vnis...)
	all := make(chan struct{})
	go func() {
		for _, a := range started {
			select {
			case <-a.Synced():
			case <-agents.ctx.Done():
				return
			}
		}
		close(all)
	}()
	if cfg.EtcdCAFile != "" || cfg.EtcdCertFile != "" {
		go explainTLS(agents.ctx, etcdClientConfig(cfg, endpoints), all, log)
	}
	stops = append(stops, agents.stopAll)
	return agents, stop, all, nil
}

// newEtcdClient connects to etcd at endpoints with the credentials of cfg.
// A refused password is a usage error: the configuration is wrong, and
// retrying will not mend it.
func newEtcdClient(ctx context.Context, cfg *config, endpoints []string) (*clientv3.Client, error) {
	cli, err := discovery.NewClient(ctx, etcdClientConfig(cfg, endpoints))
	if errors.Is(err, rpctypes.ErrAuthFailed) {
		return nil, usagef("--etcd-username: %w", err)
	}
	return cli, err
}

func etcdClientConfig(cfg *config, endpoints []string) discovery.ClientConfig {
	return discovery.ClientConfig{Endpoints: endpoints,
		CAFile: cfg.EtcdCAFile, CertFile: cfg.EtcdCertFile, KeyFile: cfg.EtcdKeyFile,
		Username: cfg.EtcdUsername, Password: cfg.EtcdPassword}
}

// explainTLS says in the log, as an error, why the agent cannot reach
// etcd when etcd and this host do not trust each other's certificates:
// the etcd client itself only times out. It checks with backoff until
// the FDB is in step with etcd, and logs each new refusal once.
func explainTLS(ctx context.Context, c discovery.ClientConfig, synced <-chan struct{}, log *slog.Logger) {
	last := ""
	for attempt := 0; ; attempt++ {
		select {
		case <-synced:
			return
		default:
		}
		err := c.CheckTLS(ctx)
		if errors.Is(err, discovery.ErrTLSRefused) && err.Error() != last {
			last = err.Error()
			log.Error("etcd and this host refuse each other's TLS certificates: check --etcd-cafile, --etcd-certfile and --etcd-keyfile against etcd's CA; retrying", "err", err)
		}
		if !etcdwatch.Sleep(ctx, etcdwatch.Backoff(attempt)) {
			return
		}
	}
}

// dataPlaneHandler serves the data plane's state, the host setup's heals,
// the daemon's settings and captures on the control socket, and with
// static the static FDB entries of `vxland fdb`; local is the VTEP address
// that outer packets of a capture are built with.
func dataPlaneHandler(ov *overlay.Overlay, local netip.AddrPort, settings []setting, heals func() uint64, static *staticFDB) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", control.Handler(ov, settings, heals))
	mux.Handle("GET /capture", control.CaptureHandler(ov, local))
	if static != nil {
		h := static.handler()
		mux.Handle("POST /fdb", h)
		mux.Handle("DELETE /fdb", h)
	}
	return mux
}

// largeList is the number of etcd keys from which a list is followed by
// returning the memory it freed to the kernel.
const largeList = 1000

// returnListMemory returns to the kernel, after a list of many keys, the
// memory that held the list's response and its decoding. Without it the
// runtime's scavenger gives it back over minutes, and the resident set
// stays megabytes above what the daemon uses (2–5 MB after a list of
// 10,000 MACs, in vxctlbench --real-host). A list of the prefix happens
// at the start and after a compaction, so the cost, a garbage
// collection, is rare.
func returnListMemory(keys int) {
	if keys >= largeList {
		debug.FreeOSMemory()
	}
}
