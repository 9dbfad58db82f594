//go:build linux

package poller

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pipeFD returns an FD on the read end of a new pipe, and the write end;
// both are closed when the test ends.
func pipeFD(t testing.TB) (*FD, int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[1]) })
	f, err := NewFD(p[0])
	if err != nil {
		unix.Close(p[0])
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, p[1]
}

// readByte reads one byte from f, with Read or TryRead.
func readByte(f *FD, try bool) error {
	var buf [1]byte
	op := func(fd int) error {
		_, err := unix.Read(fd, buf[:])
		return err
	}
	if try {
		return f.TryRead("read", op)
	}
	return f.Read("read", op)
}

func TestFDCloseWakesReader(t *testing.T) {
	f, _ := pipeFD(t)
	done := make(chan error, 1)
	go func() { done <- readByte(f, false) }()
	time.Sleep(20 * time.Millisecond) // let it block; the result does not depend on it
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close = %v, want net.ErrClosed", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestFDReadWaitsTryReadDoesNot(t *testing.T) {
	f, w := pipeFD(t)
	if err := readByte(f, true); err != ErrWouldBlock {
		t.Fatalf("TryRead of an empty pipe = %v, want ErrWouldBlock", err)
	}
	done := make(chan error, 1)
	go func() { done <- readByte(f, false) }()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Read of an empty pipe returned %v", err)
	default:
	}
	unix.Write(w, []byte{1})
	if err := <-done; err != nil {
		t.Fatalf("Read = %v", err)
	}
	unix.Write(w, []byte{1})
	if err := readByte(f, true); err != nil {
		t.Fatalf("TryRead of a pipe with a byte = %v", err)
	}
}

func TestFDNamesTheFailingCall(t *testing.T) {
	f, _ := pipeFD(t)
	err := f.Read("frobnicate", func(int) error { return unix.EBADMSG })
	var se *os.SyscallError
	if !errors.As(err, &se) || se.Syscall != "frobnicate" || !errors.Is(err, unix.EBADMSG) {
		t.Fatalf("Read = %v, want a syscall error naming frobnicate and wrapping EBADMSG", err)
	}
}

func TestSetReportsReadyAndClose(t *testing.T) {
	var fds []*FD
	var writers []int
	for range 2 {
		f, w := pipeFD(t)
		fds, writers = append(fds, f), append(writers, w)
	}
	s := NewSet(fds...)
	unix.Write(writers[1], []byte{1})
	if ready, err := s.Wait(); err != nil || ready != 1<<1 {
		t.Fatalf("Wait = %b, %v; want 10, nil", ready, err)
	}
	if err := readByte(fds[1], true); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Wait()
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it block; the result does not depend on it
	fds[0].Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Wait after Close = %v, want net.ErrClosed", err)
	}
}

// A worker sleeps in poll holding its P (Set.Wait). With a single P, the
// rest of the program must still run: the runtime's preemption signal
// interrupts the poll, and the waiter yields.
func TestSetYieldsItsP(t *testing.T) {
	f, w := pipeFD(t)
	s := NewSet(f)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	waited := make(chan error, 1)
	go func() {
		_, err := s.Wait()
		waited <- err
	}()
	runtime.Gosched() // let the waiter take the P and block
	for range 3 {
		runtime.GC() // stops the world: needs the waiter's P
	}
	unix.Write(w, []byte{1})
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("Wait = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter never saw its descriptor become readable")
	}
}

// After a second without an event, a wait goes on in the runtime's poll
// and gives its P back; an event still ends it.
func TestSetIdlesInTheRuntime(t *testing.T) {
	f, w := pipeFD(t)
	s := NewSet(f)
	waited := make(chan error, 1)
	go func() {
		ready, err := s.Wait()
		if err == nil && ready != 1 {
			err = fmt.Errorf("ready %b, want 1", ready)
		}
		waited <- err
	}()
	for deadline := time.Now().Add(20 * time.Second); s.slowWaits.Load() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the wait never went on in the runtime's poll")
		}
	}
	unix.Write(w, []byte{1})
	if err := <-waited; err != nil {
		t.Fatalf("Wait = %v", err)
	}
}

// TryRead allocates nothing: it runs on the per-packet path.
func TestFDNoAllocs(t *testing.T) {
	f, w := pipeFD(t)
	var buf [1]byte
	n := testing.AllocsPerRun(100, func() {
		unix.Write(w, buf[:])
		if err := f.TryRead("read", func(fd int) error {
			_, err := unix.Read(fd, buf[:])
			return err
		}); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per TryRead, want 0", n)
	}
}

// BenchmarkPollWakeupRoundTrip measures what one forwarding hop costs in
// waking alone: two threads blocked in poll(2) pass a byte back and forth
// through pipes, so one op is two thread wake-ups. "busy" ping-pongs
// without pause; "idle" waits 10 ms between round trips (not timed), as a
// ping does, so that the CPUs go idle and each wake-up pays for leaving
// the idle state. A round trip through two vxland hosts is four wake-ups.
func BenchmarkPollWakeupRoundTrip(b *testing.B) {
	b.Run("busy", func(b *testing.B) { benchPollWakeup(b, 0) })
	b.Run("idle", func(b *testing.B) { benchPollWakeup(b, 10*time.Millisecond) })
}

func benchPollWakeup(b *testing.B, gap time.Duration) {
	fa, wa := pipeFD(b) // A waits for B's answer on fa; B writes wa
	fb, wb := pipeFD(b) // B waits for A's ping on fb; A writes wb
	one := []byte{1}
	go func() {
		runtime.LockOSThread()
		for readByte(fb, false) == nil {
			unix.Write(wa, one)
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
		unix.Write(wb, one)
		if err := readByte(fa, false); err != nil {
			b.Fatal(err)
		}
	}
}
