package main

import (
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
)

// batchThreads counts the threads of process pid that run under
// SCHED_BATCH.
func batchThreads(t *testing.T, pid int) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		// A thread may end between the listing and the call.
		if a, err := unix.SchedGetAttr(tid, 0); err == nil && a.Policy == unix.SCHED_BATCH {
			n++
		}
	}
	return n
}

// RTT. With --idle-sched=batch (the default) a forwarding thread
// starts under SCHED_BATCH, so that a lone packet does not preempt its
// sender; a steady stream makes its thread SCHED_OTHER, and traffic after
// a pause SCHED_BATCH again. With --idle-sched=normal no thread changes.
func TestIdleWorkersRunBatch(t *testing.T) {
	for _, mode := range []string{"batch", "normal"} {
		t.Run(mode, func(t *testing.T) {
			tp := newTopo(t, 44)
			h1, h2 := tp.addHost(), tp.addHost()
			tp.startAll("--queues", "2", "--idle-sched", mode)
			c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
			ctx := testCtx(t, 90*time.Second)
			idle := 0
			if mode == "batch" {
				idle = 2 // one per queue
			}
			// The workers may start after the control socket answers.
			for _, h := range []*testHost{h1, h2} {
				for n := batchThreads(t, h.proc.Pid()); n != idle; n = batchThreads(t, h.proc.Pid()) {
					if ctx.Err() != nil {
						t.Fatalf("host %s: %d threads under SCHED_BATCH after start, want %d", h.ns.Name, n, idle)
					}
					time.Sleep(time.Millisecond)
				}
			}

			done := make(chan error, 1)
			go func() { done <- netlab.TCPTransfer(ctx, c1.ns, c2.ns, c2.ip+":5300", 1<<30) }()
			busy := false
			for !busy {
				select {
				case err := <-done:
					if err != nil {
						t.Fatal(err)
					}
					if mode == "batch" {
						t.Fatal("the transfer ended and no worker on the receiving host ever ran under SCHED_OTHER")
					}
					busy = true
				default:
					n := batchThreads(t, h2.proc.Pid())
					if mode == "normal" && n != 0 {
						t.Fatalf("--idle-sched=normal: %d threads under SCHED_BATCH", n)
					}
					busy = mode == "batch" && n < idle
					time.Sleep(time.Millisecond)
				}
			}
			if mode == "batch" {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			// A worker learns that it was idle when its next event comes:
			// short connections after pauses, each hashed to a queue
			// afresh, reach both queues sooner or later.
			for _, h := range []*testHost{h1, h2} {
				for batchThreads(t, h.proc.Pid()) != idle {
					if ctx.Err() != nil {
						t.Fatalf("host %s: %d threads under SCHED_BATCH after the transfer, want %d", h.ns.Name, batchThreads(t, h.proc.Pid()), idle)
					}
					time.Sleep(20 * time.Millisecond) // more than the daemon's idle gap, 5 ms
					if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}
