package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

const (
	// pingInterval spaces echo requests, as "ping -i 0.1" does.
	pingInterval = 100 * time.Millisecond
	// pingReplyTimeout is how long one echo request waits for its reply.
	pingReplyTimeout = time.Second
	// pingDataLen is ping(8)'s default payload size.
	pingDataLen = 56
)

// PingStats is the outcome of Ping.
type PingStats struct {
	// Sent is the number of echo requests sent.
	Sent int
	// RTTs holds the round-trip time of each answered request, in order.
	RTTs []time.Duration
}

// Received is the number of echo requests answered.
func (s PingStats) Received() int { return len(s.RTTs) }

// Min, Avg and Max summarise the round-trip times; they are 0 when no
// request was answered.
func (s PingStats) Min() time.Duration {
	if len(s.RTTs) == 0 {
		return 0
	}
	return slices.Min(s.RTTs)
}

// Avg is the mean round-trip time.
func (s PingStats) Avg() time.Duration {
	if len(s.RTTs) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s.RTTs {
		sum += d
	}
	return sum / time.Duration(len(s.RTTs))
}

// Max is the longest round-trip time.
func (s PingStats) Max() time.Duration {
	if len(s.RTTs) == 0 {
		return 0
	}
	return slices.Max(s.RTTs)
}

// String summarises s like ping(8): "3/3 replies, rtt min/avg/max 0.081/0.102/0.140 ms".
func (s PingStats) String() string {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return fmt.Sprintf("%d/%d replies, rtt min/avg/max %.3f/%.3f/%.3f ms",
		s.Received(), s.Sent, ms(s.Min()), ms(s.Avg()), ms(s.Max()))
}

// Ping sends count ICMP echo requests (IPv4 or IPv6) from namespace from to
// ip, one at a time and at least 100ms apart, each waiting up to a second
// for its reply, like "ping -c count -i 0.1 -W 1". It needs no ping binary:
// it opens a raw ICMP socket inside from.
//
// The returned stats are valid even with an error. The error is non-nil
// when a request went unanswered or ctx ended first (then it wraps the
// cause).
func Ping(ctx context.Context, from *NS, ip string, count int) (stats PingStats, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("netlab: ping %s -> %s: %w", from.Name, ip, err)
		}
	}()
	dst, err := netip.ParseAddr(ip)
	if err != nil {
		return stats, err
	}
	if count < 1 {
		return stats, fmt.Errorf("count %d: want at least 1", count)
	}
	dst = dst.Unmap()
	network, proto := "ip4:icmp", 1 // IANA protocol numbers, for icmp.ParseMessage
	var request, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		// The kernel fills in the ICMPv6 checksum of raw sockets itself.
		network, proto = "ip6:ipv6-icmp", 58
		request, reply = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}

	var conn *icmp.PacketConn
	err = from.Do(func() error {
		var err error
		conn, err = icmp.ListenPacket(network, "")
		return err
	})
	if err != nil {
		return stats, err
	}
	defer conn.Close()
	// Unblock a pending read when ctx ends; the deadline in the past makes
	// it return at once.
	defer context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })()

	// A raw socket sees every ICMP packet of the namespace: our replies
	// are those with our identifier, sequence number and data.
	id := rand.N(1 << 16)
	data := bytes.Repeat([]byte("vxland!"), pingDataLen/7+1)[:pingDataLen]
	to := &net.IPAddr{IP: dst.AsSlice()}
	buf := make([]byte, 1500)
	var unanswered int
	for seq := range count {
		if seq > 0 {
			t := time.NewTimer(pingInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return stats, context.Cause(ctx)
			case <-t.C:
			}
		}
		msg := icmp.Message{Type: request, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}
		wire, err := msg.Marshal(nil)
		if err != nil {
			return stats, fmt.Errorf("building echo request: %w", err)
		}
		sent := time.Now()
		if _, err := conn.WriteTo(wire, to); err != nil {
			return stats, fmt.Errorf("sending echo request %d: %w", seq, err)
		}
		stats.Sent++
		deadline := sent.Add(pingReplyTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		if err := conn.SetReadDeadline(deadline); err != nil {
			return stats, err
		}
		rtt, err := awaitEchoReply(conn, buf, proto, reply, dst, id, seq, data, sent)
		switch {
		case ctx.Err() != nil:
			return stats, context.Cause(ctx)
		case errors.Is(err, os.ErrDeadlineExceeded):
			unanswered++
		case err != nil:
			return stats, fmt.Errorf("waiting for echo reply %d: %w", seq, err)
		default:
			stats.RTTs = append(stats.RTTs, rtt)
		}
	}
	if unanswered > 0 {
		return stats, fmt.Errorf("%d of %d echo requests unanswered within %v", unanswered, count, pingReplyTimeout)
	}
	return stats, nil
}

// awaitEchoReply reads from conn until the reply to echo request (id, seq)
// arrives from dst, and returns the time since sent. It returns an error
// wrapping os.ErrDeadlineExceeded when conn's read deadline passes first.
func awaitEchoReply(conn *icmp.PacketConn, buf []byte, proto int, reply icmp.Type, dst netip.Addr, id, seq int, data []byte, sent time.Time) (time.Duration, error) {
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			return 0, err
		}
		rtt := time.Since(sent)
		pa, ok := peer.(*net.IPAddr)
		if !ok {
			continue
		}
		if from, ok := netip.AddrFromSlice(pa.IP); !ok || from.Unmap() != dst {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reply {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || echo.ID != id || echo.Seq != seq || !bytes.Equal(echo.Data, data) {
			continue
		}
		return rtt, nil
	}
}
