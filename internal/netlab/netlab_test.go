package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pair returns two namespaces joined by veth-a/veth-b with IPv4 and IPv6
// addresses on both ends.
func pair(t *testing.T, l *Lab) (a, b *NS) {
	t.Helper()
	a, b = mustNS(t, l, "a"), mustNS(t, l, "b")
	mustOK(t, l.Veth(a, "veth-a", b, "veth-b"))
	mustOK(t, a.Addr("veth-a", "10.1.0.1/24"))
	mustOK(t, b.Addr("veth-b", "10.1.0.2/24"))
	mustOK(t, a.Addr("veth-a", "fd00:1::1/64"))
	mustOK(t, b.Addr("veth-b", "fd00:1::2/64"))
	return a, b
}

func TestTransferOverVeth(t *testing.T) {
	l := NewForTest(t)
	a, b := pair(t, l)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	for _, tc := range []struct {
		name     string
		from, to *NS
		addr     string
	}{
		{"a to b v4", a, b, "10.1.0.2:0"},
		{"b to a v4", b, a, "10.1.0.1:0"},
		{"a to b v6 fixed port", a, b, "[fd00:1::2]:7777"},
		{"b to a v6", b, a, "[fd00:1::1]:0"},
	} {
		if err := TCPTransfer(ctx, tc.from, tc.to, tc.addr, 1<<20); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	for _, ip := range []string{"10.1.0.2", "fd00:1::2"} {
		if err := Reach(ctx, a, b, ip); err != nil {
			t.Error(err)
		}
	}
}

// A helper that cannot fail would prove nothing: without a link, neither
// Reach nor TCPTransfer may succeed, and both must give up when ctx ends.
func TestTrafficFailsWithoutPath(t *testing.T) {
	l := NewForTest(t)
	a, b := pair(t, l)
	c := mustNS(t, l, "c") // linked only to itself
	mustOK(t, l.Veth(c, "loop0", c, "loop1"))
	mustOK(t, c.Addr("loop0", "10.1.0.3/24"))

	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Reach(ctx, a, c, "10.1.0.3")
	if err == nil {
		t.Fatal("Reach to an unconnected namespace succeeded")
	}
	t.Logf("expected error: %v", err)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), c.Name) {
		t.Errorf("error should wrap the deadline and name the namespace: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Reach took %v after a 500ms deadline", d)
	}

	// An address the listener side does not own fails at once.
	err = TCPTransfer(t.Context(), a, b, "10.1.0.99:0", 10)
	t.Logf("expected error: %v", err)
	if err == nil {
		t.Error("TCPTransfer to an address b does not have succeeded")
	}
}

// TCPTransferVia dials the address it is given, not the listener's: over
// a dual-stack listener it arrives; at a port nobody listens on it fails.
func TestTransferViaDialsItsAddress(t *testing.T) {
	l := NewForTest(t)
	a, b := pair(t, l)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := TCPTransferVia(ctx, a, b, "[::]:7001", "10.1.0.2:7001", 1<<20); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	err := TCPTransferVia(short, a, b, "10.1.0.2:7002", "10.1.0.2:7003", 10)
	t.Logf("expected error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "10.1.0.2:7003") {
		t.Errorf("a transfer dialled to a port with no listener should fail naming it: %v", err)
	}
}

func TestDoRunsInNamespace(t *testing.T) {
	l := NewForTest(t)
	a, _ := pair(t, l)

	outside := netnsInode(t)
	want, err := os.Stat(netnsDir + "/" + a.Name)
	mustOK(t, err)

	var inside uint64
	var ifi *net.Interface
	mustOK(t, a.Do(func() error {
		inside = netnsInode(t)
		var err error
		ifi, err = net.InterfaceByName("veth-a")
		return err
	}))
	if inside != want.Sys().(*syscall.Stat_t).Ino {
		t.Errorf("Do ran in namespace inode %d, want %d (%s)", inside, want.Sys().(*syscall.Stat_t).Ino, a.Name)
	}
	if inside == outside {
		t.Errorf("Do ran in the caller's namespace")
	}
	if _, err := net.InterfaceByName("veth-a"); err == nil {
		t.Errorf("veth-a is visible outside %s", a.Name)
	}
	if got := netnsInode(t); got != outside {
		t.Errorf("caller's namespace changed from %d to %d", outside, got)
	}

	mac, err := a.HardwareAddr("veth-a")
	mustOK(t, err)
	if mac.String() != ifi.HardwareAddr.String() || !strings.Contains(a.MustRun(t, "ip", "link", "show", "veth-a"), mac.String()) {
		t.Errorf("HardwareAddr = %v, Do saw %v", mac, ifi.HardwareAddr)
	}

	sentinel := errors.New("sentinel")
	if err := a.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	func() {
		defer func() {
			if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), "boom") {
				t.Errorf("recovered %v, want fn's panic", v)
			}
		}()
		a.Do(func() error { panic("boom") })
	}()
	if err := a.Do(func() error { runtime.Goexit(); return nil }); err == nil {
		t.Error("Do returned nil after fn called runtime.Goexit")
	}
}

// netnsInode returns the inode of the calling thread's network namespace.
func netnsInode(t *testing.T) uint64 {
	fi, err := os.Stat("/proc/thread-self/ns/net")
	mustOK(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestContainersOnBridge(t *testing.T) {
	l := NewForTest(t)
	host := mustNS(t, l, "host")
	mustOK(t, host.Bridge("br0"))
	c1, err := l.Container(host, "br0", "veth-c1", "c1", "10.2.0.1/24", 1450)
	mustOK(t, err)
	c2, err := l.Container(host, "br0", "veth-c2", "c2", "10.2.0.2/24", 1450)
	mustOK(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	mustOK(t, Reach(ctx, c1, c2, "10.2.0.2"))
	mustOK(t, TCPTransfer(ctx, c2, c1, "10.2.0.1:0", 1<<20))

	for _, hostIf := range []string{"veth-c1", "veth-c2"} {
		if out := host.MustRun(t, "ip", "link", "show", hostIf); !strings.Contains(out, "master br0") {
			t.Errorf("%s is not a port of br0: %s", hostIf, out)
		}
	}
	if out := c1.MustRun(t, "ip", "link", "show", "eth0"); !strings.Contains(out, "mtu 1450") {
		t.Errorf("c1 eth0 MTU is not 1450: %s", out)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	if err := Check(); err != nil {
		t.Skip(err)
	}
	l, err := New("vxc")
	mustOK(t, err)
	t.Cleanup(func() { l.Close() }) // in case the test stops early
	a, b := pair(t, l)
	p, err := a.Start("sleep", "1000")
	mustOK(t, err)
	_, err = b.Start("sh", "-c", "echo started; exec sleep 1000")
	mustOK(t, err)
	if list := netnsList(t); !strings.Contains(list, a.Name) || !strings.Contains(list, b.Name) {
		t.Fatalf("namespaces missing before Close:\n%s", list)
	}

	mustOK(t, l.Close())
	select {
	case <-p.Done():
	default:
		t.Error("process still running after Close")
	}
	if err := syscall.Kill(p.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d still exists after Close: kill 0 = %v", p.Pid(), err)
	}
	if list := netnsList(t); strings.Contains(list, l.prefix) {
		t.Errorf("namespaces left after Close:\n%s", list)
	}
	mustOK(t, l.Close())
	if _, err := l.Namespace("late"); err == nil {
		t.Error("Namespace after Close succeeded")
	}
	if _, err := a.Start("true"); err == nil {
		t.Error("Start after Close succeeded")
	}
}

// A process that ignores SIGTERM is killed after the grace period, and so is
// its child, which inherits the ignored SIGTERM.
func TestStopKillsStubbornProcessGroup(t *testing.T) {
	l := NewForTest(t)
	a := mustNS(t, l, "a")
	p, err := a.Start("sh", "-c", `trap "" TERM; sleep 1000 & echo $!; wait`)
	mustOK(t, err)
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0; {
		child, _ = strconv.Atoi(strings.TrimSpace(p.Output()))
		if time.Now().After(deadline) {
			t.Fatalf("no child pid in output %q", p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}

	start := time.Now()
	p.Stop(200 * time.Millisecond)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("Stop returned after %v: SIGTERM should have been ignored", d)
	}
	if err := p.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Wait = %v, want killed", err)
	}
	for deadline := time.Now().Add(5 * time.Second); alive(child); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the stopped process is still alive", child)
		}
	}
}

// alive reports whether pid runs and is not a zombie waiting for its reaper.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(after, "Z")
}

func TestNames(t *testing.T) {
	for _, prefix := range []string{"", "a/b", "..", "has space"} {
		if _, err := New(prefix); err == nil {
			t.Errorf("New(%q) succeeded", prefix)
		}
	}
	if err := checkIfNames("veth-host-12345"); err != nil {
		t.Errorf("15-byte name rejected: %v", err)
	}
	for _, name := range []string{"veth-host-123456", "", "eth0:1", "a b"} {
		if err := checkIfNames(name); err == nil {
			t.Errorf("interface name %q accepted", name)
		}
	}
	l1, err := New("vxn")
	mustOK(t, err)
	l2, err := New("vxn")
	mustOK(t, err)
	if l1.prefix == l2.prefix || !strings.Contains(l1.prefix, strconv.Itoa(os.Getpid())) {
		t.Errorf("prefixes %q and %q should differ and contain the pid", l1.prefix, l2.prefix)
	}
}

func netnsList(t *testing.T) string {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	mustOK(t, err)
	return string(out)
}

func mustNS(t *testing.T, l *Lab, name string) *NS {
	t.Helper()
	n, err := l.Namespace(name)
	mustOK(t, err)
	return n
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestProcessMemory: a process started in a namespace has a resident set,
// and its peak is at least that.
func TestProcessMemory(t *testing.T) {
	lab := NewForTest(t)
	ns, err := lab.Namespace("mem")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ns.Start("sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	// "ip netns exec" replaces itself with the command: wait for that, so
	// that the memory read is sleep's.
	deadline := time.Now().Add(10 * time.Second)
	for {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Pid()))
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d is %q, not sleep", p.Pid(), comm)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rss, hwm, err := p.Memory()
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 || hwm < rss {
		t.Errorf("VmRSS %d, VmHWM %d bytes: want a positive resident set and a peak at least that", rss, hwm)
	}
	anon, file, err := p.Resident()
	if err != nil {
		t.Fatal(err)
	}
	// The two parts and the shared memory (RssShmem, none here) make
	// VmRSS; a few pages may change between the two reads.
	if anon <= 0 || file <= 0 || anon+file > rss+1<<20 || anon+file < rss-1<<20 {
		t.Errorf("RssAnon %d + RssFile %d bytes, VmRSS %d: want two positive parts that add up to it", anon, file, rss)
	}
}
