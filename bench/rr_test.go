package bench

import (
	"math"
	"testing"
	"time"
)

func TestLatencyHistogramPercentiles(t *testing.T) {
	var h latencyHistogram
	if v := h.percentile(50); !math.IsNaN(v) {
		t.Errorf("p50 of nothing = %v, want NaN", v)
	}
	// 98 transactions of 20.4 µs, one of 35 µs, one of 1 s (beyond the
	// last bucket).
	for range 98 {
		h.record(20400 * time.Nanosecond)
	}
	h.record(35 * time.Microsecond)
	h.record(time.Second)
	for _, c := range []struct{ p, want float64 }{
		{50, 21},    // upper edge of the 20 µs bucket
		{98, 21},    // the 98th of 100 is still 20.4 µs
		{99, 36},    // the 99th is 35 µs
		{100, 1e6},  // the largest, kept exactly though past the buckets
		{0.001, 21}, // rank 1
		{101, math.NaN()},
	} {
		got := h.percentile(c.p)
		if got != c.want && !(math.IsNaN(got) && math.IsNaN(c.want)) {
			t.Errorf("p%v = %v µs, want %v", c.p, got, c.want)
		}
	}
	// A bucket's upper edge is never reported above the largest time.
	var one latencyHistogram
	one.record(7300 * time.Nanosecond)
	if got := one.percentile(50); got != 7.3 {
		t.Errorf("p50 of one 7.3 µs transaction = %v, want 7.3", got)
	}
}

func TestSummarizeRR(t *testing.T) {
	var h latencyHistogram
	for range 3000 {
		h.record(10 * time.Microsecond)
	}
	r := summarizeRR(&h, 2*time.Second)
	if r.Transactions != 3000 || r.PerSecond != 1500 || r.Seconds != 2 || r.P50 != 10 || r.P99 != 10 {
		t.Errorf("summary %+v, want 3000 transactions, 1500/s in 2 s, p50 and p99 10 µs", r)
	}
}
