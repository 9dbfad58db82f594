// Package ratelimit has token buckets for the packet path: taking a token
// is one atomic compare-and-swap, without a lock or an allocation, and a
// fixed table of buckets limits each key (a source MAC) apart, so that a
// hostile sender's distinct keys cost no memory.
//
// A bucket is kept as the generic cell rate algorithm keeps it: as the
// time at which it would be full again (the theoretical arrival time), a
// single int64. It is a token bucket of Limit.Burst tokens that refills at
// Limit.Rate tokens a second.
package ratelimit

import (
	"hash/maphash"
	"sync/atomic"
	"time"
)

// Limit is a rate with a burst. The zero Limit allows everything.
type Limit struct {
	// interval is the time one token takes to refill; tolerance is how
	// far ahead of now a bucket may run: burst-1 intervals.
	interval, tolerance int64
}

// NewLimit returns the limit of rate tokens a second with at most burst
// held (at least 1). A rate of 0 is no limit.
func NewLimit(rate, burst int) Limit {
	if rate <= 0 {
		return Limit{}
	}
	return Every(time.Second/time.Duration(rate), burst)
}

// Every returns the limit of one token per interval with at most burst
// held (at least 1). An interval of 0 is no limit.
func Every(interval time.Duration, burst int) Limit {
	if interval <= 0 {
		return Limit{}
	}
	return Limit{interval: int64(interval), tolerance: int64(interval) * int64(max(burst, 1)-1)}
}

// Unlimited reports whether l allows everything.
func (l Limit) Unlimited() bool { return l.interval == 0 }

// Bucket is one token bucket. Its zero value is full.
type Bucket struct {
	tat atomic.Int64
}

// Allow takes a token from b under limit l at now (nanoseconds on a
// monotonic clock, see Clock), and reports whether there was one.
func (b *Bucket) Allow(l Limit, now int64) bool {
	if l.interval == 0 {
		return true
	}
	for {
		tat := b.tat.Load()
		t := max(tat, now)
		if t-now > l.tolerance {
			return false
		}
		if b.tat.CompareAndSwap(tat, t+l.interval) {
			return true
		}
	}
}

// Clock reads a monotonic clock in nanoseconds since its creation.
type Clock struct{ epoch time.Time }

// NewClock returns a clock that starts now.
func NewClock() Clock { return Clock{epoch: time.Now()} }

// Now returns the nanoseconds since the clock started.
func (c Clock) Now() int64 { return int64(time.Since(c.epoch)) }

// keyedBuckets is the number of buckets of a Keyed table: keys that
// share a bucket share its tokens.
const keyedBuckets = 4096

// Keyed is a fixed table of buckets, one per key hash. Keys whose hashes
// meet share a bucket; the hash is seeded per table, so that a sender
// cannot choose keys that share the bucket of another.
type Keyed[K comparable] struct {
	seed    maphash.Seed
	buckets [keyedBuckets]Bucket
}

// NewKeyed returns a table of full buckets.
func NewKeyed[K comparable]() *Keyed[K] {
	return &Keyed[K]{seed: maphash.MakeSeed()}
}

// Allow takes a token from key's bucket under l at now, and reports
// whether there was one.
func (k *Keyed[K]) Allow(key K, l Limit, now int64) bool {
	if l.interval == 0 {
		return true
	}
	return k.bucket(key).Allow(l, now)
}

func (k *Keyed[K]) bucket(key K) *Bucket {
	return &k.buckets[maphash.Comparable(k.seed, key)%keyedBuckets]
}
