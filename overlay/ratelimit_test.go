package overlay

import (
	"testing"
	"time"
)

// A burst passes at once, then one event an interval; a quiet spell fills
// the bucket again, but never above the burst.
func TestTokenBucket(t *testing.T) {
	b := tokenBucket{interval: 10 * time.Millisecond, burst: 3}
	now := time.Hour // any clock
	steps := []struct {
		advance time.Duration
		want    bool
	}{
		{0, true}, {0, true}, {0, true}, {0, false}, // the burst, then empty
		{5 * time.Millisecond, false}, // half an interval: still empty
		{5 * time.Millisecond, true},  // one interval: one token
		{0, false},
		{time.Minute, true}, {0, true}, {0, true}, {0, false}, // refilled to the burst only
	}
	for i, s := range steps {
		now += s.advance
		if got := b.allow(now); got != s.want {
			t.Fatalf("step %d (+%v): allow = %v, want %v", i, s.advance, got, s.want)
		}
	}
}
