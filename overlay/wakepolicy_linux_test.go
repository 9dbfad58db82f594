//go:build linux

package overlay

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/poller"
	"github.com/vxland/vxland/overlay/tap"
	"github.com/vxland/vxland/overlay/udp"
)

// A kernel that refuses the change (a seccomp filter, say) leaves the
// workers as they are, and the daemon says so once, not once per worker.
func TestRefusedPolicyIsLoggedOnce(t *testing.T) {
	var tries atomic.Int32
	defer func(f func(uint32) error) { setThreadPolicy = f }(setThreadPolicy)
	setThreadPolicy = func(uint32) error {
		tries.Add(1)
		return unix.EPERM
	}

	const n = 2
	ns, err := netlab.NewForTest(t).Namespace("sched")
	if err != nil {
		t.Fatal(err)
	}
	var dev *tap.Device
	if err := ns.Do(func() (err error) {
		dev, err = tap.Open("vxsched0", tap.Options{Queues: n, Offload: true, MTU: 1450})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	conns, err := udp.Listen(netip.MustParseAddrPort("127.0.0.1:0"), n, udp.Options{Batch: 8})
	if err != nil {
		t.Fatal(err)
	}
	var qs []Queue
	for i := range n {
		qs = append(qs, Queue{Device: dev.Queues()[i], Conn: conns[i]})
	}
	var log netlab.LockedBuffer
	o, err := New(Config{VNI: 1, MTU: 1450, BatchWhenIdle: true, Logger: slog.New(slog.NewTextHandler(&log, nil))}, qs, fdb.New(4789, 0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	// Each worker starts idle, and tries once.
	for deadline := time.Now().Add(20 * time.Second); tries.Load() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d workers tried to change their policy", tries.Load(), n)
		}
	}
	// Wake a worker a few times, each after an idle spell: a
	// worker that had not given up would try again each time.
	c, err := net.Dial("udp", conns[0].LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 5 {
		c.Write([]byte{1, 2, 3}) // shorter than a VXLAN header: dropped
		time.Sleep(2 * poller.IdleGap)
	}
	dropped := func() (n uint64) {
		for _, d := range o.Stats().Drops {
			n += d
		}
		return n
	}
	for deadline := time.Now().Add(20 * time.Second); dropped() < 5; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the workers read %d of the 5 datagrams", dropped())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := tries.Load(); got != n {
		t.Errorf("%d tries, want one per worker (%d): a refused worker must stop trying", got, n)
	}
	if got := strings.Count(log.String(), "refused SCHED_BATCH"); got != 1 {
		t.Errorf("the refusal was logged %d times, want once:\n%s", got, log.String())
	}
}
