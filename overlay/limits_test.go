package overlay_test

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/overlaytest"
	"github.com/vxland/vxland/overlay/ratelimit"
)

// newLimitedRig is newRig with cfg's limits and local table, logging to
// the returned buffer.
func newLimitedRig(t *testing.T, cfg overlay.Config) (*rig, *netlab.LockedBuffer) {
	t.Helper()
	r := &rig{dev: overlaytest.NewDevice(1), conn: overlaytest.NewConn(1), fdb: fdb.New(4789, time.Minute)}
	r.fdb.AddFlood(testVNI, peer1, fdb.SourceStatic)
	r.fdb.AddFlood(testVNI, peer2, fdb.SourceStatic)
	log := &netlab.LockedBuffer{}
	cfg.VNI, cfg.LocalMAC, cfg.MTU, cfg.Logger = testVNI, localMAC, 1450, slog.New(slog.NewTextHandler(log, nil))
	var err error
	r.ov, err = overlay.New(cfg, []overlay.Queue{{Device: r.dev, Conn: r.conn}}, r.fdb)
	if err != nil {
		t.Fatal(err)
	}
	r.encap, r.decap = r.ov.EncapStepper(), r.ov.DecapStepper()
	return r, log
}

var broadcast = fdb.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func sourceMAC(i int) fdb.MAC { return fdb.MAC{0x02, 0xbb, 0, byte(i >> 16), byte(i >> 8), byte(i)} }

// No token refills while a test runs: one an hour.
func noRefill(burst int) ratelimit.Limit { return ratelimit.Every(time.Hour, burst) }

func TestFloodRateLimits(t *testing.T) {
	r, log := newLimitedRig(t, overlay.Config{FloodPerSource: noRefill(3), FloodTotal: noRefill(5)})
	for range 10 {
		r.dev.Inject(udpFrame(t, macA, broadcast, 10))
	}
	for i := range 10 {
		r.dev.Inject(udpFrame(t, sourceMAC(i), broadcast, 10))
	}
	for range 20 {
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}
	s := r.ov.Stats()
	if s.TxFlooded != 5 || s.TxFloodCopies != 10 || len(r.conn.Sent()) != 10 {
		t.Fatalf("flooded %d frames in %d copies (%d sent), want the overall burst of 5 in 10",
			s.TxFlooded, s.TxFloodCopies, len(r.conn.Sent()))
	}
	// macA used its burst of 3 and lost the other 7; of the ten other
	// sources two found a token left overall. (A source whose seeded hash
	// meets macA's shares its bucket and is counted per source instead.)
	src, total := s.Drops["flood_rate_source"], s.Drops["flood_rate_total"]
	if src+total != 15 || src < 7 || total < 1 {
		t.Fatalf("flood_rate_source %d, flood_rate_total %d; want 7 and 8 (15 together)", src, total)
	}
	for _, reason := range []string{"flood_rate_source", "flood_rate_total"} {
		if n := strings.Count(log.String(), "reason="+reason); n != 1 {
			t.Errorf("%d log lines for %s, want 1", n, reason)
		}
	}
}

func TestFloodLimitsLeaveUnicastAlone(t *testing.T) {
	r, _ := newLimitedRig(t, overlay.Config{FloodPerSource: noRefill(1), FloodTotal: noRefill(1)})
	r.fdb.Set(testVNI, macB, peer2, fdb.OriginStatic)
	for range 50 {
		r.dev.Inject(udpFrame(t, macA, macB, 10))
	}
	for range 50 {
		if err := r.encap(); err != nil {
			t.Fatal(err)
		}
	}
	if s := r.ov.Stats(); s.TxPackets != 50 || s.Drops["flood_rate_source"]+s.Drops["flood_rate_total"] != 0 {
		t.Fatalf("sent %d of 50 known unicast frames, drops %v", s.TxPackets, s.Drops)
	}
}

func TestDecapFullFDBDeliversButDoesNotLearn(t *testing.T) {
	r, log := newLimitedRig(t, overlay.Config{})
	r.fdb.LimitLearned(2)
	from := netip.AddrPortFrom(peer2, 50000)
	for i := range 5 {
		r.conn.Inject(vxlanPacket(testVNI, udpFrame(t, sourceMAC(i), macA, 10)), from)
	}
	for range 5 {
		if err := r.decap(); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.dev.WriteCount(); n != 5 {
		t.Fatalf("%d of 5 frames reached the device; a full FDB must not drop them", n)
	}
	if n := r.fdb.CountEntries(testVNI)[fdb.OriginLearned]; n != 2 {
		t.Fatalf("%d learned entries, want the cap of 2", n)
	}
	if n := r.ov.Stats().Drops["fdb_full"]; n != 3 {
		t.Fatalf("fdb_full %d, want 3", n)
	}
	if n := strings.Count(log.String(), "reason=fdb_full"); n != 1 {
		t.Fatalf("%d log lines for fdb_full, want 1", n)
	}
}

func TestLocalMACLimits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits fdb.LocalLimits
		reason string
	}{
		{"cap", fdb.LocalLimits{Max: 2}, "local_mac_full"},
		{"rate", fdb.LocalLimits{NewMACs: noRefill(2)}, "local_mac_rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local := fdb.NewLocalTable(tc.limits)
			r, log := newLimitedRig(t, overlay.Config{Local: local})
			for i := range 5 {
				r.dev.Inject(udpFrame(t, sourceMAC(i), broadcast, 10))
				if err := r.encap(); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(local.Snapshot()); n != 2 {
				t.Fatalf("local table holds %d MACs, want 2", n)
			}
			if s := r.ov.Stats(); s.Drops[tc.reason] != 3 || s.TxFlooded != 5 {
				t.Fatalf("%s %d (want 3), flooded %d (want all 5)", tc.reason, s.Drops[tc.reason], s.TxFlooded)
			}
			if n := strings.Count(log.String(), "reason="+tc.reason); n != 1 {
				t.Fatalf("%d log lines for %s, want 1", n, tc.reason)
			}
		})
	}
}

func TestLimitedStepsNoAllocs(t *testing.T) {
	r, _ := newLimitedRig(t, overlay.Config{FloodPerSource: ratelimit.NewLimit(1000, 10), FloodTotal: ratelimit.NewLimit(1000, 10),
		Local: fdb.NewLocalTable(fdb.LocalLimits{Max: 1, NewMACs: ratelimit.NewLimit(1, 1)})})
	r.fdb.LimitLearned(1)
	r.fdb.Learn(testVNI, macB, peer2)
	// Broadcasts beyond the flood limits from a MAC the full local table
	// refuses, and datagrams from a MAC the full FDB refuses: every check
	// of the limits runs, and fails, on every step.
	r.dev.Inject(udpFrame(t, macB, broadcast, 10))
	r.dev.Repeat(udpFrame(t, macA, broadcast, 100))
	r.conn.Discard()
	r.conn.Repeat(vxlanPacket(testVNI, udpFrame(t, sourceMAC(1), macA, 100)), netip.AddrPortFrom(peer2, 50000))
	r.dev.Discard()
	assertStepsNoAllocs(t, r)
	if d := r.ov.Stats().Drops; d["local_mac_full"] == 0 || d["fdb_full"] == 0 || d["flood_rate_source"] == 0 {
		t.Fatalf("the limits did not all apply: %v", d)
	}
}
