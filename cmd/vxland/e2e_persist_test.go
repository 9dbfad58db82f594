package main

import (
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
)

// tapLink is what a container's side sees of h's TAP: its index, MAC and
// bridge.
func tapLink(t *testing.T, h *testHost, name string) string {
	t.Helper()
	out := h.ns.MustRun(t, "ip", "-o", "link", "show", name)
	index := strings.SplitN(out, ":", 2)[0]
	master := regexp.MustCompile(`master (\S+)`).FindStringSubmatch(out)
	mac := regexp.MustCompile(`link/ether (\S+)`).FindStringSubmatch(out)
	if master == nil || mac == nil {
		return fmt.Sprintf("index %s, not on a bridge or without MAC: %s", index, out)
	}
	return fmt.Sprintf("index %s mac %s master %s", index, mac[1], master[1])
}

// waitProgress waits until s has received more than n bytes.
func waitProgress(t *testing.T, s *netlab.TCPStream, n int64, what string) {
	t.Helper()
	waitFor(t, 20*time.Second, what, func() bool {
		select {
		case <-s.Done():
			t.Fatalf("%s: the stream ended: %v", what, s.Wait())
		default:
		}
		return s.Received() > n
	})
}

// heals returns the count of host setup repairs of h's vxland.
func (tp *topo) heals(h *testHost) uint64 {
	tp.t.Helper()
	var s control.Stats
	tp.get(h, "/stats", &s)
	return s.Heals
}

// A TCP stream between containers on two hosts survives vxland on one of
// them being killed and started again, and stopped with SIGTERM and
// started again: the persistent TAP keeps its index, MAC and bridge port,
// so the containers see no link change, and the bytes arrive intact.
func TestRestartKeepsTCP(t *testing.T) {
	tp := newTopo(t, 46)
	h1, h2 := tp.addHost(), tp.addHost()
	tp.startAll("--queues", "2")
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	before := tapLink(t, h1, "vxtap0")

	const rate, total = 2 << 20, 16 << 20 // 2 MB/s for 8 s
	s := netlab.StartTCPStream(testCtx(t, 60*time.Second), c1.ns, c2.ns, c2.ip+":5400", total, rate)
	waitProgress(t, s, 2<<20, "the stream under way")

	restart := func(how string, sig syscall.Signal) {
		got := s.Received()
		if sig == syscall.SIGKILL {
			h1.proc.Cmd.Process.Signal(sig)
			<-h1.proc.Done()
		} else {
			stop(t, h1, " with a stream running")
		}
		if after := tapLink(t, h1, "vxtap0"); after != before {
			t.Fatalf("after %s, while vxland is down, the TAP is %q, was %q", how, after, before)
		}
		tp.start(h1, []string{h2.ip}, "--queues", "2")
		if after := tapLink(t, h1, "vxtap0"); after != before {
			t.Fatalf("after %s and a start, the TAP is %q, was %q", how, after, before)
		}
		waitProgress(t, s, got+1<<20, "the stream going on after "+how)
		t.Logf("%s: longest pause of the stream so far %s", how, s.MaxGap().Round(time.Millisecond))
	}
	restart("SIGKILL", syscall.SIGKILL)
	restart("SIGTERM", syscall.SIGTERM)
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes arrived intact; longest pause %s", total, s.MaxGap().Round(time.Millisecond))
}

// With persistence (the default) SIGTERM leaves the TAP, on its bridge,
// for the next start.
func TestShutdownKeepsPersistentTAP(t *testing.T) {
	tp := newTopo(t, 47)
	h := tp.addHost()
	tp.start(h, nil)
	before := tapLink(t, h, "vxtap0")
	stop(t, h, "")
	if after := tapLink(t, h, "vxtap0"); after != before {
		t.Fatalf("after SIGTERM the TAP is %q, was %q", after, before)
	}
	if link := h.ns.MustRun(t, "ip", "-d", "link", "show", "vxtap0"); !strings.Contains(link, "persist on") {
		t.Fatalf("the TAP left behind is not persistent:\n%s", link)
	}
	h.ns.MustRun(t, "ip", "link", "del", "vxtap0") // as README says
}

// A TAP left with other flags than vxland wants is recreated, with one
// log line; one that fits is adopted as it is.
func TestAdoptOrRecreateTAP(t *testing.T) {
	tp := newTopo(t, 48)
	h := tp.addHost()
	const recreated, adopted = "recreating the existing TAP", "adopting the existing TAP"

	h.ns.MustRun(t, "ip", "tuntap", "add", "dev", "vxtap0", "mode", "tap", "multi_queue")
	before := h.ns.MustRun(t, "ip", "-o", "link", "show", "vxtap0")
	tp.start(h, nil, "--offload", "none", "--queues", "2")
	if out := h.proc.Output(); strings.Contains(out, recreated) || !strings.Contains(out, adopted) {
		t.Fatalf("a fitting TAP was recreated, or its adoption not logged:\n%s", out)
	}
	if after := h.ns.MustRun(t, "ip", "-o", "link", "show", "vxtap0"); strings.SplitN(after, ":", 2)[0] != strings.SplitN(before, ":", 2)[0] {
		t.Fatalf("a fitting TAP was not adopted: was %s, is %s", before, after)
	}
	stop(t, h, "")

	// The next start wants the virtio-net header and one queue.
	tp.start(h, nil, "--offload", "all", "--queues", "1")
	out := h.proc.Output()
	if n := strings.Count(out, recreated); n != 1 || strings.Contains(out, adopted) {
		t.Fatalf("%d log lines say the TAP is recreated, want 1 and no adoption:\n%s", n, out)
	}
	link := h.ns.MustRun(t, "ip", "-d", "link", "show", "vxtap0")
	if !strings.Contains(link, "vnet_hdr on") || strings.Contains(link, "multi_queue") {
		t.Fatalf("the recreated TAP does not have the flags asked for:\n%s", link)
	}
	if !strings.Contains(out, "vnet_hdr off, want on") || !strings.Contains(out, "multi_queue on, want off") {
		t.Fatalf("the log line does not say what did not fit:\n%s", out)
	}
}

// Deleting the TAP, detaching it from its bridge, setting it down and
// deleting the bridge are each repaired while vxland runs, and counted;
// traffic between the containers resumes.
func TestHeal(t *testing.T) {
	tp := newTopo(t, 49)
	h1, h2 := tp.addHost(), tp.addHost()
	tp.startAll("--queues", "2")
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	if err := netlab.Reach(testCtx(t, 15*time.Second), c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}
	mac, err := h1.ns.HardwareAddr("vxtap0")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cmd  []string
	}{
		{"TAP deleted", []string{"ip", "link", "del", "vxtap0"}},
		{"TAP detached", []string{"ip", "link", "set", "vxtap0", "nomaster"}},
		{"TAP down", []string{"ip", "link", "set", "vxtap0", "down"}},
		{"bridge deleted", []string{"ip", "link", "del", "br0"}},
	} {
		heals := tp.heals(h1)
		h1.ns.MustRun(t, tc.cmd...)
		took := waitFor(t, 10*time.Second, "heal after "+tc.name, func() bool {
			out, err := h1.ns.Run("ip", "-o", "link", "show", "vxtap0")
			return err == nil && strings.Contains(out, "master br0") && strings.Contains(out, ",UP") &&
				tp.heals(h1) > heals
		})
		if err := netlab.Reach(testCtx(t, 15*time.Second), c1.ns, c2.ns, c2.ip); err != nil {
			t.Fatalf("after %s: %v", tc.name, err)
		}
		if got, err := h1.ns.HardwareAddr("vxtap0"); err != nil || got.String() != mac.String() {
			t.Fatalf("after %s the TAP's MAC is %s (%v), was %s", tc.name, got, err, mac)
		}
		t.Logf("%s: healed after %s, %d heals counted", tc.name, took.Round(time.Millisecond), tp.heals(h1))
	}
	if out := h1.proc.Output(); !strings.Contains(out, "host setup repaired") || !strings.Contains(out, "TAP was deleted") {
		t.Fatalf("the heals are not logged:\n%s", out)
	}
}

// Pod-to-pod TCP survives a restart of a flannel node's vxland: flannel.1,
// its address, neighbours and routes stay while it is down, so pod traffic
// never takes the default route; on start, what changed meanwhile is
// reconciled: the route and neighbour of a node that went are removed,
// those of the others are in place.
func TestFlannelRestartKeepsTCP(t *testing.T) {
	fl, n1, n2, p1, p2 := newFlannelPair(t)
	s1, s2 := n1.subnet(t), n2.subnet(t)
	s := netlab.StartTCPStream(testCtx(t, 60*time.Second), p1.ns, p2.ns, p2.ip+":5400", 12<<20, 2<<20)
	waitProgress(t, s, 2<<20, "the stream under way")
	index := func() string {
		return strings.SplitN(n2.ns.MustRun(t, "ip", "-o", "link", "show", "flannel.1"), ":", 2)[0]
	}
	before := index()

	got := s.Received()
	n2.proc.Cmd.Process.Signal(syscall.SIGKILL)
	<-n2.proc.Done()
	routes := n2.ns.MustRun(t, "ip", "-4", "route", "show", "dev", "flannel.1")
	if r := fmt.Sprintf("%s via %s onlink", s1, s1.Addr()); !strings.Contains(routes, r) {
		t.Fatalf("while vxland is down, the route %q is gone:\n%s", r, routes)
	}
	const stale = "10.244.250.0/24"
	n2.ns.MustRun(t, "ip", "route", "add", stale, "via", "10.244.250.0", "dev", "flannel.1", "onlink")
	n2.ns.MustRun(t, "ip", "neigh", "add", "10.244.250.0", "lladdr", "02:00:00:00:00:fa", "dev", "flannel.1", "nud", "permanent")
	fl.start(n2)
	fl.waitReady(n2)
	if after := index(); after != before {
		t.Fatalf("flannel.1 is interface %s after the restart, was %s", after, before)
	}
	waitProgress(t, s, got+1<<20, "the stream going on after the restart")
	if err := waitProgrammed(t, n2, without(fl.leases(), s2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the stale route and neighbour removed", func() bool {
		r := n2.ns.MustRun(t, "ip", "-4", "route", "show", "dev", "flannel.1")
		nb := n2.ns.MustRun(t, "ip", "-4", "neigh", "show", "dev", "flannel.1")
		return !strings.Contains(r, stale) && !strings.Contains(nb, "10.244.250.0 ")
	})
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("pod stream intact across the restart; longest pause %s", s.MaxGap().Round(time.Millisecond))
}

// A flannel.<VNI> deleted while vxland runs comes back with its address,
// neighbours and routes, and pod traffic flows again.
func TestFlannelHealsDeletedDevice(t *testing.T) {
	fl, _, n2, p1, p2 := newFlannelPair(t)
	s2 := n2.subnet(t)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.Reach(ctx, p1.ns, p2.ns, p2.ip); err != nil {
		t.Fatal(err)
	}
	n2.ns.MustRun(t, "ip", "link", "del", "flannel.1")
	waitFor(t, 15*time.Second, "flannel.1 back with its address", func() bool {
		out, err := n2.ns.Run("ip", "-4", "addr", "show", "dev", "flannel.1")
		return err == nil && strings.Contains(out, s2.Addr().String()+"/32")
	})
	if err := waitProgrammed(t, n2, without(fl.leases(), s2)); err != nil {
		t.Fatal(err)
	}
	if err := netlab.Reach(ctx, p1.ns, p2.ns, p2.ip); err != nil {
		t.Fatalf("pods after the device was deleted and put back: %v", err)
	}
	if err := netlab.Reach(ctx, p2.ns, p1.ns, p1.ip); err != nil {
		t.Fatalf("pods after the device was deleted and put back, the other way: %v", err)
	}
}
