//go:build linux

package udp_test

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/overlay/udp"
)

func TestQueuesSpreadFlows(t *testing.T) {
	const queues, flows, rounds = 2, 64, 4
	rxs := listen(t, "127.0.0.1:0", queues, udp.Options{Batch: 8})
	if len(rxs) != queues || rxs[0].LocalAddr() != rxs[1].LocalAddr() {
		t.Fatalf("queues bound to %v and %v, want one address", rxs[0].LocalAddr(), rxs[1].LocalAddr())
	}
	tx := listen(t, "127.0.0.1:0", 1, udp.Options{Batch: 8, SourcePorts: 16})[0]

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

func TestQueuesRefuseABusyPort(t *testing.T) {
	busy := listen(t, "127.0.0.1:0", 1, udp.Options{Batch: 1})[0]
	addr := busy.LocalAddr()
	for _, batch := range []int{1, 8} {
		cs, err := udp.Listen(addr, 2, udp.Options{Batch: batch})
		if !errors.Is(err, unix.EADDRINUSE) {
			t.Errorf("queues of batch %d on a busy port: %v, want EADDRINUSE", batch, err)
		}
		for _, c := range cs {
			c.Close()
		}
	}
}

func TestQueuesPlainShareAPort(t *testing.T) {
	cs := listen(t, "127.0.0.1:0", 3, udp.Options{Batch: 1})
	if len(cs) != 3 {
		t.Fatalf("%d queues, want 3", len(cs))
	}
	for _, c := range cs {
		if c.LocalAddr() != cs[0].LocalAddr() {
			t.Fatalf("queues bound to %v and %v, want one address", cs[0].LocalAddr(), c.LocalAddr())
		}
	}
}
