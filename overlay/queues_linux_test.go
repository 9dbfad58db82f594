//go:build linux

package overlay

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
)

// tapQueues opens a TAP of n queues in a namespace of its own, with
// offloads or without, and returns the queues and the namespace.
func tapQueues(t *testing.T, name string, n int, offload bool) ([]FrameDevice, *netlab.NS) {
	t.Helper()
	lab := netlab.NewForTest(t)
	ns, err := lab.Namespace("mq")
	if err != nil {
		t.Fatal(err)
	}
	var qs []FrameDevice
	err = ns.Do(func() error {
		if offload {
			ts, err := OpenOffloadTAPQueues(name, 1450, n)
			for _, q := range ts {
				qs = append(qs, q)
			}
			return err
		}
		ts, err := OpenTAPQueues(name, n)
		for _, q := range ts {
			qs = append(qs, q)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, q := range qs {
			q.Close()
		}
	})
	return qs, ns
}

func TestTAPQueuesShareOneDevice(t *testing.T) {
	for _, offload := range []bool{true, false} {
		name := map[bool]string{true: "offload", false: "plain"}[offload]
		t.Run(name, func(t *testing.T) {
			qs, ns := tapQueues(t, "vxmq0", 3, offload)
			if len(qs) != 3 {
				t.Fatalf("%d queues, want 3", len(qs))
			}
			link := ns.MustRun(t, "ip", "-d", "link", "show", "vxmq0")
			if !strings.Contains(link, "multi_queue") || !strings.Contains(link, "numqueues 3") {
				t.Fatalf("vxmq0 is not a TAP with 3 queues:\n%s", link)
			}
			// The device lives while any queue is open.
			qs[0].Close()
			qs[2].Close()
			if out, err := ns.Run("ip", "link", "show", "vxmq0"); err != nil {
				t.Fatalf("vxmq0 gone with one queue still open: %v %s", err, out)
			}
			qs[1].Close()
			if out, err := ns.Run("ip", "link", "show", "vxmq0"); err == nil {
				t.Fatalf("vxmq0 still there after its last queue closed:\n%s", out)
			}
		})
	}
}

func TestOneQueueIsNotMultiQueue(t *testing.T) {
	_, ns := tapQueues(t, "vxsq0", 1, true)
	// A single queue opens the device as before, so that it can attach to
	// a TAP that was created without IFF_MULTI_QUEUE.
	if link := ns.MustRun(t, "ip", "-d", "link", "show", "vxsq0"); strings.Contains(link, "multi_queue") {
		t.Fatalf("one queue opened a multi-queue TAP:\n%s", link)
	}
}

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
