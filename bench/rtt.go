package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vxland/vxland/internal/netlab"
)

// Round trips are measured with ICMP echo, like ping(8): the kernel of the
// far container answers, so only the near end is this program, and it waits
// in a blocking system call on a locked thread rather than in Go's network
// poller, which would add a goroutine wake-up to every sample.

const (
	icmpEchoReply   = 0
	icmpEchoRequest = 8
	// echoPayloadLen matches ping's default of 56 bytes (84-byte packets).
	echoPayloadLen = 56
	// echoTimeout is how long a request may go unanswered before it counts
	// as lost.
	echoTimeout = time.Second
	// echoWarmup requests are sent first and not counted: the first one
	// may wait for ARP and, in vxland, for the FDB to learn.
	echoWarmup = 3
)

var errNoEchoReply = errors.New("no echo request was answered")

// measureRTT sends n ICMP echo requests from ns to dst, one every interval,
// and summarises the round trips of those answered.
func measureRTT(ctx context.Context, ns *netlab.NS, dst string, n int, interval time.Duration, cpus []int) (*RTTRun, error) {
	addr, err := netip.ParseAddr(dst)
	if err != nil || !addr.Is4() {
		return nil, fmt.Errorf("rtt: %q is not an IPv4 address", dst)
	}
	samples, lost, err := echoRTT(ctx, ns, addr, n, interval, cpus)
	if err != nil {
		return nil, fmt.Errorf("rtt %s -> %s: %w", ns, dst, err)
	}
	return summarizeRTT(samples, lost, ns, dst)
}

// summarizeRTT makes a run of echo round trips from its samples.
func summarizeRTT(samples []float64, lost int, ns *netlab.NS, dst string) (*RTTRun, error) {
	r := &RTTRun{Micros: samples, Lost: lost}
	if len(samples) == 0 {
		return r, fmt.Errorf("rtt %s -> %s: %w (%d lost)", ns, dst, errNoEchoReply, lost)
	}
	r.P50 = Percentile(samples, 50)
	r.P99 = Percentile(samples, 99)
	return r, nil
}

// loadSettle is how long after a TCP stream starts the echo requests of
// TestRTTLoaded begin, and how long before it ends they stop: they see
// the stream in full flow, not its start or end.
const loadSettle = 250 * time.Millisecond

// rttUnderLoad sends echo requests every FastRTTInterval from t's source
// to its destination while one TCP stream runs along the same path, and
// records what the stream delivered.
func rttUnderLoad(ctx context.Context, t *topology, o Options) (*RTTRun, error) {
	addr, err := netip.ParseAddr(t.dstIP)
	if err != nil || !addr.Is4() {
		return nil, fmt.Errorf("rtt: %q is not an IPv4 address", t.dstIP)
	}
	type loadResult struct {
		out []byte
		err error
	}
	loaded := make(chan loadResult, 1)
	go func() {
		out, _, err := iperfClient(ctx, t.src, t.dstIP, o.Duration, o.AppCPUs, []string{"--parallel", "1"}, nil)
		loaded <- loadResult{out, err}
	}()
	select {
	case <-time.After(loadSettle):
	case l := <-loaded:
		return nil, fmt.Errorf("rtt under load: the TCP stream ended early: %v", l.err)
	}
	// The requests stop at a deadline rather than after a count: under
	// load a round trip may outlast the interval.
	pingCtx, cancel := context.WithTimeout(ctx, o.Duration-2*loadSettle)
	samples, lost, err := echoRTT(pingCtx, t.src, addr, int(o.Duration/FastRTTInterval), FastRTTInterval, o.AppCPUs)
	cancel()
	l := <-loaded
	if err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
		return nil, fmt.Errorf("rtt under load %s -> %s: %w", t.src, t.dstIP, err)
	}
	if l.err != nil {
		return nil, fmt.Errorf("rtt under load: TCP stream: %w", l.err)
	}
	tcp, err := parseTCP(l.out, 1)
	if err != nil {
		return nil, fmt.Errorf("rtt under load: TCP stream: %w", err)
	}
	r, err := summarizeRTT(samples, lost, t.src, t.dstIP)
	if r != nil {
		r.LoadGbit = tcp.BitsPerSecond / 1e9
	}
	return r, err
}

// echoRequest builds an ICMP echo request with the send time in its payload.
func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 8+echoPayloadLen)
	b[0] = icmpEchoRequest
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	for i := 8; i < len(b); i++ {
		b[i] = byte(i)
	}
	binary.BigEndian.PutUint16(b[2:], internetChecksum(b))
	return b
}

// parseEchoReply reads an IPv4 packet, header included as a raw socket
// returns it, and reports whether it is an echo reply with id and seq.
func parseEchoReply(pkt []byte, id, seq uint16) bool {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return false
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < 20 || len(pkt) < ihl+8 {
		return false
	}
	icmp := pkt[ihl:]
	return icmp[0] == icmpEchoReply && icmp[1] == 0 &&
		binary.BigEndian.Uint16(icmp[4:]) == id && binary.BigEndian.Uint16(icmp[6:]) == seq
}

// internetChecksum is the RFC 1071 checksum of b.
func internetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
