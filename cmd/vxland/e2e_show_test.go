package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// cli runs `vxland args...` in this process, as a user runs show and
// trace, and returns its output and exit status.
func cli(args ...string) (stdout, stderr string, code int) {
	var o, e strings.Builder
	code = run(args, &o, &e)
	return o.String(), e.String(), code
}

// query runs `vxland CMD... -o json` against h's daemon and decodes the
// answer into v.
func (tp *topo) query(h *testHost, v any, cmd ...string) {
	tp.t.Helper()
	out, errOut, code := cli(append(cmd, "-o", "json", "--control-socket", h.sock)...)
	if code != 0 {
		tp.t.Fatalf("vxland %s: exit %d: %s", strings.Join(cmd, " "), code, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		tp.t.Fatalf("vxland %s -o json: %v\n%s", strings.Join(cmd, " "), err, out)
	}
}

// text runs `vxland CMD...` against h's daemon and returns what it prints.
func (tp *topo) text(h *testHost, cmd ...string) string {
	tp.t.Helper()
	out, errOut, code := cli(append(cmd, "--control-socket", h.sock)...)
	if code != 0 {
		tp.t.Fatalf("vxland %s: exit %d: %s", strings.Join(cmd, " "), code, errOut)
	}
	return out
}

func (tp *topo) peer(h *testHost, ip string) fdb.VTEPState {
	tp.t.Helper()
	var peers []fdb.VTEPState
	tp.query(h, &peers, "show", "peers")
	for _, p := range peers {
		if p.VTEP.Addr().String() == ip {
			return p
		}
	}
	tp.t.Fatalf("%s: no peer %s in %+v", h.ns, ip, peers)
	return fdb.VTEPState{}
}

func macOf(t *testing.T, c *testContainer) string {
	t.Helper()
	mac, err := c.ns.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return mac.String()
}

// show peers, show fdb and trace tell where a container's frames go and
// why, and the per-peer counters grow with a transfer.
func TestShowPeersFDBAndTrace(t *testing.T) {
	tp := newTopo(t, 42)
	h1, h2, h3 := tp.addHost(), tp.addHost(), tp.addHost()
	tp.startAll()
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}
	mac2 := macOf(t, c2)

	before1, before2 := tp.peer(h1, h2.ip), tp.peer(h2, h1.ip)
	const n = 4 << 20
	if err := netlab.TCPTransfer(ctx, c1.ns, c2.ns, c2.ip+":5001", n); err != nil {
		t.Fatal(err)
	}
	after1, after2 := tp.peer(h1, h2.ip), tp.peer(h2, h1.ip)
	// n bytes of TCP payload are at least n bytes of frames, in frames of
	// at most MTU + 14 bytes.
	minPackets := uint64(n / (tp.mtu + 14))
	if d := after1.TxBytes - before1.TxBytes; d < n || after1.TxPackets-before1.TxPackets < minPackets {
		t.Errorf("h1's counters for %s grew by %d packets, %d bytes; want at least %d, %d",
			h2.ip, after1.TxPackets-before1.TxPackets, d, minPackets, n)
	}
	if d := after2.RxBytes - before2.RxBytes; d < n || after2.RxPackets-before2.RxPackets < minPackets {
		t.Errorf("h2's counters for %s grew by %d packets, %d bytes received; want at least %d, %d",
			h1.ip, after2.RxPackets-before2.RxPackets, d, minPackets, n)
	}
	if !slices.Equal(after1.Sources, []string{"static"}) || !after1.Seen ||
		!slices.ContainsFunc(after1.MACs, func(e fdb.Entry) bool { return e.MAC == mac2 }) {
		t.Errorf("h1's peer %s: %+v; want known from --peer, seen, with %s behind it", h2.ip, after1, mac2)
	}
	if out := tp.text(h1, "show", "peers"); !strings.Contains(out, h2.ip) || !strings.Contains(out, h3.ip) || !strings.Contains(out, "static") {
		t.Errorf("show peers:\n%s", out)
	}

	var st control.FDBState
	tp.query(h1, &st, "show", "fdb")
	i := slices.IndexFunc(st.Entries, func(e fdb.Entry) bool { return e.MAC == mac2 })
	if i < 0 || st.Entries[i].VTEP.Addr().String() != h2.ip || st.Entries[i].Origin != "learned" ||
		len(st.Flood) != 1 || len(st.Flood[0].VTEPs) != 2 {
		t.Errorf("show fdb -o json: %+v; want %s learned behind %s, and a flood list of two", st, mac2, h2.ip)
	}

	var tr control.Trace
	tp.query(h1, &tr, "trace", mac2)
	if tr.Verdict != control.VerdictUnicast || tr.Entry.VTEP.Addr().String() != h2.ip || tr.Entry.Origin != "learned" ||
		tr.Peer == nil || tr.Peer.TxBytes < n {
		t.Errorf("trace %s: %+v; want unicast to %s, learned, with the peer's counters", mac2, tr, h2.ip)
	}
	if out := tp.text(h1, "trace", mac2); !strings.Contains(out, "goes to "+h2.ip+": learned") {
		t.Errorf("trace %s:\n%s", mac2, out)
	}
	const unknown = "02:00:5e:00:00:99"
	tr = control.Trace{}
	tp.query(h1, &tr, "trace", unknown)
	if tr.Verdict != control.VerdictFlood || len(tr.Flood) != 2 {
		t.Errorf("trace %s: %+v; want flooded to the 2 peers", unknown, tr)
	}
	if out := tp.text(h1, "trace", unknown); !strings.Contains(out, "flooded to 2 peers") {
		t.Errorf("trace %s:\n%s", unknown, out)
	}
}

// show finds a daemon started with --vni 42 without being told its
// socket, and says which socket it tried when no daemon answers. The
// daemon and show run in a mount namespace of their own with /run on a
// tmpfs, so that the default socket path is private to the test.
func TestShowFindsDaemonByVNI(t *testing.T) {
	tp := newTopo(t, 42)
	h := tp.addHost()
	cmd := h.ns.Command("sh", "-c", `mount -t tmpfs tmpfs /run && exec "$0" "$@"`, tp.exe,
		"--vni", "42", "--local-ip", h.ip, "--bridge", "br0")
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	p, err := h.ns.StartCmd(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vxland:\n%s", p.Output())
		}
	})
	// show, run where the daemon runs: in its mount namespace.
	show := func(env []string, args ...string) (string, int) {
		c := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(p.Pid()), "-m", tp.exe, "show"}, args...)...)
		c.Env = append(append(os.Environ(), daemonEnv+"=1"), env...)
		out, err := c.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	waitFor(t, 15*time.Second, "vxland answers show", func() bool {
		select {
		case <-p.Done():
			t.Fatalf("vxland exited: %v\n%s", p.Wait(), p.Output())
		default:
		}
		_, code := show(nil, "stats", "--vni", "42")
		return code == 0
	})
	if out, code := show([]string{"VXLAND_VNI=42"}, "config"); code != 0 || !strings.Contains(out, "/run/vxland/vxtap42.sock") {
		t.Errorf("show config with VXLAND_VNI=42: exit %d\n%s", code, out)
	}
	out, code := show(nil, "peers", "--vni", "43")
	if code != 1 || !strings.Contains(out, "no vxland answers on /run/vxland/vxtap43.sock") {
		t.Errorf("show with no daemon: exit %d\n%s\nwant 1 and the socket it tried", code, out)
	}
}

// trace of an address that etcd published: the ARP request is answered on
// this host, and frames go to the host that registered the MAC.
func TestEtcdTraceARPSuppression(t *testing.T) {
	tp, _ := newEtcdTopo(t, 2)
	h1, h2 := tp.hosts[0], tp.hosts[1]
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	if err := netlab.Reach(testCtx(t, 30*time.Second), c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}
	mac2 := macOf(t, c2)
	var tr control.Trace
	waitFor(t, 10*time.Second, "h1 answers ARP for "+c2.ip, func() bool {
		tr = control.Trace{}
		tp.query(h1, &tr, "trace", c2.ip)
		return tr.ARP == control.VerdictAnswered
	})
	if tr.MAC != mac2 || tr.Verdict != control.VerdictUnicast || tr.Entry.Origin != "remote" ||
		tr.Entry.VTEP.Addr().String() != h2.ip || !slices.Contains(tr.Peer.Sources, "etcd") {
		t.Errorf("trace %s: %+v; want is-at %s, unicast to %s by an etcd record", c2.ip, tr, mac2, h2.ip)
	}
	out := tp.text(h1, "trace", c2.ip)
	for _, want := range []string{"answered on this host (ARP suppression): is-at " + mac2, "goes to " + h2.ip + ": remote entry, from an etcd record", "arp_answered"} {
		if !strings.Contains(out, want) {
			t.Errorf("trace %s lacks %q:\n%s", c2.ip, want, out)
		}
	}
	tr = control.Trace{}
	tp.query(h1, &tr, "trace", "10.200.0.99")
	if tr.ARP != control.VerdictFlood || len(tr.Flood) != 1 || tr.Verdict != "" {
		t.Errorf("trace of an unpublished address: %+v; want its ARP request flooded to 1 peer", tr)
	}
}
