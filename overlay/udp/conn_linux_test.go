//go:build linux

package udp_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/poller"
	"github.com/vxland/vxland/overlay/udp"
)

// listen opens queues sockets on addr with opt, closed when the test
// ends, and skips the test when the kernel refuses an offload of opt.
func listen(t *testing.T, addr string, queues int, opt udp.Options) []*udp.Conn {
	t.Helper()
	var log netlab.LockedBuffer
	opt.Logger = slog.New(slog.NewTextHandler(&log, nil))
	cs, err := udp.Listen(netip.MustParseAddrPort(addr), queues, opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		t.Cleanup(func() { c.Close() })
	}
	if log.String() != "" {
		t.Skipf("the kernel refused an offload: %s", log.String())
	}
	return cs
}

func listenPair(t *testing.T, addr string, opt udp.Options) (tx, rx *udp.Conn) {
	t.Helper()
	return listen(t, addr, 1, opt)[0], listen(t, addr, 1, opt)[0]
}

// datagrams returns n datagrams of size bytes (the last one shorter by
// short bytes), each filled with its index.
func datagrams(n, size, short int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		l := size
		if i == n-1 {
			l -= short
		}
		out[i] = bytes.Repeat([]byte{byte(i)}, l)
	}
	return out
}

// readBufs returns buffers for one Read of c, as the data plane does:
// none of their own when c reads views.
func readBufs(c *udp.Conn) ([][]byte, []int, []netip.AddrPort) {
	bufs := make([][]byte, c.BatchSize())
	for i := range bufs {
		if !c.ReadsViews() {
			bufs[i] = make([]byte, 2048)
		}
	}
	return bufs, make([]int, len(bufs)), make([]netip.AddrPort, len(bufs))
}

func TestRoundTrip(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) { testRoundTrip(t, addr) })
	}
}

func testRoundTrip(t *testing.T, addr string) {
	for _, opt := range []udp.Options{
		{Batch: 1}, // --offload none
		{Batch: 8},
		{Batch: 8, GSO: true},
		{Batch: 8, GRO: true},
		{Batch: 8, GSO: true, GRO: true},
	} {
		t.Run(fmt.Sprintf("%+v", opt), func(t *testing.T) {
			tx, rx := listenPair(t, addr, opt)
			// A run of 40 equal datagrams (one GSO message), a short
			// tail, then a second run: order and sizes must survive.
			want := append(datagrams(40, 1472, 100), datagrams(5, 200, 0)...)
			if err := tx.Send(want, rx.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			bufs, sizes, srcs := readBufs(rx)
			var got [][]byte
			coalesced := false
			// A lost datagram would block Read: closing wakes it.
			timeout := time.AfterFunc(5*time.Second, func() { rx.Close() })
			defer timeout.Stop()
			for len(got) < len(want) {
				n, err := rx.Read(bufs, sizes, srcs, 2)
				if err != nil {
					t.Fatalf("after %d datagrams: %v", len(got), err)
				}
				for i := range n {
					if srcs[i] != tx.LocalAddr() {
						t.Fatalf("source %v, want %v", srcs[i], tx.LocalAddr())
					}
					// Datagram j's headroom holds the end of
					// datagram j-1 only when both came in one
					// coalesced read (see Read); else it is the
					// zeros no read wrote.
					if j := len(got); j >= 2 && j < 40 && bytes.Equal(bufs[i][:2], []byte{byte(j - 1), byte(j - 1)}) {
						coalesced = true
					}
					got = append(got, bytes.Clone(bufs[i][2:2+sizes[i]]))
				}
			}
			if opt.GSO && opt.GRO && !coalesced {
				t.Error("GSO to a GRO socket over loopback: no read held more than one datagram")
			}
			if !opt.GRO && coalesced {
				t.Error("a socket without GRO handed out a coalesced read")
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("datagram %d: %d bytes starting %x, want %d bytes of %x", i, len(got[i]), got[i][:1], len(want[i]), want[i][0])
				}
			}
		})
	}
}

func TestNoAllocs(t *testing.T) {
	for _, opt := range []udp.Options{
		{Batch: 1, SourcePorts: 4},
		{Batch: 8, GSO: true, GRO: true, SourcePorts: 4},
		{Batch: 8, GSO: true, SourcePorts: 4, Outer: udp.Outer{TTL: 9, PerDatagram: func(d []byte) (ttl, tos uint8) { return 30, d[0] }}},
		// DF changes from each datagram to the next: on IPv4, a
		// setsockopt before each.
		{Batch: 8, GSO: true, SourcePorts: 4, Outer: udp.Outer{DontFragment: func(d []byte) bool { return d[0]%2 == 0 }}},
	} {
		t.Run(fmt.Sprintf("%+v", opt), func(t *testing.T) {
			tx, rx := listenPair(t, "127.0.0.1:0", opt)
			pkts := datagrams(8, 1000, 0)
			bufs, sizes, srcs := readBufs(rx)
			dst := rx.LocalAddr()
			// readAll reads len(pkts) datagrams, with TryRead
			// while some are queued, else with Read.
			readAll := func() {
				for got := 0; got < len(pkts); {
					n, err := rx.TryRead(bufs, sizes, srcs, 2)
					if errors.Is(err, poller.ErrWouldBlock) {
						n, err = rx.Read(bufs, sizes, srcs, 2)
					}
					if err != nil {
						t.Fatal(err)
					}
					got += n
				}
			}
			if a := testing.AllocsPerRun(200, func() {
				if err := tx.Send(pkts, dst); err != nil {
					t.Fatal(err)
				}
				readAll()
				if err := tx.SendFlow(pkts, dst, 12345); err != nil {
					t.Fatal(err)
				}
				readAll()
			}); a != 0 {
				t.Fatalf("%v allocations per send and receive of a batch, want 0", a)
			}
		})
	}
}

// checkFlowSourcePorts sends one datagram for each of 64 flows, twice, to
// rx, and checks from the source each arrives from that tx sends from its
// n ports of the dynamic range, each flow always from the same one, and
// that the flows spread over them.
func checkFlowSourcePorts(t *testing.T, tx, rx *udp.Conn, n int) {
	t.Helper()
	if ports := tx.SourcePorts(); len(ports) != n {
		t.Fatalf("%d source ports, want %d", len(ports), n)
	}
	bufs := [][]byte{make([]byte, 64)}
	sizes, srcs := make([]int, 1), make([]netip.AddrPort, 1)
	timeout := time.AfterFunc(5*time.Second, func() { rx.Close() })
	defer timeout.Stop()
	portOf := map[uint32]uint16{}
	used := map[uint16]bool{}
	for round := range 2 {
		for flow := range uint32(64) {
			if err := tx.SendFlow([][]byte{{byte(flow)}}, rx.LocalAddr(), flow*2654435761); err != nil {
				t.Fatal(err)
			}
			if _, err := rx.Read(bufs, sizes, srcs, 0); err != nil {
				t.Fatal(err)
			}
			// The dynamic range of RFC 6335, which RFC 7348 §5
			// recommends.
			p := srcs[0].Port()
			if p < 49152 {
				t.Fatalf("source port %d outside 49152-65535", p)
			}
			if round == 1 && portOf[flow] != p {
				t.Fatalf("flow %d moved from port %d to %d", flow, portOf[flow], p)
			}
			portOf[flow] = p
			used[p] = true
		}
	}
	if len(used) < n/2 {
		t.Fatalf("64 flows used only %d of %d source ports", len(used), n)
	}
}

// TestSendFlowSourcePorts: with the fast path or without it (--offload
// none), flows leave from hashed source ports, as RFC 7348 §5 asks.
func TestSendFlowSourcePorts(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		for _, batch := range []int{1, 8} {
			t.Run(fmt.Sprintf("%s/batch=%d", addr, batch), func(t *testing.T) {
				tx, rx := listenPair(t, addr, udp.Options{Batch: batch, SourcePorts: 8})
				checkFlowSourcePorts(t, tx, rx, 8)
			})
		}
	}
}

// BenchmarkSendFlow sends runs of 16 full-sized datagrams over loopback
// through the fast path (nobody reads them; the kernel drops what
// overflows the receive queue): with a fixed DF, with DF per datagram
// that stays the same, and with DF that changes from one run to the next
// (one IP_MTU_DISCOVER switch per run).
func BenchmarkSendFlow(b *testing.B) {
	for _, bc := range []struct {
		name  string
		outer udp.Outer
	}{
		{"fixed DF", udp.Outer{}},
		{"DF per datagram, steady", udp.Outer{DontFragment: func([]byte) bool { return true }}},
		{"DF per datagram, switching", udp.Outer{DontFragment: func(d []byte) bool { return d[1] != 0 }}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cs, err := udp.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 2, udp.Options{Batch: 64, GSO: true, SourcePorts: 4, Outer: bc.outer})
			if err != nil {
				b.Fatal(err)
			}
			defer cs[0].Close()
			defer cs[1].Close()
			pkts := datagrams(16, 1400, 0)
			b.ReportAllocs()
			b.SetBytes(16 * 1400)
			for b.Loop() {
				for _, p := range pkts {
					p[1] ^= 1
				}
				if err := cs[0].SendFlow(pkts, cs[1].LocalAddr(), 7); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
