package control

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
)

type source struct {
	stats overlay.Stats
	fdb   *fdb.Table
	neigh *fdb.Neighbors
}

func (s *source) Stats() overlay.Stats      { return s.stats }
func (s *source) FDB() *fdb.Table           { return s.fdb }
func (s *source) VNI() uint32               { return 42 }
func (s *source) Neighbors() *fdb.Neighbors { return s.neigh }

func TestServeAndGet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	src := &source{fdb: fdb.New(4789, time.Minute)}
	src.stats = overlay.Stats{RxPackets: 7, Drops: map[string]uint64{"vni_mismatch": 1, "short": 0}}
	src.fdb.AddFlood(42, netip.MustParseAddr("192.0.2.1"), fdb.SourceStatic)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, Handler(src, map[string]string{"vni": "42"}, func() uint64 { return 3 }))
	}()

	var s Stats
	if err := Get(ctx, path, "/stats", &s); err != nil {
		t.Fatal(err)
	}
	if s.RxPackets != 7 || s.Drops["vni_mismatch"] != 1 || len(s.Drops) != 2 || s.Heals != 3 {
		t.Fatalf("stats %+v", s)
	}
	var f FDBState
	if err := Get(ctx, path, "/fdb", &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Flood) != 1 || f.Flood[0].VNI != 42 || f.Flood[0].VTEPs[0].Addr() != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("fdb %+v", f)
	}
	var peers []fdb.VTEPState
	if err := Get(ctx, path, "/peers", &peers); err != nil {
		t.Fatal(err)
	}
	if len(peers) != 1 || peers[0].VTEP.Addr() != netip.MustParseAddr("192.0.2.1") || peers[0].Sources[0] != "static" {
		t.Fatalf("peers %+v", peers)
	}
	var cfg map[string]string
	if err := Get(ctx, path, "/config", &cfg); err != nil || cfg["vni"] != "42" {
		t.Fatalf("config %v, %v", cfg, err)
	}
	var tr Trace
	if err := Get(ctx, path, "/trace?to=02:00:00:00:00:01", &tr); err != nil || tr.Verdict != VerdictFlood {
		t.Fatalf("trace %+v, %v", tr, err)
	}
	if err := Get(ctx, path, "/trace?to=nonsense", &tr); err == nil {
		t.Fatal("a trace of nonsense succeeded")
	}
	var r Runtime
	if err := Get(ctx, path, "/runtime", &r); err != nil {
		t.Fatal(err)
	}
	if r.HeapAllocBytes == 0 || r.Goroutines == 0 {
		t.Fatalf("runtime %+v", r)
	}
	if err := Get(ctx, path, "/nope", &r); err == nil {
		t.Fatal("GET of an unknown endpoint succeeded")
	}

	// A second daemon must not steal a live socket.
	if _, err := Listen(path); err == nil {
		t.Fatal("Listen took over a socket a live server answers on")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Nobody answers now: Get says so.
	if err := Get(context.Background(), path, "/stats", &s); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("Get with no server = %v, want ErrNoDaemon", err)
	}
	// A stale socket file (no server) is replaced.
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "stale.sock"))
	if err != nil {
		t.Fatal(err)
	}
	stale := l.Addr().String()
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if err := Get(context.Background(), stale, "/stats", &s); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("Get on a stale socket = %v, want ErrNoDaemon", err)
	}
	ln2, err := Listen(stale)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln2.Close()
}

// GET /fdb streams the table entry by entry; what arrives is the table,
// in order, however many chunks it takes.
func TestFDBStreamsEveryEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	src := &source{fdb: fdb.New(4789, time.Minute)}
	peer := netip.MustParseAddr("192.0.2.1")
	src.fdb.AddFlood(42, peer, fdb.SourceStatic)
	const n = 2000
	for i := range n {
		mac := fdb.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}
		if i%2 == 0 {
			src.fdb.Learn(42, mac, peer)
		} else {
			src.fdb.Set(42, mac, peer, fdb.OriginStatic)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = Serve(ctx, ln, Handler(src, nil, nil)) }()
	var f FDBState
	if err := Get(ctx, path, "/fdb", &f); err != nil {
		t.Fatal(err)
	}
	want := src.fdb.Entries()
	if len(f.Entries) != n || len(want) != n {
		t.Fatalf("got %d entries, want %d", len(f.Entries), n)
	}
	for i := range want {
		if g := f.Entries[i]; g.MAC != want[i].MAC || g.Origin != want[i].Origin || g.VTEP != want[i].VTEP {
			t.Fatalf("entry %d is %+v, want %+v", i, g, want[i])
		}
	}
	if len(f.Flood) != 1 || f.Flood[0].VTEPs[0].Addr() != peer {
		t.Fatalf("flood %+v", f.Flood)
	}
}
