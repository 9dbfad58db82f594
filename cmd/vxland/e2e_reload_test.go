package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// startWithConfig runs vxland on h with the names and addresses of
// tp.start on the command line and everything else from the file at path.
func (tp *topo) startWithConfig(h *testHost, path string) {
	tp.t.Helper()
	tp.launch(h, tp.daemonCmd(h.ns, "--vni", fmt.Sprint(tp.vni), "--local-ip", h.ip, "--bridge", "br0", "--tap", "vxtap0",
		"--control-socket", h.sock, "--config", path))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *testHost) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := h.proc.Cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// learned reports whether h's FDB holds a learned entry.
func (tp *topo) learned(h *testHost) bool {
	for _, e := range tp.fdb(h).Entries {
		if e.Origin == fdb.OriginLearned.String() {
			return true
		}
	}
	return false
}

// SIGHUP applies a rewritten configuration file to a running daemon: its
// static peers change in the FDB and traffic follows them, its log level
// changes; a setting that needs a restart is named; a bad file changes
// nothing and is named; the daemon runs on throughout.
func TestReloadOnSIGHUP(t *testing.T) {
	tp := newTopo(t, 46)
	h1, h2, h3 := tp.addHost(), tp.addHost(), tp.addHost()
	tp.start(h2, []string{h1.ip, h3.ip})
	tp.start(h3, []string{h1.ip, h2.ip})
	// Learned entries age out after 2 s, which h1 logs at debug level:
	// the line that tells whether debug logging is on.
	const agedOut = `msg="fdb entries aged out"`
	path := filepath.Join(tp.dir, "h1.yaml")
	writeFile(t, path, fmt.Sprintf("peer: [%s]\nlog-level: info\nfdb-ageing: 2s\nqueues: 1\n", h2.ip))
	tp.startWithConfig(h1, path)
	c1, c2, c3 := tp.quietContainer(h1), tp.quietContainer(h2), tp.quietContainer(h3)
	ctx := testCtx(t, 60*time.Second)

	if got := tp.floodList(h1); !slices.Equal(got, []string{h2.ip}) {
		t.Fatalf("flood list from the file: %v, want [%s]", got, h2.ip)
	}
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "c2's MAC ages out of h1's FDB", func() bool { return !tp.learned(h1) })
	if strings.Contains(h1.proc.Output(), agedOut) {
		t.Fatalf("a debug line at log-level info:\n%s", h1.proc.Output())
	}

	// The second peer replaces the first; debug logging on; one
	// setting that only a restart applies.
	writeFile(t, path, fmt.Sprintf("peer: [%s]\nlog-level: debug\nfdb-ageing: 2s\nqueues: 2\n", h3.ip))
	h1.signal(t, syscall.SIGHUP)
	waitFor(t, 10*time.Second, "h1's flood list is the new peer", func() bool {
		return slices.Equal(tp.floodList(h1), []string{h3.ip})
	})
	if err := netlab.Reach(ctx, c1.ns, c3.ns, c3.ip); err != nil {
		t.Fatalf("to the new peer's container: %v", err)
	}
	waitFor(t, 15*time.Second, "a debug line after log-level: debug", func() bool {
		return strings.Contains(h1.proc.Output(), agedOut)
	})
	if out := h1.proc.Output(); !strings.Contains(out, `msg="setting changed; it takes effect on restart" key=queues running=1 new=2`) ||
		strings.Count(out, "takes effect on restart") != 1 {
		t.Errorf("want one line naming queues as needing a restart:\n%s", out)
	}

	// A bad file: nothing changes, one line says why.
	writeFile(t, path, fmt.Sprintf("peer: [%s, not-an-ip]\nlog-level: info\n", h2.ip))
	h1.signal(t, syscall.SIGHUP)
	waitFor(t, 10*time.Second, "h1 logs the failed reload", func() bool {
		return strings.Contains(h1.proc.Output(), "reload failed")
	})
	for _, line := range strings.Split(h1.proc.Output(), "\n") {
		if strings.Contains(line, "reload failed") && (!strings.Contains(line, path) || !strings.Contains(line, "not-an-ip")) {
			t.Errorf("the failed reload's line does not name the file and the value: %s", line)
		}
	}
	if got := tp.floodList(h1); !slices.Equal(got, []string{h3.ip}) {
		t.Errorf("flood list after a bad file: %v, want [%s] unchanged", got, h3.ip)
	}
	if err := netlab.Reach(ctx, c1.ns, c3.ns, c3.ip); err != nil {
		t.Errorf("after a bad file: %v", err)
	}
	select {
	case <-h1.proc.Done():
		t.Fatalf("vxland exited after SIGHUP: %v\n%s", h1.proc.Wait(), h1.proc.Output())
	default:
	}
	stop(t, h1, " after reloads") // a clean exit; the persistent TAP stays, as it should
}

// vxland tells systemd (sd_notify) that it is ready, only once the FDB is
// in step with etcd, pings the watchdog, says it reloads on SIGHUP and
// that it stops on SIGTERM, in that order; --log-format json writes JSON.
func TestSystemdNotify(t *testing.T) {
	tp := newTopo(t, 42)
	etcd := tp.startEtcdNode()
	h1, h2 := tp.addHost(), tp.addHost()
	// The default lease TTL, which outlasts the pause of etcd below.
	tp.start(h2, nil, "--etcd-endpoints", etcdEndpoint)
	waitFor(t, 10*time.Second, "h2 registered in etcd", func() bool {
		return strings.Contains(h2.proc.Output(), "registered in etcd")
	})

	notifyPath := filepath.Join(t.TempDir(), "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := notify.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	var seen []string // every message but the watchdog's
	pings := 0
	next := func(d time.Duration) (string, bool) {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("notify socket closed")
			}
			if m == "WATCHDOG=1" {
				pings++
			} else {
				seen = append(seen, m)
			}
			return m, true
		case <-time.After(d):
			return "", false
		}
	}
	waitMsg := func(prefix string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if m, ok := next(time.Until(deadline)); ok && strings.HasPrefix(m, prefix) {
				return
			}
		}
		t.Fatalf("no %s from vxland; got %q and %d watchdog pings\n%s", prefix, seen, pings, h1.proc.Output())
	}

	// etcd paused: the data plane comes up, the first sync cannot.
	etcd.Cmd.Process.Signal(syscall.SIGSTOP)
	defer etcd.Cmd.Process.Signal(syscall.SIGCONT)
	cmd := tp.daemonCmd(h1.ns, "--vni", "42", "--local-ip", h1.ip, "--bridge", "br0", "--tap", "vxtap0",
		"--control-socket", h1.sock, "--etcd-endpoints", etcdEndpoint, "--log-format", "json")
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+notifyPath, "WATCHDOG_USEC=400000")
	tp.launch(h1, cmd)
	for paused := time.Now().Add(time.Second); time.Now().Before(paused); {
		if m, _ := next(time.Until(paused)); m == "READY=1" {
			t.Fatalf("READY=1 before the first sync with etcd (etcd is paused); flood list %v", tp.floodList(h1))
		}
	}
	etcd.Cmd.Process.Signal(syscall.SIGCONT)
	waitMsg("READY=1")
	if got := tp.floodList(h1); !slices.Equal(got, []string{h2.ip}) {
		t.Fatalf("READY=1 with flood list %v, want [%s] from etcd", got, h2.ip)
	}
	for start := pings; pings < start+2; {
		if _, ok := next(10 * time.Second); !ok {
			t.Fatalf("no watchdog pings after READY=1 (WATCHDOG_USEC=400000): %d", pings)
		}
	}

	h1.signal(t, syscall.SIGHUP)
	waitMsg("RELOADING=1")
	waitMsg("READY=1")
	h1.signal(t, syscall.SIGTERM)
	waitMsg("STOPPING=1")
	if err := h1.proc.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, h1.proc.Output())
	}
	for len(msgs) > 0 {
		next(0)
	}
	if len(seen) != 4 || seen[0] != "READY=1" || !strings.HasPrefix(seen[1], "RELOADING=1\nMONOTONIC_USEC=") ||
		seen[2] != "READY=1" || seen[3] != "STOPPING=1" {
		t.Errorf("messages %q, want READY=1, RELOADING=1 with MONOTONIC_USEC, READY=1, STOPPING=1", seen)
	}

	lines := strings.Split(strings.TrimSpace(h1.proc.Output()), "\n")
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["msg"] == nil || rec["level"] == nil {
			t.Fatalf("--log-format json wrote a line that is not a JSON record (%v): %s", err, l)
		}
	}
	if !strings.Contains(h1.proc.Output(), `"msg":"vxland up"`) {
		t.Errorf("no vxland up record:\n%s", h1.proc.Output())
	}
}
