package main

import (
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// A hostile container on h1 broadcasts from 100,000 source MACs while two
// other containers move 10 MB over TCP, every limit at its default: h1
// floods no more than --flood-rate-total (5000/s), h2 learns no more than
// --fdb-max (16384) and counts the rest as fdb_full, the transfer arrives
// intact, and neither daemon's peak resident set grows past 100 MB, a
// `show fdb` of the full table included.
func TestFloodOfSourceMACsIsBounded(t *testing.T) {
	const (
		macs   = 100000
		fdbMax = 16384 // --fdb-max's default
		maxRSS = 100 << 20
	)
	tp := newTopo(t, 45)
	h1, h2 := tp.addHost(), tp.addHost()
	tp.startAll() // every limit at its default
	hostile, c1, c2 := tp.addContainer(h1), tp.addContainer(h1), tp.addContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}

	// At 12,500 frames a second the flood lasts 8 s, in which h1's total
	// flood rate lets through 5000 a second and a burst of 5000: some
	// 45,000 frames, enough to fill h2's FDB, and the rest are dropped.
	// Sent at once, the flood would be over before h1's bucket refilled,
	// and h2 would see only its first 5000. On a loaded machine the TAP's
	// queue drops much of the flood before vxland reads it, so while
	// neither limit has been reached the flood goes on, once more over the
	// same MACs, for a bounded time.
	const floodRate = 12500
	frames := netlab.FloodFrames(macs)
	transfer := netlab.StartTCPStream(ctx, c1.ns, c2.ns, c2.ip+":5001", tenMB, 0)
	limitsReached := func() bool {
		return tp.stats(h1).Drops["flood_rate_total"] > 0 && tp.stats(h2).Drops["fdb_full"] > 0
	}
	sendStart := time.Now()
	sent := 0
	for pass := 0; pass == 0 || (!limitsReached() && time.Since(sendStart) < 30*time.Second); pass++ {
		for i := 0; i < len(frames); i += floodRate {
			if pass > 0 && limitsReached() {
				break
			}
			chunk := frames[i:min(i+floodRate, len(frames))]
			if err := hostile.ns.SendFramesAt("eth0", chunk, floodRate); err != nil {
				t.Fatal(err)
			}
			sent += len(chunk)
		}
	}
	sendTook := time.Since(sendStart)
	if err := transfer.Wait(); err != nil {
		t.Fatalf("the transfer beside the flood: %v", err)
	}

	// Wait for h1's flood counters to settle.
	s1 := tp.stats(h1)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		if next := tp.stats(h1); next.TxFlooded == s1.TxFlooded {
			break
		} else {
			s1 = next
		}
	}
	if s1.Drops["flood_rate_total"] == 0 {
		t.Errorf("h1 flooded %d frames and dropped none for the flood rate: %v", s1.TxFlooded, nonZero(s1.Drops))
	}
	if s1.TxFlooded >= uint64(sent) {
		t.Errorf("h1 flooded %d frames of a flood of %d", s1.TxFlooded, sent)
	}
	s2 := tp.stats(h2)
	learned := tp.learnedCount(h2)
	if learned > fdbMax {
		t.Errorf("h2 learned %d MACs, more than the default --fdb-max %d", learned, fdbMax)
	}
	if s2.Drops["fdb_full"] == 0 || learned < fdbMax {
		t.Errorf("h2 learned %d MACs and counted %d as fdb_full; the flood should have filled the FDB", learned, s2.Drops["fdb_full"])
	}
	t.Logf("%d frames from %d MACs sent in %s; h1 flooded %d, dropped %d (total) and %d (per source); h2 received %d, learned %d, refused %d (fdb_full)",
		sent, macs, sendTook.Round(time.Millisecond), s1.TxFlooded, s1.Drops["flood_rate_total"], s1.Drops["flood_rate_source"],
		s2.RxPackets, learned, s2.Drops["fdb_full"])

	showStart := time.Now()
	lines := strings.Count(tp.text(h2, "show", "fdb"), "\n")
	t.Logf("show fdb on h2: %d lines in %s", lines, time.Since(showStart).Round(time.Millisecond))
	if lines < fdbMax {
		t.Errorf("show fdb printed %d lines, want at least %d", lines, fdbMax)
	}
	for _, h := range []*testHost{h1, h2} {
		rss, hwm, err := h.proc.Memory()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: VmRSS %d KB, VmHWM %d KB", h.ns, rss>>10, hwm>>10)
		if hwm > maxRSS {
			t.Errorf("vxland on %s peaked at %d MB resident, want under %d MB", h.ns, hwm>>20, maxRSS>>20)
		}
	}
}

// learnedCount returns how many MACs h's FDB holds as learned.
func (tp *topo) learnedCount(h *testHost) int {
	tp.t.Helper()
	var f control.FDBState
	tp.query(h, &f, "show", "fdb")
	learned := 0
	for _, e := range f.Entries {
		if e.Origin == fdb.OriginLearned.String() {
			learned++
		}
	}
	return learned
}
