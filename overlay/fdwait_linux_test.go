//go:build linux

package overlay

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFDWaiterCloseWakesWaiter(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	w, err := newFDWaiter(p[0])
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		w.mu.RLock()
		defer w.mu.RUnlock()
		done <- w.wait()
	}()
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != ErrClosed {
		t.Fatalf("wait after close = %v, want ErrClosed", err)
	}
	if err := w.close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// BenchmarkPollWakeupRoundTrip measures what one forwarding hop costs in
// waking alone: two threads blocked in poll(2) pass a byte back and forth
// through pipes, so one op is two thread wake-ups. "busy" ping-pongs
// without pause; "idle" waits 10 ms between round trips (not timed), as a
// ping does, so that the CPUs go idle and each wake-up pays for leaving
// the idle state. Compare with the RTT difference between kernel VXLAN
// and vxland: a round trip through two vxland hosts is four wake-ups.
func BenchmarkPollWakeupRoundTrip(b *testing.B) {
	b.Run("busy", func(b *testing.B) { benchPollWakeup(b, 0) })
	b.Run("idle", func(b *testing.B) { benchPollWakeup(b, 10*time.Millisecond) })
}

func benchPollWakeup(b *testing.B, gap time.Duration) {
	var ab, ba [2]int
	for _, p := range []*[2]int{&ab, &ba} {
		if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
			b.Fatal(err)
		}
		defer unix.Close(p[1])
	}
	wa, _ := newFDWaiter(ba[0]) // A waits for B's answer
	wb, _ := newFDWaiter(ab[0]) // B waits for A's ping
	defer wa.close()
	defer wb.close()
	one := []byte{1}
	buf := make([]byte, 1)
	recv := func(w *fdWaiter) error {
		for {
			if _, err := unix.Read(w.fd, buf); err == nil {
				return nil
			} else if err != unix.EAGAIN {
				return err
			}
			if err := w.wait(); err != nil {
				return err
			}
		}
	}
	go func() {
		runtime.LockOSThread()
		for {
			if recv(wb) != nil {
				return
			}
			unix.Write(ba[1], one)
		}
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for b.Loop() {
		if gap > 0 {
			b.StopTimer()
			time.Sleep(gap)
			b.StartTimer()
		}
		unix.Write(ab[1], one)
		if err := recv(wa); err != nil {
			b.Fatal(err)
		}
	}
}
