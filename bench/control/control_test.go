package control

import (
	"testing"
	"time"
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
