// Package etcdwatch keeps an in-memory view of an etcd prefix up to date:
// a full list, then a watch from the listed revision, a new list whenever
// etcd has compacted the revision the watch needs, and capped backoff
// between failed attempts. It never skips a change silently.
//
// Both control planes use it: the L2 overlay's (package discovery) and the
// flannel mode's (discovery/flannel).
package etcdwatch

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Store is the view a Follower keeps. Its methods are called from the
// Follower's goroutine only; they must be idempotent, since a resumed
// watch may deliver an event that a list already showed.
type Store interface {
	// Replace applies a full list of the prefix taken at revision rev:
	// keys that are not in kvs are gone.
	Replace(kvs []*mvccpb.KeyValue, rev int64)
	// Apply applies the events of one watch response at revision rev.
	Apply(events []*clientv3.Event, rev int64)
	// Revision returns the revision the store reflects.
	Revision() int64
}

// MaxBackoff caps the wait between failed attempts.
const MaxBackoff = 5 * time.Second

// listTimeout bounds one list of the prefix.
const listTimeout = 10 * time.Second

// Follower follows one prefix into a Store. What it did is counted, and
// can be read while it runs.
type Follower struct {
	Client *clientv3.Client
	Prefix string
	Store  Store
	Logger *slog.Logger
	// AfterList, when set, is called after each list the Store took,
	// with the number of keys listed; the response is no longer used.
	AfterList func(keys int)

	// relists counts the lists after a watch found its revision
	// compacted; errors the failed lists and the watches that ended with
	// an error.
	relists, errors atomic.Int64
}

// Relists returns how many times a watch found its revision compacted
// and the Follower listed the prefix again.
func (f *Follower) Relists() int64 { return f.relists.Load() }

// Errors returns how many lists failed and how many watches ended with an
// error (etcd unreachable, no leader).
func (f *Follower) Errors() int64 { return f.errors.Load() }

// Backoff is the wait before retry n (0-based): 100 ms doubling up to
// MaxBackoff, less a random part of up to half. The agents that lost etcd
// at the same moment (a leader change, a restarted member) would
// otherwise all come back at the same moments, each time a stampede of
// lists and registrations.
func Backoff(n int) time.Duration {
	d := min(100*time.Millisecond<<min(n, 10), MaxBackoff)
	return d - rand.N(d/2+1)
}

// Sleep waits d or until ctx is done, and reports whether it waited.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Run lists and watches until ctx is done.
func (f *Follower) Run(ctx context.Context) {
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	relist := true
	for attempt := 0; ctx.Err() == nil; {
		if relist {
			if err := f.List(ctx); err != nil {
				if ctx.Err() == nil {
					f.errors.Add(1)
					log.Warn("listing etcd failed; retrying", "prefix", f.Prefix, "err", err)
				}
				if !Sleep(ctx, Backoff(attempt)) {
					return
				}
				attempt++
				continue
			}
			relist, attempt = false, 0
		}
		compacted, err := f.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		if compacted {
			log.Warn("etcd compacted past our revision; re-listing", "prefix", f.Prefix, "revision", f.Store.Revision())
			f.relists.Add(1)
			relist = true
			continue
		}
		if err != nil {
			f.errors.Add(1)
		}
		log.Debug("etcd watch ended; resuming", "prefix", f.Prefix, "revision", f.Store.Revision(), "err", err)
		if !Sleep(ctx, Backoff(attempt)) {
			return
		}
		attempt++
	}
}

// List reads the whole prefix into the store.
func (f *Follower) List(ctx context.Context) error {
	opCtx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	resp, err := f.Client.Get(opCtx, f.Prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	f.Store.Replace(resp.Kvs, resp.Header.Revision)
	if f.AfterList != nil {
		f.AfterList(len(resp.Kvs))
	}
	return nil
}

// watch applies changes after the store's revision until the watch ends,
// and reports whether it ended because that revision was compacted.
func (f *Follower) watch(ctx context.Context) (compacted bool, err error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := f.Client.Watch(wctx, f.Prefix, clientv3.WithPrefix(), clientv3.WithRev(f.Store.Revision()+1))
	for wr := range wch {
		if wr.CompactRevision != 0 || errors.Is(wr.Err(), rpctypes.ErrCompacted) {
			return true, wr.Err()
		}
		if err := wr.Err(); err != nil {
			return false, err
		}
		f.Store.Apply(wr.Events, wr.Header.Revision)
	}
	return false, ctx.Err()
}
