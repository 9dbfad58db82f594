package overlay

import "time"

// tokenBucket allows burst events at once and one more per interval after
// that (the generic cell rate algorithm: it keeps the time at which the
// bucket would be full again instead of a count of tokens). It is owned
// by one thread and allocates nothing.
type tokenBucket struct {
	interval time.Duration
	burst    int
	// full is when the bucket holds burst tokens again, in the clock of
	// the now given to allow.
	full time.Duration
}

// allow reports whether an event at now may happen, and takes its token.
func (b *tokenBucket) allow(now time.Duration) bool {
	full := max(b.full, now)
	if full-now > time.Duration(b.burst-1)*b.interval {
		return false
	}
	b.full = full + b.interval
	return true
}

// tooBigRate bounds the ICMP "too big" answers of one queue, as Linux
// bounds the ICMP errors it sends (net.ipv4.icmp_msgs_per_sec and
// icmp_msgs_burst): a sender that ignores them costs one answer a
// millisecond at most.
var tooBigRate = tokenBucket{interval: time.Millisecond, burst: 50}
