//go:build linux

package overlay

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestBatchUDPQueuesSpreadFlows(t *testing.T) {
	const queues, flows, rounds = 2, 64, 4
	rxs, refused, err := ListenBatchUDPQueues(netip.MustParseAddrPort("127.0.0.1:0"), BatchOptions{Batch: 8}, queues)
	if err != nil {
		t.Fatal(err)
	}
	if len(refused) > 0 {
		t.Skipf("kernel refused offloads: %v", refused)
	}
	for _, c := range rxs {
		t.Cleanup(func() { c.Close() })
	}
	if len(rxs) != queues || rxs[0].LocalAddr() != rxs[1].LocalAddr() {
		t.Fatalf("queues bound to %v and %v, want one address", rxs[0].LocalAddr(), rxs[1].LocalAddr())
	}
	tx, _, err := ListenBatchUDP(netip.MustParseAddrPort("127.0.0.1:0"), BatchOptions{Batch: 8, SourcePorts: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()

	got := make([]atomic.Int64, queues)
	var wg sync.WaitGroup
	for i, rx := range rxs {
		wg.Go(func() {
			bufs := [][]byte{make([]byte, 64)}
			sizes, srcs := make([]int, 1), make([]netip.AddrPort, 1)
			for {
				if _, err := rx.Read(bufs, sizes, srcs, 2); err != nil {
					return // closed below
				}
				got[i].Add(1)
			}
		})
	}
	for range rounds {
		for flow := range uint32(flows) {
			if err := tx.SendFlow([][]byte{{byte(flow)}}, rxs[0].LocalAddr(), flow*2654435761); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		if got[0].Load()+got[1].Load() == flows*rounds {
			break
		}
	}
	for _, rx := range rxs {
		rx.Close()
	}
	wg.Wait()
	g0, g1 := got[0].Load(), got[1].Load()
	if g0+g1 != flows*rounds {
		t.Fatalf("queues received %d and %d datagrams, want %d in all", g0, g1, flows*rounds)
	}
	// 16 source ports hash to one of 2 sockets each: all on one socket
	// has a chance of 2^-15.
	if g0 == 0 || g1 == 0 {
		t.Fatalf("the kernel put every flow on one queue: %d and %d", g0, g1)
	}
}

func TestUDPQueuesRefuseABusyPort(t *testing.T) {
	busy, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.LocalAddr()
	if _, _, err := ListenBatchUDPQueues(addr, BatchOptions{Batch: 8}, 2); !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("batch queues on a busy port: %v, want EADDRINUSE", err)
	}
	if _, err := ListenUDPQueues(addr, 2); !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("plain queues on a busy port: %v, want EADDRINUSE", err)
	}
}

func TestUDPQueuesPlainShareAPort(t *testing.T) {
	cs, err := ListenUDPQueues(netip.MustParseAddrPort("127.0.0.1:0"), 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		defer c.Close()
		if c.LocalAddr() != cs[0].LocalAddr() {
			t.Fatalf("queues bound to %v and %v, want one address", cs[0].LocalAddr(), c.LocalAddr())
		}
	}
}
