package bench

import (
	"math"
	"time"
)

// The request/response test measures what a small RPC sees: one TCP
// connection with TCP_NODELAY, a 1-byte request answered by a 1-byte
// response, one transaction outstanding at a time, for the run's duration.
// Both ends are this program, each on a locked thread in blocking system
// calls on a socket made in its namespace, so a transaction costs two
// writes and two reads and no goroutine wake-up; the client records each
// transaction's time in a histogram allocated before the run, so that it
// allocates nothing per transaction and measures the path, not Go.

// rrPort is where the request/response server listens in the receiving
// namespace (each topology has its own namespaces).
const rrPort = 5301

// rrTimeout is how long the client waits for a response before the run
// fails: a lost segment is retransmitted well within it.
const rrTimeout = 2 * time.Second

// histBuckets is the number of 1 µs buckets of a latencyHistogram: up to
// 65.536 ms, far beyond any round trip between two namespaces; longer
// times fall in the last bucket.
const histBuckets = 1 << 16

// latencyHistogram counts durations in 1 µs buckets. Recording is a few
// instructions and allocates nothing.
type latencyHistogram struct {
	counts [histBuckets]uint32
	n      int
	max    time.Duration
}

func (h *latencyHistogram) record(d time.Duration) {
	i := int(d / time.Microsecond)
	if i < 0 {
		i = 0
	}
	if i >= histBuckets {
		i = histBuckets - 1
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, d)
}

// percentile returns the p-th percentile (0 < p ≤ 100) in microseconds by
// the nearest-rank method, as Percentile does for samples: the upper edge
// of the bucket that holds the sample of that rank, but never more than the
// largest time recorded, which the last bucket reports. NaN when nothing was recorded.
func (h *latencyHistogram) percentile(p float64) float64 {
	if h.n == 0 || p <= 0 || p > 100 {
		return math.NaN()
	}
	rank := max(int(math.Ceil(p/100*float64(h.n))), 1)
	seen := 0
	maxMicros := float64(h.max.Nanoseconds()) / 1e3
	for i, c := range h.counts {
		seen += int(c)
		if seen >= rank {
			if i == histBuckets-1 { // holds everything longer
				return maxMicros
			}
			return min(float64(i+1), maxMicros)
		}
	}
	return maxMicros
}

// RRRun is a request/response run: 1-byte requests and responses over TCP,
// one at a time.
type RRRun struct {
	Seconds      float64 `json:"seconds"`
	Transactions int     `json:"transactions"`
	PerSecond    float64 `json:"transactions_per_s"`
	P50          float64 `json:"p50_us"`
	P99          float64 `json:"p99_us"`
	// ClientCPUPercent is the client thread's CPU time over the run's
	// length: well under 100 means it waited for the path, so the path,
	// not the client, set the rate.
	ClientCPUPercent float64 `json:"client_cpu_pct"`
}

// summarizeRR makes the run's result from its histogram and length.
func summarizeRR(h *latencyHistogram, elapsed time.Duration) *RRRun {
	r := &RRRun{Seconds: elapsed.Seconds(), Transactions: h.n, P50: h.percentile(50), P99: h.percentile(99)}
	if r.Seconds > 0 {
		r.PerSecond = float64(h.n) / r.Seconds
	}
	return r
}
