//go:build linux

package overlay

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// threadPolicy returns the scheduling policy of thread tid (0: the
// calling one), or fails the test (from any goroutine) and returns an
// impossible one.
func threadPolicy(t *testing.T, tid int) uint32 {
	t.Helper()
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Errorf("sched_getattr(%d): %v", tid, err)
		return ^uint32(0)
	}
	return a.Policy
}

// The policy is the thread's own: a SCHED_OTHER worker turns SCHED_BATCH
// after a wait of idleGap, and back after busyWakes waits in a row shorter
// than that; a longer wait starts the count again.
func TestWakePolicySwitchesItsThread(t *testing.T) {
	// The test's thread ends with it: the changed policy leaves with it.
	runtime.LockOSThread()
	if got := threadPolicy(t, 0); got != unix.SCHED_NORMAL {
		t.Skipf("test thread runs under policy %d, not SCHED_OTHER", got)
	}
	var p wakePolicy
	p.observe(idleGap / 2)
	if got := threadPolicy(t, 0); got != unix.SCHED_NORMAL {
		t.Fatalf("after a wait of %v the policy is %d, want SCHED_OTHER still", idleGap/2, got)
	}
	p.observe(idleGap)
	if got := threadPolicy(t, 0); got != unix.SCHED_BATCH {
		t.Fatalf("after a wait of %v the policy is %d, want SCHED_BATCH (%d)", idleGap, got, unix.SCHED_BATCH)
	}
	for i := 1; i < busyWakes; i++ {
		p.observe(idleGap - time.Microsecond)
		if got := threadPolicy(t, 0); got != unix.SCHED_BATCH {
			t.Fatalf("after %d busy waits the policy is %d, want SCHED_BATCH still", i, got)
		}
	}
	p.observe(idleGap - time.Microsecond)
	if got := threadPolicy(t, 0); got != unix.SCHED_NORMAL {
		t.Fatalf("after %d busy waits the policy is %d, want SCHED_OTHER", busyWakes, got)
	}
	// A wait of idleGap in the middle of a run starts the count again.
	p.observe(idleGap)
	for range busyWakes - 1 {
		p.observe(0)
	}
	p.observe(idleGap)
	p.observe(0)
	if got := threadPolicy(t, 0); got != unix.SCHED_BATCH {
		t.Fatalf("a long wait did not restart the count: policy %d", got)
	}
	if got := p.switches.Load(); got != 3 {
		t.Errorf("%d switches, want 3 (batch, other, batch)", got)
	}
}

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
	devs, _ := tapQueues(t, "vxsched0", n, true)
	conns, refused, err := ListenBatchUDPQueues(netip.MustParseAddrPort("127.0.0.1:0"), BatchOptions{Batch: 8}, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(refused) > 0 {
		t.Skipf("kernel refused offloads: %v", refused)
	}
	var qs []Queue
	for i := range n {
		qs = append(qs, Queue{Device: devs[i], Conn: conns[i]})
	}
	var log netlab.LockedBuffer
	o, err := NewQueues(Config{VNI: 1, MTU: 1450, BatchWhenIdle: true, Logger: slog.New(slog.NewTextHandler(&log, nil))}, qs, fdb.New(4789, 0))
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
		time.Sleep(2 * idleGap)
	}
	dropped := func() (n uint64) {
		for _, d := range o.counters.Snapshot().Drops {
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
