// Package metrics exports a running vxland to Prometheus: the data
// plane's counters, the FDB's size, the state of the control plane (the
// etcd agent, or the flannel node), the Go runtime and the process, and
// the build.
//
// Nothing is counted for it on the packet path: each collector reads what
// the data plane and the control plane already keep (overlay.Stats, a sum
// of per-queue atomics; fdb.Table's counts; the agents' atomics) when
// Prometheus scrapes, and turns it into const metrics.
package metrics

import (
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vxland/vxland/internal/health"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
)

const namespace = "vxland"

// Registry holds vxland's collectors. Collectors are added as what they
// read comes up; a scrape shows what is up at that moment.
type Registry struct {
	reg *prometheus.Registry
}

// NewRegistry returns a registry with the Go runtime and process
// collectors and vxland_build_info{version, goversion}.
func NewRegistry(version string) *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace:   namespace,
			Name:        "build_info",
			Help:        "Always 1; the labels say which vxland this is and the Go release that built it.",
			ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
		}, func() float64 { return 1 }),
	)
	return &Registry{reg: reg}
}

// Add registers c. A collector whose metrics are already registered is a
// mistake in the program: Add panics.
func (r *Registry) Add(c prometheus.Collector) { r.reg.MustRegister(c) }

// Slot registers a place for a collector that a change of the VNIs
// replaces (Slot.Set): a scrape collects what the slot holds at that
// moment, the old set or the new, never neither, and the registry itself
// never changes.
func (r *Registry) Slot() *Slot {
	s := &Slot{}
	r.reg.MustRegister(s)
	return s
}

// Slot is a collector that collects what its current collector does.
type Slot struct{ cur atomic.Pointer[heldCollector] }

type heldCollector struct{ c prometheus.Collector }

// Set makes c the slot's collector.
func (s *Slot) Set(c prometheus.Collector) { s.cur.Store(&heldCollector{c}) }

// Describe describes nothing: what the slot holds changes, so the
// registry does not check it against descriptions (an unchecked
// collector).
func (s *Slot) Describe(chan<- *prometheus.Desc) {}

// Collect collects the current collector's metrics.
func (s *Slot) Collect(ch chan<- prometheus.Metric) {
	if h := s.cur.Load(); h != nil {
		h.c.Collect(ch)
	}
}

// Handler serves the metrics on /metrics, and ready's /healthz and
// /readyz.
func (r *Registry) Handler(ready *health.Checks) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	ready.Register(mux)
	return mux
}

// StatsSource is the data plane's counters (overlay.Overlay).
type StatsSource interface {
	Stats() overlay.Stats
}

// desc is a metric's description with the labels that follow the VNI.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

var (
	rxPackets     = desc("rx_packets_total", "Inner frames written to the TAP.", "vni")
	rxBytes       = desc("rx_bytes_total", "Bytes of the inner frames written to the TAP.", "vni")
	txPackets     = desc("tx_packets_total", "VXLAN datagrams sent; a flooded frame counts once per VTEP it is sent to.", "vni")
	txBytes       = desc("tx_bytes_total", "Bytes of the inner frames of the VXLAN datagrams sent.", "vni")
	drops         = desc("drops_total", "Packets dropped, by reason (the data plane's and its devices' own).", "vni", "reason")
	floodedFrames = desc("tx_flooded_frames_total", "Frames sent to the flood list (broadcast, multicast, unknown unicast).", "vni")
	floodCopies   = desc("tx_flood_copies_total", "Copies of flooded frames sent, one per VTEP of the flood list.", "vni")
	arpAnswered   = desc("arp_answered_total", "ARP requests answered from the neighbour table instead of flooded.", "vni")
	arpFlooded    = desc("arp_flooded_total", "Broadcast ARP requests sent to the flood list.", "vni")
	ndAnswered    = desc("nd_answered_total", "IPv6 neighbour solicitations answered from the neighbour table instead of flooded.", "vni")
	ndFlooded     = desc("nd_flooded_total", "Multicast IPv6 neighbour solicitations sent to the flood list.", "vni")
	checksums     = desc("rx_checksums_completed_total", "Inner frames whose partial TCP/UDP checksum was completed.", "vni")
	segmented     = desc("rx_segmented_frames_total", "Inner frames larger than the MTU handed to the TAP to segment.", "vni")
	tooBigSent    = desc("icmp_too_big_sent_total", "ICMP \"fragmentation needed\" and ICMPv6 \"packet too big\" answers to packets from the TAP larger than the MTU (each packet is also counted in drops_total{reason=\"too_big\"}).", "vni")
	tooBigLimited = desc("icmp_too_big_rate_limited_total", "ICMP \"too big\" answers not sent because of their rate limit.", "vni")
	queueRx       = desc("queue_rx_packets_total", "Inner frames written to the TAP, by queue.", "vni", "queue")
	queueTx       = desc("queue_tx_packets_total", "VXLAN datagrams sent, by queue.", "vni", "queue")
	fdbEntries    = desc("fdb_entries", "Live FDB entries, by origin (learned, remote: from etcd, static).", "vni", "origin")
	floodVTEPs    = desc("flood_vteps", "VTEPs on the VNI's flood list.", "vni")
	knownVTEPs    = desc("known_vteps", "VTEPs that VXLAN packets are accepted from.")
	heals         = desc("host_setup_heals_total", "Repairs of the TAP's host setup: a deleted, detached or downed TAP, a deleted bridge.")
	unclaimed     = desc("unclaimed_drops_total", "Datagrams on the shared sockets of several VNIs that no VNI took, by reason: too short to name a VNI (short), or of a VNI not served (vni_mismatch).", "reason")
	tapAdopted    = desc("tap_adopted", "1 when the TAP was taken over at start from an earlier run that left it (a restart the containers did not see).")
)

// DataPlane collects the counters of one VNI's data plane and the size of
// its FDB.
type DataPlane struct {
	VNI   uint32
	Stats StatsSource
	FDB   *fdb.Table
	// Heals, when set, counts the repairs of the TAP's host setup.
	Heals func() uint64
	// TAPAdopted says whether the TAP was taken over, at start, from an
	// earlier run that left it (a restart the containers did not see).
	TAPAdopted bool
}

// Describe implements prometheus.Collector.
func (d *DataPlane) Describe(ch chan<- *prometheus.Desc) {
	DataPlanes{Planes: []*DataPlane{d}}.Describe(ch)
}

// Collect implements prometheus.Collector.
func (d *DataPlane) Collect(ch chan<- prometheus.Metric) {
	DataPlanes{Planes: []*DataPlane{d}}.Collect(ch)
}

// DataPlanes collects the data planes of the VNIs one daemon serves on one
// set of sockets: each VNI's series under its vni label; the host-wide
// ones (known VTEPs, heals) summed over the VNIs, tap_adopted 1 when every
// TAP was adopted; and the drops of datagrams no VNI took (too short to
// name one, or of a VNI not served) as unclaimed_drops_total.
type DataPlanes struct {
	Planes    []*DataPlane
	Unclaimed StatsSource // nil: nothing to report
}

// Describe implements prometheus.Collector.
func (ds DataPlanes) Describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{rxPackets, rxBytes, txPackets, txBytes, drops, floodedFrames, floodCopies,
		arpAnswered, arpFlooded, ndAnswered, ndFlooded, checksums, segmented, tooBigSent, tooBigLimited, queueRx, queueTx, fdbEntries, floodVTEPs, knownVTEPs, heals, tapAdopted} {
		ch <- x
	}
	if ds.Unclaimed != nil {
		ch <- unclaimed
	}
}

// Collect implements prometheus.Collector.
func (ds DataPlanes) Collect(ch chan<- prometheus.Metric) {
	var known int
	var healed uint64
	hasHeals, adopted := false, 1.0
	for _, d := range ds.Planes {
		d.collectVNI(ch)
		known += d.FDB.KnownVTEPs()
		if d.Heals != nil {
			hasHeals = true
			healed += d.Heals()
		}
		if !d.TAPAdopted {
			adopted = 0
		}
	}
	if ds.Unclaimed != nil {
		for reason, n := range ds.Unclaimed.Stats().Drops {
			ch <- prometheus.MustNewConstMetric(unclaimed, prometheus.CounterValue, float64(n), reason)
		}
	}
	ch <- prometheus.MustNewConstMetric(knownVTEPs, prometheus.GaugeValue, float64(known))
	if hasHeals {
		ch <- prometheus.MustNewConstMetric(heals, prometheus.CounterValue, float64(healed))
	}
	ch <- prometheus.MustNewConstMetric(tapAdopted, prometheus.GaugeValue, adopted)
}

// collectVNI collects the series of d's VNI.
func (d *DataPlane) collectVNI(ch chan<- prometheus.Metric) {
	vni := strconv.FormatUint(uint64(d.VNI), 10)
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), append([]string{vni}, labels...)...)
	}
	s := d.Stats.Stats()
	counter(rxPackets, s.RxPackets)
	counter(rxBytes, s.RxBytes)
	counter(txPackets, s.TxPackets)
	counter(txBytes, s.TxBytes)
	for reason, n := range s.Drops {
		counter(drops, n, reason)
	}
	counter(floodedFrames, s.TxFlooded)
	counter(floodCopies, s.TxFloodCopies)
	counter(arpAnswered, s.ARPAnswered)
	counter(arpFlooded, s.ARPFlooded)
	counter(ndAnswered, s.NDAnswered)
	counter(ndFlooded, s.NDFlooded)
	counter(checksums, s.RxChecksumCompleted)
	counter(segmented, s.RxSegmented)
	counter(tooBigSent, s.ICMPTooBigSent)
	counter(tooBigLimited, s.ICMPTooBigLimited)
	for i, q := range s.Queues {
		counter(queueRx, q.RxPackets, strconv.Itoa(i))
		counter(queueTx, q.TxPackets, strconv.Itoa(i))
	}
	for o, n := range d.FDB.CountEntries(d.VNI) {
		ch <- prometheus.MustNewConstMetric(fdbEntries, prometheus.GaugeValue, float64(n), vni, fdb.Origin(o).String())
	}
	ch <- prometheus.MustNewConstMetric(floodVTEPs, prometheus.GaugeValue, float64(len(d.FDB.Flood(d.VNI))), vni)
}

// EtcdSource is the L2 mode's etcd agent (discovery.Agent).
type EtcdSource interface {
	Synced() <-chan struct{}
	Connected() bool
	LeaseTTLLeft() time.Duration
	Revision() int64
	Relists() int64
	Errors() int64
}

var (
	etcdSynced    = desc("etcd_synced", "1 once the VNI's FDB has been filled from a full list of etcd.", "vni")
	etcdConnected = desc("etcd_connected", "1 while this host is registered in etcd for the VNI and its lease is being renewed.", "vni")
	etcdLeaseTTL  = desc("etcd_lease_ttl_seconds", "How long this host's etcd lease of the VNI lives without another keep-alive.", "vni")
	etcdRevision  = desc("etcd_watch_revision", "The etcd revision the VNI's FDB reflects.", "vni")
	etcdRelists   = desc("etcd_relists_total", "Full lists of the VNI's keys after the watch found its revision compacted.", "vni")
	etcdErrors    = desc("etcd_errors_total", "Failed etcd operations of the VNI: registrations, publications, lists and watches.", "vni")
)

// Etcd collects the state of the etcd agents, one per VNI (each VNI has
// its own keys, watch and lease), each under its vni label.
type Etcd struct{ Agents []EtcdAgent }

// EtcdAgent is the etcd agent of one VNI.
type EtcdAgent struct {
	VNI   uint32
	Agent EtcdSource
}

// Describe implements prometheus.Collector.
func (e *Etcd) Describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{etcdSynced, etcdConnected, etcdLeaseTTL, etcdRevision, etcdRelists, etcdErrors} {
		ch <- x
	}
}

// Collect implements prometheus.Collector.
func (e *Etcd) Collect(ch chan<- prometheus.Metric) {
	for _, a := range e.Agents {
		vni := strconv.FormatUint(uint64(a.VNI), 10)
		synced := false
		select {
		case <-a.Agent.Synced():
			synced = true
		default:
		}
		ch <- prometheus.MustNewConstMetric(etcdSynced, prometheus.GaugeValue, boolValue(synced), vni)
		ch <- prometheus.MustNewConstMetric(etcdConnected, prometheus.GaugeValue, boolValue(a.Agent.Connected()), vni)
		ch <- prometheus.MustNewConstMetric(etcdLeaseTTL, prometheus.GaugeValue, a.Agent.LeaseTTLLeft().Seconds(), vni)
		ch <- prometheus.MustNewConstMetric(etcdRevision, prometheus.GaugeValue, float64(a.Agent.Revision()), vni)
		ch <- prometheus.MustNewConstMetric(etcdRelists, prometheus.CounterValue, float64(a.Agent.Relists()), vni)
		ch <- prometheus.MustNewConstMetric(etcdErrors, prometheus.CounterValue, float64(a.Agent.Errors()), vni)
	}
}

// FlannelSource is the flannel mode's node (flannel.Node).
type FlannelSource interface {
	LeaseHeld() bool
	Routes() int
}

var (
	flannelLease  = desc("flannel_lease_held", "1 while this node holds a subnet lease.")
	flannelRoutes = desc("flannel_routes", "Other nodes' subnets installed: a route, a neighbour and an FDB entry each.")
)

// Flannel collects the state of the flannel node.
type Flannel struct{ Node FlannelSource }

// Describe implements prometheus.Collector.
func (f *Flannel) Describe(ch chan<- *prometheus.Desc) {
	ch <- flannelLease
	ch <- flannelRoutes
}

// Collect implements prometheus.Collector.
func (f *Flannel) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(flannelLease, prometheus.GaugeValue, boolValue(f.Node.LeaseHeld()))
	ch <- prometheus.MustNewConstMetric(flannelRoutes, prometheus.GaugeValue, float64(f.Node.Routes()))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
