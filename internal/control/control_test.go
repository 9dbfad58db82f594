package control

import (
	"context"
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
}

func (s *source) Stats() overlay.Stats { return s.stats }
func (s *source) FDB() *fdb.Table      { return s.fdb }

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
	go func() { done <- Serve(ctx, ln, Handler(src)) }()

	var s overlay.Stats
	if err := Get(ctx, path, "/stats", &s); err != nil {
		t.Fatal(err)
	}
	if s.RxPackets != 7 || s.Drops["vni_mismatch"] != 1 || len(s.Drops) != 2 {
		t.Fatalf("stats %+v", s)
	}
	var f FDBState
	if err := Get(ctx, path, "/fdb", &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Flood) != 1 || f.Flood[0].VNI != 42 || f.Flood[0].VTEPs[0].Addr() != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("fdb %+v", f)
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
	// A stale socket file (no server) is replaced.
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "stale.sock"))
	if err != nil {
		t.Fatal(err)
	}
	stale := l.Addr().String()
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	ln2, err := Listen(stale)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln2.Close()
}
