package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/hostnet"
	"github.com/vxland/vxland/overlay/tap"
)

// vniEnv is what every VNI of a daemon is brought up with: the settings,
// the underlay and its sockets, and where it reports.
type vniEnv struct {
	ctx         context.Context // the daemon's: a VNI's background work ends with it
	cfg         *config
	u           hostnet.Underlay
	mtu, tapMTU int // the overlay's and the TAP's MTU of a VNI without one of its own
	conns       []overlay.PacketConn
	st          *status
	log         *slog.Logger
}

// vniUp is one VNI brought up: its TAP on its bridge, kept there by a
// healer, its FDB with the static entries of --state-dir, and its Overlay.
type vniUp struct {
	plane  vniPlane
	tap    *tap.Device
	ov     *overlay.Overlay
	dp     dataPlane
	host   hostTAP
	tables vniTables
	// stopHealer ends the healer's watch of the TAP.
	stopHealer context.CancelFunc
}

// bringUpVNI opens p's TAP, puts it on its bridge and builds its Overlay
// on the shared sockets. On error it has closed what it opened.
func (e *vniEnv) bringUpVNI(p vniPlane) (_ *vniUp, err error) {
	cfg, log := e.cfg, e.log
	mtu, tapMTU := e.mtu, e.tapMTU
	if p.MTU != 0 && p.MTU != cfg.MTU {
		// A VNI with an MTU of its own (the --config file's vnis).
		if mtu, err = pickMTU(e.u, p.MTU, fmt.Sprintf("VNI %d's mtu", p.VNI), cfg.ForceMTU); err != nil {
			return nil, err
		}
		if tapMTU, err = pickTAPMTU(cfg.TAPMTU, mtu); err != nil {
			return nil, err
		}
	}
	tapDev, err := openTAP(cfg, p.TAP, mtu, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			// A TAP made here for nothing goes, --persist or not.
			if !tapDev.Adopted() {
				tapDev.Unpersist()
			}
			tapDev.Close()
		}
	}()
	mac, err := hostnet.AttachTAP(tapDev.Name(), p.Bridge, tapMTU)
	if err != nil {
		return nil, err
	}
	t := fdb.New(cfg.Port, cfg.FDBAgeing)
	static, err := loadStaticFDB(cfg.StateDir, p.VNI, e.u.Addr, t)
	if err != nil {
		return nil, err
	}
	c := overlay.Config{VNI: p.VNI, LocalMAC: mac, MTU: mtu, Logger: log, BatchWhenIdle: cfg.BatchWhenIdle, Poll: cfg.Poll, NoLearning: !cfg.Learning}
	if p.Group.IsValid() {
		t.SetGroup(p.VNI, p.Group)
		c.GroupSenders = cfg.Underlay
	}
	cfg.Limits.apply(&c, t)
	if cfg.UseEtcd() {
		c.Local, c.Neighbors = cfg.Limits.localTable(), fdb.NewNeighbors()
	}
	ov, err := overlay.New(c, queues(tapDev, e.conns), t)
	if err != nil {
		return nil, err
	}
	healer := hostnet.NewBridgedHealer(tapDev.Name(), p.Bridge, tapMTU, log)
	hctx, stopHealer := context.WithCancel(e.ctx)
	e.st.wg.Go(func() { healer.Run(hctx) })
	log.Info("VNI up", "vni", p.VNI, "tap", tapDev.Name(), "mac", mac, "bridge", p.Bridge, "mtu", mtu, "tap_mtu", tapMTU, "group", p.Group)
	return &vniUp{
		plane: p, tap: tapDev, ov: ov,
		dp: dataPlane{ov: ov, vni: p.VNI, table: t, local: netip.AddrPortFrom(e.u.Addr, cfg.Port), static: static,
			settings: cfg.Settings, heals: healer.Heals, adopted: tapDev.Adopted()},
		host:       hostTAP{tapDev.Name(), p.Bridge},
		tables:     vniTables{vni: p.VNI, fdb: t, local: c.Local, neighbors: c.Neighbors},
		stopHealer: stopHealer,
	}, nil
}

// liveVNIs are the VNIs of a running Mux, which a reload adds to and
// removes from while the others forward on.
type liveVNIs struct {
	env *vniEnv
	mux *overlay.Mux
	up  []*vniUp // sorted by VNI
	// agents are the VNIs' etcd agents; nil without etcd.
	agents *vniAgents
}

// publish makes the status (readiness, control sockets, metrics) that of
// the VNIs up.
func (l *liveVNIs) publish() {
	var (
		hosts  []hostTAP
		planes []dataPlane
	)
	for _, v := range l.up {
		hosts, planes = append(hosts, v.host), append(planes, v.dp)
	}
	l.env.st.tapUp(hosts...)
	l.env.st.dataPlanesUp(planes, l.mux)
}

// changes returns the VNIs of want that are not up (add) and those up
// that want does not name (drop). A VNI up whose bridge, TAP, MTU or
// multicast group want changes, or a new VNI with a group, cannot be
// changed live: that is an error naming it.
func (l *liveVNIs) changes(want []vniPlane) (add []vniPlane, drop []*vniUp, err error) {
	for _, p := range want {
		k := slices.IndexFunc(l.up, func(v *vniUp) bool { return v.plane.VNI == p.VNI })
		switch {
		case k < 0 && p.Group.IsValid():
			err = errors.Join(err, fmt.Errorf("VNI %d: its multicast group %s is joined when the sockets are made; that takes effect on restart", p.VNI, p.Group))
		case k < 0:
			add = append(add, p)
		case l.up[k].plane.Group != p.Group:
			err = errors.Join(err, fmt.Errorf("VNI %d: its multicast group changed (%s); that takes effect on restart", p.VNI, p.Group))
		case l.up[k].plane.Bridge != p.Bridge || l.up[k].plane.TAP != p.TAP || l.up[k].plane.MTU != p.MTU:
			err = errors.Join(err, fmt.Errorf("VNI %d: its bridge, TAP or MTU changed (bridge %s, TAP %s, mtu %d); that takes effect on restart",
				p.VNI, p.Bridge, p.TAP, p.MTU))
		}
	}
	for _, v := range l.up {
		if !slices.ContainsFunc(want, func(p vniPlane) bool { return p.VNI == v.plane.VNI }) {
			drop = append(drop, v)
		}
	}
	return add, drop, err
}

// apply makes the VNIs served those of want: all of the change, or, when
// a VNI cannot be brought up, none of it. attach hands a new VNI's FDB
// its static peers; detach forgets a dropped VNI's.
func (l *liveVNIs) apply(want []vniPlane, attach func(t *fdb.Table, vni uint32), detach func(vni uint32)) (added, removed []uint32, err error) {
	add, drop, err := l.changes(want)
	if err != nil {
		return nil, nil, err
	}
	var news []*vniUp
	undo := func() {
		for _, v := range news {
			l.mux.Remove(v.plane.VNI)
			v.discard()
			detach(v.plane.VNI)
		}
	}
	for _, p := range add {
		v, err := l.env.bringUpVNI(p)
		if err == nil {
			if err = l.mux.Add(v.ov); err != nil {
				v.discard()
			}
		}
		if err != nil {
			undo()
			return nil, nil, fmt.Errorf("VNI %d: %w", p.VNI, err)
		}
		news = append(news, v)
		attach(v.tables.fdb, p.VNI)
		added = append(added, p.VNI)
	}
	// The dropped VNIs' agents go first, their leases revoked together:
	// the other hosts stop sending to this one before a VNI stops taking
	// traffic.
	if l.agents != nil && len(drop) > 0 {
		vnis := make([]uint32, len(drop))
		for i, v := range drop {
			vnis[i] = v.plane.VNI
		}
		l.agents.stop(vnis...)
	}
	for _, v := range drop {
		// Out of the status first, so that nothing reports on a VNI
		// half gone; the Mux closes its TAP once no thread uses it.
		l.up = slices.DeleteFunc(l.up, func(x *vniUp) bool { return x == v })
		l.publish()
		v.stopHealer()
		// A TAP kept across restarts (--persist) goes too: the VNI is
		// no longer served.
		if err := v.tap.Unpersist(); err != nil {
			l.env.log.Warn("the TAP of a VNI removed stays", "vni", v.plane.VNI, "tap", v.tap.Name(), "err", err)
		}
		if err := l.mux.Remove(v.plane.VNI); err != nil {
			l.env.log.Error("VNI not removed", "vni", v.plane.VNI, "err", err)
		}
		detach(v.plane.VNI)
		removed = append(removed, v.plane.VNI)
		l.env.log.Info("VNI down", "vni", v.plane.VNI, "tap", v.tap.Name(), "bridge", v.plane.Bridge)
	}
	l.up = append(l.up, news...)
	slices.SortFunc(l.up, func(a, b *vniUp) int { return int(a.plane.VNI) - int(b.plane.VNI) })
	l.publish()
	// The new VNIs forward before their agents publish them in etcd.
	if l.agents != nil && len(news) > 0 {
		tables := make([]vniTables, len(news))
		for i, v := range news {
			tables[i] = v.tables
		}
		l.agents.start(tables...)
	}
	return added, removed, nil
}

// discard undoes bringUpVNI for a VNI that a failed reload brought up: a
// TAP made for it goes, --persist or not; one adopted from an earlier run
// stays, as bringUpVNI's own failure leaves it.
func (v *vniUp) discard() {
	v.stopHealer()
	if !v.tap.Adopted() {
		v.tap.Unpersist()
	}
	v.tap.Close()
}
