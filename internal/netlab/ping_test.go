package netlab

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPingOverVeth(t *testing.T) {
	l := NewForTest(t)
	a, _ := pair(t, l)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, ip := range []string{"10.1.0.2", "fd00:1::2"} {
		s, err := Ping(ctx, a, ip, 3)
		if err != nil {
			t.Fatalf("ping %s: %v", ip, err)
		}
		if s.Sent != 3 || s.Received() != 3 {
			t.Errorf("ping %s: %d sent, %d received; want 3 and 3", ip, s.Sent, s.Received())
		}
		if s.Min() <= 0 || s.Max() >= pingReplyTimeout || s.Min() > s.Avg() || s.Avg() > s.Max() {
			t.Errorf("ping %s: implausible round-trip times %v", ip, s.RTTs)
		}
		t.Logf("ping %s: %v", ip, s)
	}
}

// Only the kernel's echo replies count: when b stops answering, the same
// ping must fail, having sent every request and received nothing.
func TestPingFailsWhenNotAnswered(t *testing.T) {
	l := NewForTest(t)
	a, b := pair(t, l)
	mustOK(t, b.SetSysctl("net.ipv4.icmp_echo_ignore_all", "1"))
	s, err := Ping(t.Context(), a, "10.1.0.2", 2)
	if err == nil {
		t.Fatalf("ping succeeded although echo is ignored: %v", s)
	}
	t.Logf("expected error: %v", err)
	if s.Sent != 2 || s.Received() != 0 || !strings.Contains(err.Error(), "2 of 2") {
		t.Errorf("got %v, %v; want 2 sent, none received, an error saying so", s, err)
	}
}

func TestPingStopsWithContext(t *testing.T) {
	l := NewForTest(t)
	a, _ := pair(t, l)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	// Nobody has 10.1.0.99: ARP fails and no reply ever comes.
	_, err := Ping(ctx, a, "10.1.0.99", 10)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), a.Name) {
		t.Fatalf("error should wrap the deadline and name the namespace: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Ping took %v after a 300ms deadline", d)
	}
}

func TestPingStats(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		stats PingStats
		want  string
	}{
		{PingStats{Sent: 3, RTTs: []time.Duration{2 * ms, ms, 3 * ms}}, "3/3 replies, rtt min/avg/max 1.000/2.000/3.000 ms"},
		{PingStats{Sent: 2, RTTs: []time.Duration{500 * time.Microsecond}}, "1/2 replies, rtt min/avg/max 0.500/0.500/0.500 ms"},
		{PingStats{Sent: 4}, "0/4 replies, rtt min/avg/max 0.000/0.000/0.000 ms"},
	} {
		if got := tc.stats.String(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.stats, got, tc.want)
		}
	}
}

func TestPingRejectsBadInput(t *testing.T) {
	l := NewForTest(t)
	a, _ := pair(t, l)
	for _, tc := range []struct {
		ip    string
		count int
	}{{"10.1.0.300", 1}, {"host-b", 1}, {"10.1.0.2", 0}} {
		if _, err := Ping(t.Context(), a, tc.ip, tc.count); err == nil {
			t.Errorf("Ping(%q, %d) succeeded", tc.ip, tc.count)
		}
	}
}
