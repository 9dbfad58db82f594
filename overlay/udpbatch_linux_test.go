//go:build linux

package overlay

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func listenPair(t *testing.T, opt BatchOptions) (tx, rx *BatchUDPConn) {
	return listenPairOn(t, "127.0.0.1:0", opt)
}

func listenPairOn(t *testing.T, addr string, opt BatchOptions) (tx, rx *BatchUDPConn) {
	t.Helper()
	var err error
	for _, c := range []**BatchUDPConn{&tx, &rx} {
		var refused []string
		*c, refused, err = ListenBatchUDP(netip.MustParseAddrPort(addr), opt)
		if err != nil {
			t.Fatal(err)
		}
		if len(refused) > 0 {
			t.Skipf("kernel refused offloads: %v", refused)
		}
		t.Cleanup(func() { (*c).Close() })
	}
	return tx, rx
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

func TestBatchUDPRoundTrip(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) { testBatchUDPRoundTrip(t, addr) })
	}
}

func testBatchUDPRoundTrip(t *testing.T, addr string) {
	for _, opt := range []BatchOptions{
		{Batch: 1},
		{Batch: 8},
		{Batch: 8, GSO: true},
		{Batch: 8, GRO: true},
		{Batch: 8, GSO: true, GRO: true},
	} {
		t.Run(fmt.Sprintf("%+v", opt), func(t *testing.T) {
			tx, rx := listenPairOn(t, addr, opt)
			// A run of 40 equal datagrams (one GSO message), a short
			// tail, then a second run: order and sizes must survive.
			want := append(datagrams(40, 1472, 100), datagrams(5, 200, 0)...)
			if err := tx.Send(want, rx.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			bufs := make([][]byte, rx.BatchSize())
			for i := range bufs {
				bufs[i] = make([]byte, 2048)
			}
			sizes := make([]int, len(bufs))
			srcs := make([]netip.AddrPort, len(bufs))
			var got [][]byte
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
					got = append(got, bytes.Clone(bufs[i][2:2+sizes[i]]))
				}
			}
			if opt.GSO && opt.GRO && rx.coalesced == 0 {
				t.Error("GSO to a GRO socket over loopback: no read held more than one datagram")
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("datagram %d: %d bytes starting %x, want %d bytes of %x", i, len(got[i]), got[i][:1], len(want[i]), want[i][0])
				}
			}
		})
	}
}

func TestBatchUDPNoAllocs(t *testing.T) {
	tx, rx := listenPair(t, BatchOptions{Batch: 8, GSO: true, GRO: true})
	pkts := datagrams(8, 1000, 0)
	bufs := make([][]byte, rx.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, len(bufs))
	srcs := make([]netip.AddrPort, len(bufs))
	dst := rx.LocalAddr()
	if a := testing.AllocsPerRun(200, func() {
		if err := tx.Send(pkts, dst); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(pkts); {
			n, err := rx.Read(bufs, sizes, srcs, 2)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}); a != 0 {
		t.Fatalf("%v allocations per send and receive of a batch, want 0", a)
	}
}

func TestSendFlowSourcePorts(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) { testSendFlowSourcePorts(t, addr) })
	}
}

func testSendFlowSourcePorts(t *testing.T, addr string) {
	tx, rx := listenPairOn(t, addr, BatchOptions{Batch: 8, SourcePorts: 8})
	checkFlowSourcePorts(t, tx, rx, 8)
}
