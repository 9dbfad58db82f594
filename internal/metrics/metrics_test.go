package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/health"
	"github.com/vxland/vxland/internal/metrics"
	"github.com/vxland/vxland/internal/metrics/metricstest"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
)

type fixedStats overlay.Stats

func (s *fixedStats) Stats() overlay.Stats { return overlay.Stats(*s) }

type fakeAgent struct {
	synced chan struct{}
}

func (a *fakeAgent) Synced() <-chan struct{}     { return a.synced }
func (a *fakeAgent) Connected() bool             { return true }
func (a *fakeAgent) LeaseTTLLeft() time.Duration { return 19 * time.Second }
func (a *fakeAgent) Revision() int64             { return 1234 }
func (a *fakeAgent) Relists() int64              { return 2 }
func (a *fakeAgent) Errors() int64               { return 5 }

type fakeNode struct{}

func (fakeNode) LeaseHeld() bool { return true }
func (fakeNode) Routes() int     { return 3 }

func scrape(t *testing.T, h http.Handler) metricstest.Families {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	f, err := metricstest.Parse(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Every value the sources hold is exported under its name and labels,
// read at scrape time: a second scrape shows what changed in between.
func TestCollectorsExportTheirSources(t *testing.T) {
	stats := &fixedStats{RxPackets: 10, RxBytes: 1000, TxPackets: 20, TxBytes: 2000, TxFlooded: 3, TxFloodCopies: 6,
		ARPAnswered: 4, ARPFlooded: 1, NDAnswered: 14, NDFlooded: 15, RxChecksumCompleted: 7, RxSegmented: 8,
		ICMPTooBigSent: 12, ICMPTooBigLimited: 13,
		Drops:  map[string]uint64{"vni_mismatch": 2, "short": 0, "tap_malformed": 9},
		Queues: []overlay.QueueStats{{RxPackets: 4, TxPackets: 5}, {RxPackets: 6, TxPackets: 15}}}
	table := fdb.New(4789, time.Minute)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	table.AddFlood(42, a, fdb.SourceStatic)
	table.AddFlood(42, b, fdb.SourceEtcd)
	table.Learn(42, fdb.MAC{2, 0, 0, 0, 0, 1}, a)
	table.Set(42, fdb.MAC{2, 0, 0, 0, 0, 2}, b, fdb.OriginRemote)
	table.Set(42, fdb.MAC{2, 0, 0, 0, 0, 3}, b, fdb.OriginRemote)

	reg := metrics.NewRegistry("v1.2.3-test")
	reg.Add(&metrics.DataPlane{VNI: 42, Stats: stats, FDB: table, Heals: func() uint64 { return 4 }, TAPAdopted: true})
	agent := &fakeAgent{synced: make(chan struct{})}
	reg.Add(&metrics.Etcd{Agents: []metrics.EtcdAgent{{VNI: 42, Agent: agent}}})
	reg.Add(&metrics.Flannel{Node: fakeNode{}})
	h := reg.Handler(&health.Checks{})
	f := scrape(t, h)
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"vxland_rx_packets_total", []string{"vni", "42"}, 10},
		{"vxland_rx_bytes_total", []string{"vni", "42"}, 1000},
		{"vxland_tx_packets_total", []string{"vni", "42"}, 20},
		{"vxland_tx_bytes_total", []string{"vni", "42"}, 2000},
		{"vxland_drops_total", []string{"vni", "42", "reason", "vni_mismatch"}, 2},
		{"vxland_drops_total", []string{"vni", "42", "reason", "short"}, 0},
		{"vxland_drops_total", []string{"vni", "42", "reason", "tap_malformed"}, 9},
		{"vxland_tx_flooded_frames_total", []string{"vni", "42"}, 3},
		{"vxland_tx_flood_copies_total", []string{"vni", "42"}, 6},
		{"vxland_arp_answered_total", []string{"vni", "42"}, 4},
		{"vxland_arp_flooded_total", []string{"vni", "42"}, 1},
		{"vxland_nd_answered_total", []string{"vni", "42"}, 14},
		{"vxland_nd_flooded_total", []string{"vni", "42"}, 15},
		{"vxland_rx_checksums_completed_total", []string{"vni", "42"}, 7},
		{"vxland_rx_segmented_frames_total", []string{"vni", "42"}, 8},
		{"vxland_icmp_too_big_sent_total", []string{"vni", "42"}, 12},
		{"vxland_icmp_too_big_rate_limited_total", []string{"vni", "42"}, 13},
		{"vxland_queue_rx_packets_total", []string{"vni", "42", "queue", "1"}, 6},
		{"vxland_queue_tx_packets_total", []string{"vni", "42", "queue", "0"}, 5},
		{"vxland_fdb_entries", []string{"vni", "42", "origin", "learned"}, 1},
		{"vxland_fdb_entries", []string{"vni", "42", "origin", "remote"}, 2},
		{"vxland_fdb_entries", []string{"vni", "42", "origin", "static"}, 0},
		{"vxland_flood_vteps", []string{"vni", "42"}, 2},
		{"vxland_known_vteps", nil, 2},
		{"vxland_host_setup_heals_total", nil, 4},
		{"vxland_tap_adopted", nil, 1},
		{"vxland_etcd_synced", []string{"vni", "42"}, 0},
		{"vxland_etcd_connected", []string{"vni", "42"}, 1},
		{"vxland_etcd_lease_ttl_seconds", []string{"vni", "42"}, 19},
		{"vxland_etcd_watch_revision", []string{"vni", "42"}, 1234},
		{"vxland_etcd_relists_total", []string{"vni", "42"}, 2},
		{"vxland_etcd_errors_total", []string{"vni", "42"}, 5},
		{"vxland_flannel_lease_held", nil, 1},
		{"vxland_flannel_routes", nil, 3},
		{"vxland_build_info", []string{"version", "v1.2.3-test"}, 1},
	} {
		if got, ok := f.Value(w.name, w.labels...); !ok || got != w.want {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, got, ok, w.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := f[name]; !ok {
			t.Errorf("%s missing: the Go and process collectors are not registered", name)
		}
	}
	if l := f.Labels("vxland_build_info"); len(l) != 1 || l[0]["goversion"] == "" {
		t.Errorf("build info labels %v, want a version and a goversion", l)
	}

	stats.RxPackets = 11
	close(agent.synced)
	f = scrape(t, h)
	if v, _ := f.Value("vxland_rx_packets_total"); v != 11 {
		t.Errorf("rx packets %v after the source changed, want 11", v)
	}
	if v, _ := f.Value("vxland_etcd_synced"); v != 1 {
		t.Errorf("etcd synced %v after the first list, want 1", v)
	}
}

// Several VNIs on one set of sockets: each VNI's series under its label,
// the host-wide ones once, the datagrams no VNI took on their own, and
// each VNI's etcd agent under its label.
func TestDataPlanesExportEachVNI(t *testing.T) {
	table42, table43 := fdb.New(4789, time.Minute), fdb.New(4789, time.Minute)
	table42.AddFlood(42, netip.MustParseAddr("192.0.2.1"), fdb.SourceStatic)
	table43.AddFlood(43, netip.MustParseAddr("192.0.2.1"), fdb.SourceStatic)
	table43.AddFlood(43, netip.MustParseAddr("192.0.2.2"), fdb.SourceStatic)
	reg := metrics.NewRegistry("test")
	reg.Add(metrics.DataPlanes{
		Planes: []*metrics.DataPlane{
			{VNI: 42, Stats: &fixedStats{RxPackets: 1, Drops: map[string]uint64{"vni_mismatch": 0}}, FDB: table42, Heals: func() uint64 { return 1 }},
			{VNI: 43, Stats: &fixedStats{RxPackets: 2, Drops: map[string]uint64{"vni_mismatch": 0}}, FDB: table43, Heals: func() uint64 { return 2 }},
		},
		Unclaimed: &fixedStats{Drops: map[string]uint64{"vni_mismatch": 5, "short": 1}},
	})
	synced := make(chan struct{})
	close(synced)
	reg.Add(&metrics.Etcd{Agents: []metrics.EtcdAgent{
		{VNI: 42, Agent: &fakeAgent{synced: synced}},
		{VNI: 43, Agent: &fakeAgent{synced: make(chan struct{})}},
	}})
	f := scrape(t, reg.Handler(&health.Checks{}))
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"vxland_rx_packets_total", []string{"vni", "42"}, 1},
		{"vxland_rx_packets_total", []string{"vni", "43"}, 2},
		{"vxland_flood_vteps", []string{"vni", "43"}, 2},
		{"vxland_drops_total", []string{"vni", "43", "reason", "vni_mismatch"}, 0},
		{"vxland_unclaimed_drops_total", []string{"reason", "vni_mismatch"}, 5},
		{"vxland_unclaimed_drops_total", []string{"reason", "short"}, 1},
		{"vxland_host_setup_heals_total", nil, 3},
		{"vxland_known_vteps", nil, 3},
		{"vxland_etcd_synced", []string{"vni", "42"}, 1},
		{"vxland_etcd_synced", []string{"vni", "43"}, 0},
	} {
		if v, ok := f.Value(c.name, c.labels...); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
}

// A slot exports what it holds now: its collector replaced, the old
// collector's series are gone and the new one's there.
func TestSlotExportsItsCurrentCollector(t *testing.T) {
	reg := metrics.NewRegistry("test")
	slot := reg.Slot()
	plane := func(vni uint32) *metrics.DataPlane {
		return &metrics.DataPlane{VNI: vni, Stats: &fixedStats{RxPackets: uint64(vni)}, FDB: fdb.New(4789, time.Minute), Heals: func() uint64 { return 0 }}
	}
	h := reg.Handler(&health.Checks{})
	if _, ok := scrape(t, h).Value("vxland_rx_packets_total", "vni", "42"); ok {
		t.Fatal("an empty slot exports a data plane")
	}
	slot.Set(metrics.DataPlanes{Planes: []*metrics.DataPlane{plane(42), plane(43)}})
	slot.Set(metrics.DataPlanes{Planes: []*metrics.DataPlane{plane(42), plane(44)}})
	f := scrape(t, h)
	for vni, want := range map[string]bool{"42": true, "43": false, "44": true} {
		if _, ok := f.Value("vxland_rx_packets_total", "vni", vni); ok != want {
			t.Errorf("vxland_rx_packets_total{vni=%s} exported: %v, want %v", vni, ok, want)
		}
	}
}
