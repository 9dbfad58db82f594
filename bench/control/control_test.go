package control

import (
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/buildtest"
	"github.com/vxland/vxland/internal/netlab"
)

// TestControlPlaneSmoke runs a few dozen real agents on a three-member
// etcd cluster through every phase, and holds the control plane to what
// it promises: every registration and MAC reaches every host, a MAC move
// costs at most one etcd write, and after a compaction that forces every agent to
// re-list, and after the leader member stops, every agent's data plane
// equals etcd's content.
func TestControlPlaneSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three etcd members and dozens of agents")
	}
	res, err := Run(t.Context(), Options{
		Hosts: 24, MACs: 4, PublishRate: 400,
		ChurnRate: 0.2, Churn: 2 * time.Second,
		Wait: 15 * time.Second,
		Dir:  t.TempDir(),
		Progress: func(format string, args ...any) {
			t.Logf(format, args...)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	for name, l := range map[string]Latency{"registration": res.Registration, "publication": res.Publication, "churn": res.Churn} {
		if l.Missing != 0 || l.N == 0 {
			t.Errorf("%s: %d events converged, %d did not", name, l.N, l.Missing)
		}
	}
	// One key written per move, in one write (or less, when a host's
	// moves share a transaction); never a re-publication of what did not
	// change, nor a withdrawal by the old host.
	if res.Moves == 0 || res.KeysPerMove != 1 || res.WritesPerMove > 1 {
		t.Errorf("%d MAC moves: %.2f etcd writes and %.2f keys written per move, want at most 1 and exactly 1",
			res.Moves, res.WritesPerMove, res.KeysPerMove)
	}
	if res.Relists < int64(res.Hosts) {
		t.Errorf("after the compaction %d agents listed etcd again, want all %d", res.Relists, res.Hosts)
	}
	if len(res.CompactionMismatch) != 0 {
		t.Errorf("after the compaction's re-list, data planes differ from etcd: %q", res.CompactionMismatch)
	}
	if len(res.LeaderMismatch) != 0 {
		t.Errorf("after the leader change, data planes differ from etcd: %q", res.LeaderMismatch)
	}
}

// TestNotConvergedIsReported: a phase whose changes do not reach every
// host within the wait is counted, not fatal; the run goes on through
// every phase and says how much was missing.
func TestNotConvergedIsReported(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three etcd members and a few agents")
	}
	// The wait ends before anything can converge: the last MAC published
	// has at once reached no other host.
	res, err := Run(t.Context(), Options{
		Hosts: 4, MACs: 2, PublishRate: 400,
		ChurnRate: 0.2, Churn: time.Second,
		Wait: time.Nanosecond,
		Dir:  t.TempDir(),
	})
	if err != nil {
		t.Fatalf("a run that does not converge failed instead of reporting: %v", err)
	}
	p := res.Publication
	if p.Missing == 0 || p.Want != int64(res.Hosts*res.MACs*(res.Hosts-1)) || p.Receipts >= p.Want {
		t.Errorf("publication: %d events missing, %d of %d receipts; want some missing out of %d",
			p.Missing, p.Receipts, p.Want, res.Hosts*res.MACs*(res.Hosts-1))
	}
	if res.Elapsed == 0 {
		t.Error("the run stopped before its last phase")
	}
	if !strings.Contains(Markdown([]*Result{res}), "events not converged") {
		t.Errorf("the table does not say what was missing:\n%s", Markdown([]*Result{res}))
	}
}

// TestRealHostSmoke: a real vxland, in a network-namespace host, joins
// simulated hosts holding 2,000 MACs. Its FDB must equal etcd's MACs
// behind other VTEPs after it joins and after a compaction forces it to
// list again, and a container behind it must reach, through the kernel's
// own VXLAN, the container whose MAC was published last.
func TestRealHostSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three etcd members, agents and a vxland")
	}
	if err := netlab.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	exe := buildtest.Vxland(t)
	res, err := Run(t.Context(), Options{
		Hosts: 4, MACs: 500, PublishRate: 2000,
		ChurnRate: 0.005, Churn: time.Second,
		Wait:   20 * time.Second,
		Dir:    t.TempDir(),
		Vxland: exe,
		Progress: func(format string, args ...any) {
			t.Logf(format, args...)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Real
	if r == nil {
		t.Fatal("no real vxland in the result")
	}
	t.Logf("%+v", *r)
	if r.RemoteMACs != res.Hosts*res.MACs {
		t.Errorf("vxland joined with %d remote MACs in etcd, want %d", r.RemoteMACs, res.Hosts*res.MACs)
	}
	if r.Ping.Sent == 0 || r.Ping.Received() != r.Ping.Sent {
		t.Errorf("to the MAC published last: %d of %d pings answered", r.Ping.Received(), r.Ping.Sent)
	}
	if r.Relist == 0 {
		t.Error("vxland did not list etcd again after the compaction")
	}
	if r.FDBMismatch != "" {
		t.Errorf("after the compaction, vxland's FDB differs from etcd: %s", r.FDBMismatch)
	}
	if r.RSS == 0 || r.HWM < r.RSS || r.HeapInuse == 0 {
		t.Errorf("memory not measured: RSS %d, HWM %d, heap in use %d", r.RSS, r.HWM, r.HeapInuse)
	}
}
