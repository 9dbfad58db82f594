package etcdwatch_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/internal/etcdwatch"
)

// mapStore mirrors the prefix in a map. With stale set, its first
// Revision answer is stale instead, as if the store had been away.
type mapStore struct {
	mu       sync.Mutex
	kv       map[string]string
	rev      int64
	replaced int
	stale    int64
}

func (m *mapStore) Replace(kvs []*mvccpb.KeyValue, rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kv = map[string]string{}
	for _, kv := range kvs {
		m.kv[string(kv.Key)] = string(kv.Value)
	}
	m.rev = rev
	m.replaced++
}

func (m *mapStore) Apply(events []*clientv3.Event, rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ev := range events {
		if ev.Type == mvccpb.PUT {
			m.kv[string(ev.Kv.Key)] = string(ev.Kv.Value)
		} else {
			delete(m.kv, string(ev.Kv.Key))
		}
	}
	m.rev = max(m.rev, rev)
}

func (m *mapStore) Revision() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.stale; r != 0 {
		m.stale = 0
		return r
	}
	return m.rev
}

func (m *mapStore) lists() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.replaced
}

func (m *mapStore) snapshot() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.kv)
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func etcd(t *testing.T) *clientv3.Client {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := discovery.StartEmbedded(ctx, discovery.EmbeddedConfig{
		Dir: filepath.Join(t.TempDir(), "etcd"), Listen: "127.0.0.1:" + freePort(t), PeerListen: "127.0.0.1:" + freePort(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func etcdState(t *testing.T, cli *clientv3.Client, prefix string) map[string]string {
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

func waitEqual(t *testing.T, cli *clientv3.Client, prefix string, s *mapStore) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		want, got := etcdState(t, cli, prefix), s.snapshot()
		if maps.Equal(want, got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store %v, etcd %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The follower lists, follows puts and deletes, ignores other prefixes,
// and after a compaction past its revision lists again rather than
// skipping what it missed.
func TestFollower(t *testing.T) {
	cli := etcd(t)
	ctx := t.Context()
	const prefix = "/t/"
	put := func(k, v string) {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	put(prefix+"a", "1")
	put("/other/x", "no")

	first, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	// Changes after that revision, then a compaction past it.
	for i := range 5 {
		put(fmt.Sprintf("%sk%d", prefix, i), "v")
	}
	if _, err := cli.Delete(ctx, prefix+"a"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}

	// The store's first watch asks for the old revision, as a store that
	// was away would: the follower must notice and list again.
	s := &mapStore{stale: first.Header.Revision}
	f := &etcdwatch.Follower{Client: cli, Prefix: prefix, Store: s}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f.Run(runCtx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); f.Relists() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the compacted watch was not noticed")
		}
	}
	// After the compaction the follower lists again, and stays equal.
	for deadline := time.Now().Add(5 * time.Second); s.lists() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d lists, want 2 (the first, and one after the compaction)", s.lists())
		}
	}
	waitEqual(t, cli, prefix, s)

	// Live changes follow through the watch.
	put(prefix+"k9", "live")
	if _, err := cli.Delete(ctx, prefix+"k0"); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, cli, prefix, s)
	if _, ok := s.snapshot()["/other/x"]; ok {
		t.Fatal("a key outside the prefix reached the store")
	}
	if n := f.Relists(); n != 1 {
		t.Fatalf("%d compactions noticed, want 1", n)
	}
	if n := f.Errors(); n != 0 {
		t.Fatalf("%d errors counted with etcd up all along, want none", n)
	}
}

// Backoff doubles from 100 ms up to its cap, and is spread over the upper
// half of that so that agents that failed together retry apart.
func TestBackoff(t *testing.T) {
	for _, c := range []struct {
		n    int
		base time.Duration
	}{{0, 100 * time.Millisecond}, {1, 200 * time.Millisecond}, {3, 800 * time.Millisecond}, {100, etcdwatch.MaxBackoff}} {
		seen := map[time.Duration]bool{}
		for range 100 {
			d := etcdwatch.Backoff(c.n)
			if d < c.base/2 || d > c.base {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", c.n, d, c.base/2, c.base)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Backoff(%d) took %d values in 100 calls: agents failing together would retry in step", c.n, len(seen))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if etcdwatch.Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on a cancelled context reported that it waited")
	}
}
