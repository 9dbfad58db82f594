package main

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/vxland/vxland/overlay/fdb"
)

// liveSettings are the flags a reload applies to the running daemon; a
// change to any other is logged as needing a restart.
var liveSettings = map[string]bool{"log-level": true, "peer": true}

// supervisor is the part of the daemon that outlives a configuration: it
// reloads the configuration on SIGHUP, applies what can change live, and
// tells systemd when the daemon is ready, reloading or stopping.
type supervisor struct {
	parse func() (*config, error) // the command line, environment and file, read again
	level *slog.LevelVar
	log   *slog.Logger

	mu      sync.Mutex
	started *config // what the daemon was started with
	cfg     *config // the configuration in force: started, with live changes
	// peers has the static peers of each VNI served.
	peers []*staticPeers
	// vnis are the VNIs a reload may add to or remove from: nil while
	// the daemon serves one VNI without a Mux, or none yet.
	vnis   *liveVNIs
	notify *notifier
	ready  bool
}

func newSupervisor(cfg *config, parse func() (*config, error), level *slog.LevelVar, log *slog.Logger) *supervisor {
	return &supervisor{parse: parse, level: level, log: log, started: cfg, cfg: cfg, notify: newNotifier(log)}
}

// serve handles SIGHUP (hup) and pings systemd's watchdog until the
// daemon returns on done, and tells systemd it is stopping once ctx is.
func (sv *supervisor) serve(ctx context.Context, hup <-chan os.Signal, done <-chan error) error {
	var watchdog <-chan time.Time
	if d := sv.notify.watchdogPeriod(); d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		watchdog = t.C
	}
	stopping := ctx.Done()
	for {
		select {
		case <-hup:
			sv.reload()
		case <-watchdog:
			sv.send((*notifier).watchdog)
		case <-stopping:
			sv.send((*notifier).stopping)
			stopping, watchdog, hup = nil, nil, nil
		case err := <-done:
			return err
		}
	}
}

func (sv *supervisor) send(f func(*notifier)) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	f(sv.notify)
}

// readyWhen tells systemd the daemon is ready once ready is closed.
func (sv *supervisor) readyWhen(ctx context.Context, ready <-chan struct{}) {
	select {
	case <-ready:
	case <-ctx.Done():
		return
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.ready = true
	sv.notify.ready()
}

// attachPeers hands the static peers of the configuration in force to
// the FDB of vni, and every later reload's.
func (sv *supervisor) attachPeers(table *fdb.Table, vni uint32, self netip.Addr) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.attachPeersLocked(table, vni, self, sv.cfg.Peers)
}

func (sv *supervisor) attachPeersLocked(table *fdb.Table, vni uint32, self netip.Addr, peers []netip.Addr) {
	p := &staticPeers{table: table, vni: vni, self: self, log: sv.log}
	p.set(peers)
	sv.peers = append(sv.peers, p)
}

// serveVNIs lets reloads add VNIs to those of vnis and remove them.
func (sv *supervisor) serveVNIs(vnis *liveVNIs) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.vnis = vnis
}

// reloadVNIs adds the VNIs that next names and the daemon does not serve,
// and removes those it no longer names, while the others forward on. A
// change it cannot apply is logged, and next gets the VNIs served, which
// stay as they were.
func (sv *supervisor) reloadVNIs(next *config) {
	if sameVNIs(sv.cfg.VNIs, next.VNIs) {
		return
	}
	why := ""
	switch {
	case sv.vnis == nil:
		why = "a daemon started with one VNI serves that one until restart; one started with several adds and removes VNIs on reload"
	case len(next.VNIs) < 2:
		why = "a daemon started with several VNIs keeps serving several; one VNI alone takes its names from --bridge and --tap"
	}
	if why != "" {
		sv.log.Warn("VNIs changed; they take effect on restart", "key", "vni", "running", sv.cfg.Values["vni"], "new", next.Values["vni"], "why", why)
		next.VNIs = sv.cfg.VNIs
		return
	}
	self := sv.vnis.env.u.Addr
	added, removed, err := sv.vnis.apply(next.VNIs,
		func(t *fdb.Table, vni uint32) { sv.attachPeersLocked(t, vni, self, next.Peers) },
		func(vni uint32) {
			sv.peers = slices.DeleteFunc(sv.peers, func(p *staticPeers) bool { return p.vni == vni })
		})
	if err != nil {
		sv.log.Error("VNIs not changed; the daemon serves those it served", "key", "vni", "err", err)
		next.VNIs = sv.cfg.VNIs
		return
	}
	sv.log.Info("VNIs changed", "added", added, "removed", removed)
}

// sameVNIs reports whether a and b are the same VNIs with the same host
// setup, in any order.
func sameVNIs(a, b []vniPlane) bool {
	if len(a) != len(b) {
		return false
	}
	// A VNI's control socket is opened at start only: it does not make
	// a VNI to add or drop.
	served := func(p vniPlane) vniPlane { p.ControlSocket = ""; return p }
	for _, p := range a {
		if !slices.ContainsFunc(b, func(q vniPlane) bool { return served(q) == served(p) }) {
			return false
		}
	}
	return true
}

// reload reads the configuration again and applies it: all of it, or,
// when anything is wrong, none of it.
func (sv *supervisor) reload() {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.ready {
		sv.notify.reloading()
		defer sv.notify.ready()
	}
	next, err := sv.parse()
	if err == nil && len(sv.peers) > 0 {
		err = checkPeerFamily(next.Peers, sv.peers[0].self)
	}
	if err != nil {
		sv.log.Error("reload failed; the configuration in force is unchanged", "err", err)
		return
	}
	// reloadVNIs says itself what it cannot change live.
	sv.reloadVNIs(next)
	for _, key := range slices.Sorted(maps.Keys(next.Values)) {
		if key == "vni" {
			continue
		}
		if was, now := sv.started.Values[key], next.Values[key]; !liveSettings[key] && was != now {
			sv.log.Warn("setting changed; it takes effect on restart", "key", key, "running", was, "new", now)
		}
	}
	var changed []string
	for key := range liveSettings {
		if sv.cfg.Values[key] != next.Values[key] {
			changed = append(changed, key)
		}
	}
	slices.Sort(changed)
	sv.level.Set(next.LogLevel)
	for _, p := range sv.peers {
		p.set(next.Peers)
	}
	sv.cfg = next
	sv.log.Info("configuration reloaded", "changed", changed)
}

// staticPeers are the flood-list memberships that --peer makes. The FDB
// counts memberships (a VTEP that etcd names too stays when --peer drops
// it), so each one added is removed exactly once.
type staticPeers struct {
	table *fdb.Table
	vni   uint32
	self  netip.Addr
	log   *slog.Logger
	added map[netip.Addr]bool
}

// set makes the memberships those of peers.
func (p *staticPeers) set(peers []netip.Addr) {
	want := map[netip.Addr]bool{}
	for _, a := range peers {
		if a == p.self {
			p.log.Warn("ignoring --peer that is this host's own address", "peer", a)
			continue
		}
		want[a] = true
	}
	for a := range p.added {
		if !want[a] {
			p.table.RemoveFlood(p.vni, a, fdb.SourceStatic)
			p.log.Info("static peer removed", "peer", a)
		}
	}
	for a := range want {
		if !p.added[a] {
			p.table.AddFlood(p.vni, a, fdb.SourceStatic)
			p.log.Info("static peer added", "peer", a)
		}
	}
	p.added = want
}

// checkPeerFamily checks that every peer is reachable from the local VTEP
// address: IPv4 peers for an IPv4 VTEP, IPv6 for IPv6.
func checkPeerFamily(peers []netip.Addr, self netip.Addr) error {
	for _, p := range peers {
		if p.Is4() != self.Is4() {
			return flagErrorf("peer", "%s: not the same address family as the local VTEP address %s", p, self)
		}
	}
	return nil
}
