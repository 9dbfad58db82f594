//go:build linux

package bench

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A transaction, and recording its time, allocate nothing: the client
// measures the path, not Go's allocator. The server end is a socket pair's
// other end, answered by serveRR's loop.
func TestRRTransactionAllocatesNothing(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer unix.Close(fds[1])
		var b [1]byte
		for {
			n, err := unix.Read(fds[1], b[:])
			if err != nil || n == 0 {
				return
			}
			if _, err := unix.Write(fds[1], b[:]); err != nil {
				return
			}
		}
	}()
	h := new(latencyHistogram)
	var buf [1]byte
	allocs := testing.AllocsPerRun(1000, func() {
		t0 := time.Now()
		if err := rrTransaction(fds[0], &buf); err != nil {
			t.Fatal(err)
		}
		h.record(time.Since(t0))
	})
	if allocs != 0 {
		t.Errorf("%v allocations per transaction, want 0", allocs)
	}
	if h.n != 1001 { // AllocsPerRun runs the function once more to warm up
		t.Errorf("%d transactions recorded, want 1001", h.n)
	}
	unix.Shutdown(fds[0], unix.SHUT_WR)
	<-done
}
