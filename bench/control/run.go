package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxland/vxland/bench"
	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/overlay/fdb"
)

// The simulated hosts all join one VNI.
const (
	benchVNI  = 42
	benchPort = 4789
)

// Options say what to measure.
type Options struct {
	Hosts int // simulated hosts, each a discovery agent with its own client
	MACs  int // MACs each host publishes
	// PublishRate is how many MACs per second the hosts publish, all
	// together, in the publication phase.
	PublishRate int
	// ChurnRate is the share of all MACs that move to another host each
	// second during the churn phase, which lasts Churn.
	ChurnRate float64
	Churn     time.Duration
	// Wait bounds each wait for convergence.
	Wait time.Duration
	// Vxland, when set, is a vxland binary: after the publication, a real
	// vxland joins from a network-namespace host, and the run measures
	// its memory, its lists of etcd and its forwarding (RealHost); needs
	// root.
	Vxland string
	// Dir holds etcd's data; it is removed at the end.
	Dir string
	// Progress, when set, is told what the bench is doing.
	Progress func(format string, args ...any)
}

// Latency sums up one kind of convergence: from an event (a host's
// registration, a MAC's publication or move) until every other host had it.
type Latency struct {
	P50, P99, Max time.Duration
	N             int // events measured
	Missing       int // events not converged within Options.Wait
	// Receipts counts what the hosts were told of the events, out of
	// Want; Behind is how many hosts still differed from etcd when the
	// wait gave up (0 when every event converged, -1 when etcd did not
	// answer the list that counts them).
	Receipts, Want int64
	Behind         int
}

// Result is what one run measured.
type Result struct {
	Hosts, MACs int

	Registration, Publication, Churn Latency
	// PublicationWrites and PublicationWrite are the etcd writes the
	// agents made to publish, and their mean round trip.
	PublicationWrites int64
	PublicationWrite  time.Duration
	// Moves is how many MACs moved during the churn phase, WritesPerMove
	// the etcd writes (puts, transactions, deletes) all agents made
	// during it per move, and KeysPerMove the keys those writes put or
	// deleted per move: 1 when a move is one claim and nothing else.
	Moves                      int
	WritesPerMove, KeysPerMove float64

	// Compaction: every agent's watch found its revision compacted and
	// listed the VNI's keys again. RelistTime is from the cut of every
	// client connection until the last agent had listed; RelistBytes what
	// etcd sent all clients meanwhile.
	Relists     int64
	RelistTime  time.Duration
	RelistBytes int64
	// RelistsBehind is how many agents had not re-listed when the wait
	// gave up. CompactionMismatch names the hosts whose data plane
	// differed from etcd after the re-list.
	RelistsBehind      int
	CompactionMismatch []string

	// Leader change: the leader member killed. LeaderWrite is from the
	// kill until the other two accepted a write (the election);
	// LeaderResume until every agent had that write; LeaderEqual until
	// every agent's data plane equalled etcd; LeaderLists the lists the
	// agents made meanwhile, at most LeaderListsPerSecond in one second.
	LeaderWrite, LeaderResume, LeaderEqual time.Duration
	LeaderLists                            int64
	LeaderListsPerSecond                   int64
	LeaderMismatch                         []string

	// etcd's load: the agents' requests per second over the whole run
	// (keep-alives and watches are streams, not counted), the database
	// size at the end, the watchers across the three members.
	// Real is what the real vxland measured, with Options.Vxland.
	Real *RealHost

	RequestsPerSecond float64
	DBSize            int64
	Watchers          int
	Elapsed           time.Duration
	// Stopped, when not empty, is the phase that failed and why: the
	// figures of later phases are missing.
	Stopped string
}

// host is one simulated host: a real discovery agent with its own etcd
// client, a local table the bench puts MACs in, and a stand-in data plane.
type host struct {
	index  int
	addr   netip.Addr
	client *clientv3.Client
	local  *fdb.LocalTable
	fdb    *standIn
	agent  *discovery.Agent
	cancel context.CancelFunc
	done   chan struct{}
}

// runner is one run.
type runner struct {
	o       Options
	clock   clock
	cluster *Cluster
	meter   *meter
	hosts   []*host
	macs    []event // by slot: slot h*MACs+j is host h's MAC j; then markers
	joins   []event // by host
	owner   []int   // by slot, the host the MAC lives behind
	rng     *rand.Rand
	real    *realHost // with Options.Vxland
}

// markers are the MACs the bench writes itself, to see that every watch
// delivers a write made after some moment.
const markers = 4

// Run measures the control plane with o.Hosts agents on a three-member
// etcd cluster.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Hosts < 2 || o.MACs < 1 || o.PublishRate < 1 || o.ChurnRate <= 0 || o.Wait <= 0 {
		return nil, fmt.Errorf("control bench: need at least 2 hosts, 1 MAC each, a publish rate, a churn rate and a wait, got %+v", o)
	}
	if o.Progress == nil {
		o.Progress = func(string, ...any) {}
	}
	b := &runner{
		o:     o,
		clock: clock{epoch: time.Now()},
		meter: newMeter(),
		macs:  make([]event, o.Hosts*o.MACs+markers),
		joins: make([]event, o.Hosts),
		owner: make([]int, o.Hosts*o.MACs),
		rng:   rand.New(rand.NewPCG(uint64(o.Hosts), uint64(o.MACs))),
	}
	o.Progress("starting a three-member etcd cluster")
	var err error
	if b.cluster, err = StartCluster(ctx, o.Dir); err != nil {
		return nil, err
	}
	defer b.cluster.Close()
	defer b.stopHosts()

	if o.Vxland != "" {
		o.Progress("building the real vxland's hosts")
		err := b.startRealHost(ctx)
		if b.real != nil {
			defer b.real.close()
		}
		if err != nil {
			return nil, err
		}
	}

	res := &Result{Hosts: o.Hosts, MACs: o.MACs}
	start := time.Now()
	type phase struct {
		name string
		run  func(context.Context, *Result) error
	}
	phases := []phase{
		{"registration", b.join},
		{"publication", b.publish},
	}
	if b.real != nil {
		phases = append(phases, phase{"a real vxland joins", b.joinRealHost})
	}
	phases = append(phases, []phase{
		{"churn", b.churn},
		{"leader change", b.leaderChange},
		{"compaction", b.compaction},
	}...)
	for _, p := range phases {
		o.Progress("%d hosts × %d MACs: %s", o.Hosts, o.MACs, p.name)
		if err := p.run(ctx, res); err != nil {
			res.Stopped = fmt.Sprintf("%s: %v", p.name, err)
			res.Elapsed = time.Since(start)
			return res, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	res.Elapsed = time.Since(start)
	res.RequestsPerSecond = float64(b.meter.requests.Load()) / res.Elapsed.Seconds()
	st, err := b.cluster.Status(ctx)
	if err != nil {
		return res, err
	}
	res.DBSize = st.DBSize
	res.Watchers = watchers()
	return res, nil
}

// join starts the hosts in ten cohorts, each once the one before has
// synced; a registration is waited for by the hosts of earlier cohorts.
func (b *runner) join(ctx context.Context, res *Result) error {
	n := b.o.Hosts
	size := max(n/10, 1)
	for first := 0; first < n; first += size {
		cohort := first / size
		for i := first; i < min(first+size, n); i++ {
			b.joins[i].cohort.Store(int32(cohort))
			b.joins[i].begin(b.clock, hostAddr(i), first)
			if err := b.startHost(ctx, i, int32(cohort)); err != nil {
				return err
			}
		}
		if err := b.wait(ctx, "hosts synced", func() bool {
			for _, h := range b.hosts[first:] {
				select {
				case <-h.agent.Synced():
				default:
					return false
				}
			}
			return eventsDone(b.joins[first:len(b.hosts)])
		}); err != nil && !errors.Is(err, errNotConverged) {
			return err
		}
	}
	res.Registration = summarize(b.joins[size:])
	return b.countBehind(ctx, &res.Registration)
}

func (b *runner) startHost(ctx context.Context, i int, cohort int32) error {
	h, err := b.newHost(ctx, hostAddr(i), fmt.Sprintf("sim%d", i),
		&standIn{clock: b.clock, cohort: cohort, macs: b.macs, joins: b.joins})
	if err != nil {
		return err
	}
	h.index = i
	b.hosts = append(b.hosts, h)
	return nil
}

// newHost starts a discovery agent for a host at addr, with its own etcd
// client, telling fdb what it learns. The caller stops it.
func (b *runner) newHost(ctx context.Context, addr netip.Addr, name string, fdbStandIn *standIn) (*host, error) {
	cli, err := discovery.NewClient(ctx, discovery.ClientConfig{Endpoints: b.cluster.Endpoints(), DialOptions: b.meter.dialOptions()})
	if err != nil {
		return nil, err
	}
	fdbStandIn.fdb = make(map[fdb.MAC]netip.Addr)
	fdbStandIn.flood = make(map[netip.Addr]bool)
	h := &host{
		addr:   addr,
		client: cli,
		local:  fdb.NewLocalTable(fdb.LocalLimits{}),
		fdb:    fdbStandIn,
		done:   make(chan struct{}),
	}
	h.agent = discovery.New(discovery.Config{
		Client: cli, VNI: benchVNI, Self: h.addr, Port: benchPort,
		Hostname: name, LeaseTTL: 10 * time.Second,
		FDB: h.fdb, Local: h.local,
	})
	hctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	go func() {
		defer close(h.done)
		_ = h.agent.Run(hctx)
	}()
	return h, nil
}

// stop stops the host's agent and closes its client.
func (h *host) stop() {
	h.cancel()
	<-h.done
	h.client.Close()
}

func (b *runner) stopHosts() {
	for _, h := range b.hosts {
		h.cancel()
	}
	for _, h := range b.hosts {
		<-h.done
		h.client.Close()
	}
}

// publish has every host publish its MACs, at PublishRate for all.
func (b *runner) publish(ctx context.Context, res *Result) error {
	n := b.o.Hosts * b.o.MACs
	before := b.meter.counts()
	tick := time.NewTicker(time.Second / time.Duration(b.o.PublishRate))
	defer tick.Stop()
	for k := range n {
		// MAC j of every host, then MAC j+1: the load spreads over hosts.
		h, j := k%b.o.Hosts, k/b.o.Hosts
		slot := h*b.o.MACs + j
		b.owner[slot] = h
		b.place(slot, h)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	if err := b.wait(ctx, "every MAC everywhere", func() bool { return eventsDone(b.macs[:n]) }); err != nil && !errors.Is(err, errNotConverged) {
		return err
	}
	res.Publication = summarize(b.macs[:n])
	d := b.meter.counts().sub(before)
	res.PublicationWrites, res.PublicationWrite = d.writes, d.meanWrite()
	return b.countBehind(ctx, &res.Publication)
}

// place puts the MAC of slot behind host h, and waits for every other host.
func (b *runner) place(slot, h int) {
	b.macs[slot].begin(b.clock, b.hosts[h].addr, b.o.Hosts-1)
	b.hosts[h].local.Observe(slotMAC(slot), slotIP(slot))
}

// churn moves ChurnRate of the MACs per second to another host, each a MAC
// whose last placement has converged.
func (b *runner) churn(ctx context.Context, res *Result) error {
	n := b.o.Hosts * b.o.MACs
	perSecond := max(b.o.ChurnRate*float64(n), 1)
	tick := time.NewTicker(time.Duration(float64(time.Second) / perSecond))
	defer tick.Stop()
	before := b.meter.counts()
	var moved []int
	for end := time.Now().Add(b.o.Churn); time.Now().Before(end); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		slot := b.rng.IntN(n)
		for tries := 0; !b.macs[slot].done() && tries < 10; tries++ {
			slot = b.rng.IntN(n)
		}
		if !b.macs[slot].done() {
			continue
		}
		to := (b.owner[slot] + 1 + b.rng.IntN(b.o.Hosts-1)) % b.o.Hosts
		b.owner[slot] = to
		b.place(slot, to)
		moved = append(moved, slot)
	}
	if err := b.wait(ctx, "every move everywhere", func() bool { return eventsDone(b.macs[:n]) }); err != nil && !errors.Is(err, errNotConverged) {
		return err
	}
	// A little longer: a write that a move provokes late is counted too.
	time.Sleep(time.Second)
	d := b.meter.counts().sub(before)
	res.Moves = len(moved)
	if len(moved) > 0 {
		res.WritesPerMove = float64(d.writes) / float64(len(moved))
		res.KeysPerMove = float64(d.keys) / float64(len(moved))
	}
	lat := make([]*event, len(moved))
	for i, s := range moved {
		lat[i] = &b.macs[s]
	}
	res.Churn = summarizePtr(lat)
	return b.countBehind(ctx, &res.Churn)
}

// compaction cuts every agent's connections and keeps them away while the
// bench changes the VNI's keys (the leader change's marker MAC withdrawn,
// another published) and compacts etcd past those changes. Back, each
// agent's watch resumes at a compacted revision: it must list the keys
// again and reconcile, the withdrawn MAC gone, the new one there.
func (b *runner) compaction(ctx context.Context, res *Result) error {
	cli := b.cluster.Client()
	opCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	relists := make([]int64, len(b.hosts))
	for i, h := range b.hosts {
		relists[i] = h.agent.Relists()
	}
	mark, err := b.markRealRelist(ctx)
	if err != nil {
		return err
	}
	b.meter.hold()
	b.meter.cut("")
	keys := discovery.NewKeys(discovery.DefaultPrefix, benchVNI)
	marker := b.o.Hosts * b.o.MACs
	_, err = cli.Delete(opCtx, keys.MAC(slotMAC(marker)))
	if err == nil {
		err = b.putMarker(ctx, marker+1)
	}
	// A write outside the VNI's prefix, so that the compaction is past
	// every change an agent could have seen.
	var pr *clientv3.PutResponse
	if err == nil {
		pr, err = cli.Put(opCtx, "/vxctlbench/compacted", "1")
	}
	if err == nil {
		_, err = cli.Compact(opCtx, pr.Header.Revision, clientv3.WithCompactPhysical())
	}
	before := b.meter.counts()
	start := time.Now()
	b.meter.release()
	if err != nil {
		return err
	}
	// The real vxland, if any, is timed beside the agents.
	realDone := make(chan error, 1)
	go func() { realDone <- b.awaitRealRelist(ctx, mark, pr.Header.Revision, start) }()
	relisted := func() int {
		n := 0
		for i, h := range b.hosts {
			if h.agent.Relists() != relists[i] && h.agent.Revision() >= pr.Header.Revision {
				n++
			}
		}
		return n
	}
	err = b.wait(ctx, "every agent re-listed", func() bool { return relisted() == len(b.hosts) })
	res.RelistTime = time.Since(start)
	res.RelistsBehind = len(b.hosts) - relisted()
	if realErr := <-realDone; err == nil || errors.Is(err, errNotConverged) {
		err = realErr
	}
	if err != nil && !errors.Is(err, errNotConverged) {
		return err
	}
	d := b.meter.counts().sub(before)
	res.Relists, res.RelistBytes = d.lists, d.received
	res.CompactionMismatch, err = b.mismatches(ctx)
	return err
}

// leaderChange stops the leader member, writes a marker MAC as soon as the
// other two accept writes, and waits until every agent has it and every
// data plane equals etcd.
func (b *runner) leaderChange(ctx context.Context, res *Result) error {
	before := b.meter.counts()
	var perSecond []int64
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := before.lists
		for {
			select {
			case <-stopSampling:
				perSecond = append(perSecond, b.meter.lists.Load()-last)
				return
			case <-t.C:
				l := b.meter.lists.Load()
				perSecond = append(perSecond, l-last)
				last = l
			}
		}
	})
	marker := b.o.Hosts * b.o.MACs
	e := &b.macs[marker]
	e.begin(b.clock, markerVTEP, b.o.Hosts)
	start := time.Now()
	addr, err := b.cluster.KillLeader()
	if err != nil {
		close(stopSampling)
		sampling.Wait()
		return err
	}
	b.meter.cut(addr)
	err = b.putMarker(ctx, marker)
	res.LeaderWrite = time.Since(start)
	if err == nil {
		err = b.wait(ctx, "every agent saw the marker", e.done)
	}
	if err == nil {
		res.LeaderResume, _ = e.latency()
		err = b.wait(ctx, "every agent equal to etcd", func() bool {
			m, err := b.mismatches(ctx)
			return err == nil && len(m) == 0
		})
		res.LeaderEqual = time.Since(start)
	}
	close(stopSampling)
	sampling.Wait()
	res.LeaderLists = b.meter.counts().sub(before).lists
	res.LeaderListsPerSecond = slices.Max(append(perSecond, 0))
	if err != nil && !errors.Is(err, errNotConverged) {
		return err
	}
	// Past the wait, say who differs instead of failing the run.
	var mErr error
	res.LeaderMismatch, mErr = b.mismatches(ctx)
	return mErr
}

// writeWait bounds the bench's own writes while the cluster elects a
// leader. It is not Options.Wait: a phase can go on without converging,
// but not without its write.
const writeWait = 30 * time.Second

// putMarker writes the marker MAC of slot with the bench's own client,
// retrying until the cluster accepts writes again.
func (b *runner) putMarker(ctx context.Context, slot int) error {
	v, _ := json.Marshal(discovery.MACRecord{Version: discovery.SchemaVersion, MAC: slotMAC(slot).String(), VTEP: markerVTEP})
	key := discovery.NewKeys(discovery.DefaultPrefix, benchVNI).MAC(slotMAC(slot))
	deadline := time.Now().Add(writeWait)
	for {
		opCtx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := b.cluster.Client().Put(opCtx, key, string(v))
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("writing %s after the leader stopped: %w", key, err)
		}
	}
}

// mismatches compares every host's stand-in with etcd's content and names
// the hosts that differ.
func (b *runner) mismatches(ctx context.Context) ([]string, error) {
	members, macs, err := b.etcdState(ctx)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, h := range b.hosts {
		if err := h.fdb.differsFrom(h.addr, members, macs); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", h.addr, err))
		}
	}
	return bad, nil
}

// etcdState reads the VNI's members and MACs from etcd.
func (b *runner) etcdState(ctx context.Context) (members map[netip.Addr]bool, macs map[fdb.MAC]netip.Addr, err error) {
	keys := discovery.NewKeys(discovery.DefaultPrefix, benchVNI)
	opCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := b.cluster.Client().Get(opCtx, keys.Prefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, nil, fmt.Errorf("listing etcd: %w", err)
	}
	members = make(map[netip.Addr]bool)
	macs = make(map[fdb.MAC]netip.Addr)
	for _, kv := range resp.Kvs {
		kind, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), keys.Prefix()), "/")
		switch kind {
		case "vtep":
			var m discovery.Member
			if err := json.Unmarshal(kv.Value, &m); err != nil {
				return nil, nil, fmt.Errorf("etcd key %s: %w", kv.Key, err)
			}
			members[m.Addr] = true
		case "mac":
			var r discovery.MACRecord
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return nil, nil, fmt.Errorf("etcd key %s: %w", kv.Key, err)
			}
			mac, err := fdb.ParseMAC(r.MAC)
			if err != nil {
				return nil, nil, fmt.Errorf("etcd key %s: %w", kv.Key, err)
			}
			macs[mac] = r.VTEP
		}
	}
	return members, macs, nil
}

var errNotConverged = errors.New("not converged")

// wait polls cond until it holds or Options.Wait has passed.
func (b *runner) wait(ctx context.Context, what string, cond func() bool) error {
	deadline := time.Now().Add(b.o.Wait)
	for !cond() {
		if time.Now().After(deadline) {
			b.o.Progress("%s: not converged within %s, going on", what, b.o.Wait)
			return fmt.Errorf("%s: %w within %s", what, errNotConverged, b.o.Wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// countBehind completes l, the summary of a phase, with the receipts its
// events had and wanted and, when some did not converge, the hosts whose
// data plane still differs from etcd: a phase that does not converge is
// reported, not fatal, so that a large run still says how far it got.
func (b *runner) countBehind(ctx context.Context, l *Latency) error {
	if l.Missing == 0 {
		return nil
	}
	bad, err := b.mismatches(ctx)
	if err != nil {
		// An etcd too loaded to answer one list is a finding too.
		b.o.Progress("counting the hosts behind: %v", err)
		l.Behind = -1
		return ctx.Err()
	}
	l.Behind = len(bad)
	return nil
}

func eventsDone(es []event) bool {
	for i := range es {
		if !es[i].done() {
			return false
		}
	}
	return true
}

func summarize(es []event) Latency {
	ps := make([]*event, len(es))
	for i := range es {
		ps[i] = &es[i]
	}
	return summarizePtr(ps)
}

func summarizePtr(es []*event) Latency {
	var ds []float64
	var l Latency
	for _, e := range es {
		l.Want += int64(e.want.Load())
		l.Receipts += int64(min(e.seen.Load(), e.want.Load()))
		if d, ok := e.latency(); ok {
			ds = append(ds, float64(d))
		} else {
			l.Missing++
		}
	}
	if len(ds) == 0 {
		return l
	}
	l.P50 = time.Duration(bench.Percentile(ds, 50))
	l.P99 = time.Duration(bench.Percentile(ds, 99))
	l.Max = time.Duration(slices.Max(ds))
	l.N = len(ds)
	return l
}

// watchers reads etcd's gauge of open watchers, summed over the three
// members, which share this process's registry.
func watchers() int {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_debugging_mvcc_watcher_total" {
			n := 0.0
			for _, m := range mf.GetMetric() {
				n += m.GetGauge().GetValue()
			}
			return int(n)
		}
	}
	return -1
}
