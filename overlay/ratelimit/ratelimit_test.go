package ratelimit

import (
	"testing"
	"time"
)

const second = int64(time.Second)

func TestBucketBurstThenRate(t *testing.T) {
	l := NewLimit(10, 5)
	var b Bucket
	now := 10 * second
	for i := range 5 {
		if !b.Allow(l, now) {
			t.Fatalf("token %d of the burst of 5 refused", i+1)
		}
	}
	if b.Allow(l, now) {
		t.Fatal("a sixth token at the same instant was allowed")
	}
	// At 10 a second, one token refills every 100 ms.
	if b.Allow(l, now+second/10-1) {
		t.Fatal("a token was allowed before it refilled")
	}
	if !b.Allow(l, now+second/10) {
		t.Fatal("a refilled token was refused")
	}
	// A second later, at most a burst is available again, not ten.
	now += 2 * second
	n := 0
	for b.Allow(l, now) {
		n++
	}
	if n != 5 {
		t.Fatalf("after a long pause %d tokens, want the burst of 5", n)
	}
}

func TestBucketSteadyRate(t *testing.T) {
	l := NewLimit(100, 1)
	var b Bucket
	allowed := 0
	// Offered at 1000 a second for 10 s: 100 a second pass.
	for ms := range int64(10_000) {
		if b.Allow(l, second+ms*int64(time.Millisecond)) {
			allowed++
		}
	}
	if allowed != 1000 {
		t.Fatalf("allowed %d in 10 s at 100/s, want 1000", allowed)
	}
}

func TestZeroLimitAllowsAll(t *testing.T) {
	var b Bucket
	for range 1000 {
		if !b.Allow(NewLimit(0, 0), 0) {
			t.Fatal("rate 0 refused a token")
		}
	}
	if !NewLimit(0, 10).Unlimited() || NewLimit(1, 1).Unlimited() {
		t.Fatal("Unlimited is wrong")
	}
}

func TestKeyedLimitsEachKeyApart(t *testing.T) {
	k := NewKeyed[[6]byte]()
	l := NewLimit(1, 3)
	a, b := [6]byte{2, 0, 0, 0, 0, 1}, [6]byte{2, 0, 0, 0, 0, 2}
	for range 3 {
		if !k.Allow(a, l, second) {
			t.Fatal("a refused within its burst")
		}
	}
	if k.Allow(a, l, second) {
		t.Fatal("a allowed beyond its burst")
	}
	// b shares a's bucket only if their seeded hashes meet (1 in 4096).
	if k.bucket(a) != k.bucket(b) && !k.Allow(b, l, second) {
		t.Fatal("b refused because a used its tokens")
	}
}

func TestAllowAllocatesNothing(t *testing.T) {
	k := NewKeyed[[6]byte]()
	l := NewLimit(1000, 10)
	c := NewClock()
	mac := [6]byte{2, 1, 2, 3, 4, 5}
	if n := testing.AllocsPerRun(1000, func() {
		mac[5]++
		k.Allow(mac, l, c.Now())
	}); n != 0 {
		t.Fatalf("Keyed.Allow allocates %v times per call", n)
	}
}
