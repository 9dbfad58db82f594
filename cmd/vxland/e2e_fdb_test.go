package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A static entry added at run time with `vxland fdb add` carries traffic
// to a VTEP that h1 knows from nothing else (no etcd, no --peer), comes
// back when the daemon restarts, and `vxland fdb del` removes it and its
// file.
func TestStaticFDBAtRunTime(t *testing.T) {
	tp := newTopo(t, 45)
	h1, h2 := tp.addHost(), tp.addHost()
	state := filepath.Join(tp.dir, "state")
	tp.start(h1, nil, "--state-dir", state)
	tp.start(h2, []string{h1.ip})
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	mac2, err := c2.ns.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	// h1 floods to no one: c1 finds c2's MAC only in its own table.
	c1.ns.MustRun(t, "ip", "neigh", "replace", c2.ip, "lladdr", mac2.String(), "dev", "eth0", "nud", "permanent")
	rx := listenUDP(t, c2, 7000)
	// reaches sends a datagram from c1 to c2 and reports whether it
	// arrived.
	reaches := func(msg string) bool {
		t.Helper()
		if err := sendUDP(c1.ns, c1.ip, c2.ip+":7000", []byte(msg)); err != nil {
			t.Fatal(err)
		}
		return awaitDatagram(rx, []byte(msg), 2*time.Second) == nil
	}
	if reaches("before") {
		t.Fatal("c2 reached without a static entry: the test proves nothing")
	}

	if out, errOut, code := cli("fdb", "add", mac2.String(), "dst", h2.ip, "--control-socket", h1.sock); code != 0 {
		t.Fatalf("vxland fdb add: exit %d: %s%s", code, out, errOut)
	}
	want := mac2.String() + " dst " + h2.ip + " vni 45 self permanent"
	if fdbText := tp.text(h1, "show", "fdb"); !strings.Contains(fdbText, want) {
		t.Fatalf("show fdb lacks %q:\n%s", want, fdbText)
	}
	if !reaches("added") {
		t.Fatal("c1 -> c2 through the static entry: nothing arrived")
	}
	file := staticFDBFile(state, 45)
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the entry was not kept: %v", err)
	}

	stop(t, h1, "")
	tp.start(h1, nil, "--state-dir", state)
	if fdbText := tp.text(h1, "show", "fdb"); !strings.Contains(fdbText, want) {
		t.Fatalf("after a restart, show fdb lacks %q:\n%s", want, fdbText)
	}
	if !reaches("restarted") {
		t.Fatal("c1 -> c2 after the restart: nothing arrived")
	}

	if out, errOut, code := cli("fdb", "del", mac2.String(), "--control-socket", h1.sock); code != 0 {
		t.Fatalf("vxland fdb del: exit %d: %s%s", code, out, errOut)
	}
	if fdbText := tp.text(h1, "show", "fdb"); strings.Contains(fdbText, mac2.String()) {
		t.Fatalf("after del, show fdb still has %s:\n%s", mac2, fdbText)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("after del the file is still there: %v", err)
	}
	if reaches("deleted") {
		t.Fatal("c2 reached after the entry was deleted")
	}
	// A second del has nothing to remove, and says so.
	if _, errOut, code := cli("fdb", "del", mac2.String(), "--control-socket", h1.sock); code != 1 || !strings.Contains(errOut, "no static entry") {
		t.Fatalf("a second del: exit %d, %q; want 1 and no static entry", code, errOut)
	}
}
