package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// floodEtherType is the EtherType of netlab.FloodFrames.
const floodEtherType = 0x88b5

// Multicast BUM mode: one vxland host and two hosts with the kernel's
// vxlan on the group, on a switch that delivers multicast. Containers
// resolve each other by ARP and carry TCP both ways; a broadcast reaches
// every other container exactly once, as one datagram to the group.
func TestMulticastGroupWithKernelPeers(t *testing.T) {
	for _, tc := range []struct {
		name, group string
		v6          bool
	}{{"ipv4", "239.1.1.1", false}, {"ipv6", "ff05::42", true}} {
		t.Run(tc.name, func(t *testing.T) { testMulticastGroup(t, tc.group, tc.v6) })
	}
}

func testMulticastGroup(t *testing.T, group string, v6 bool) {
	const port = 4789
	tp := newTopo(t, 42)
	tp.ipv6 = v6
	underlay := map[bool]string{false: "10.77.0.0/24", true: "fd77::/64"}[v6]
	if v6 {
		tp.mtu = 1430
	}
	// Without a querier, a snooping bridge would forward the group to
	// the ports whose reports it happened to see: flood it to all.
	tp.sw.MustRun(t, "ip", "link", "set", "sw0", "type", "bridge", "mcast_snooping", "0")
	vh, k1, k2 := tp.addHost(), tp.addHost(), tp.addHost()
	for _, k := range []*testHost{k1, k2} {
		k.ns.MustRun(t, "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "group", group,
			"dev", "eth0", "dstport", fmt.Sprint(port), "local", k.ip)
		k.ns.MustRun(t, "ip", "link", "set", "vx0", "mtu", fmt.Sprint(tp.mtu))
		if err := k.ns.Bridge("br0"); err != nil {
			t.Fatal(err)
		}
		if err := k.ns.SetMaster("vx0", "br0"); err != nil {
			t.Fatal(err)
		}
		k.ns.MustRun(t, "ip", "link", "set", "vx0", "up")
	}
	tp.start(vh, nil, "--group", group, "--iface", "eth0", "--underlay-cidr", underlay, "--port", fmt.Sprint(port))
	vc, kc1, kc2 := tp.addContainer(vh), tp.addContainer(k1), tp.addContainer(k2)

	ctx := testCtx(t, 60*time.Second)
	for _, p := range [][2]*testContainer{{vc, kc1}, {kc1, vc}, {vc, kc2}, {kc2, vc}} {
		if err := netlab.TCPTransfer(ctx, p[0].ns, p[1].ns, p[1].ip+":5001", 1<<20); err != nil {
			t.Fatalf("%s -> %s: %v", p[0].ns, p[1].ns, err)
		}
	}
	// ARP resolved both ways: each kernel container has vxland's
	// container as a neighbour and the other way round.
	for _, p := range [][2]*testContainer{{vc, kc1}, {vc, kc2}, {kc1, vc}, {kc2, vc}} {
		if out := p[0].ns.MustRun(t, "ip", "neigh", "show", p[1].ip); !containsAny(out, "REACHABLE", "STALE", "DELAY", "PROBE") {
			t.Errorf("%s has no neighbour entry for %s: %q", p[0].ns, p[1].ip, out)
		}
	}

	// The kernel hosts were learned from what they sent to the group.
	var peers []fdb.VTEPState
	tp.get(vh, "/peers", &peers)
	for _, k := range []*testHost{k1, k2} {
		i := slices.IndexFunc(peers, func(p fdb.VTEPState) bool { return p.VTEP.Addr().String() == k.ip })
		if i < 0 || !slices.Contains(peers[i].Sources, fdb.SourceMulticast.String()) {
			t.Errorf("kernel host %s not a VTEP admitted from the group: %+v", k.ip, peers)
		}
	}

	// Broadcasts, from vxland's container and then from a kernel's: every
	// other container gets each exactly once.
	const n = 50
	frames := netlab.FloodFrames(2 * n)
	before := tp.stats(vh)
	checkFloodOnce(t, vc, frames[:n], kc1, kc2)
	after := tp.stats(vh)
	// The containers' own neighbour discovery may flood a few more.
	flooded, copies := after.TxFlooded-before.TxFlooded, after.TxFloodCopies-before.TxFloodCopies
	if flooded < n || copies != flooded {
		t.Errorf("vxland flooded %d frames (want at least %d) as %d datagrams, want one each, to the group", flooded, n, copies)
	}
	checkFloodOnce(t, kc1, frames[n:], vc, kc2)
	if got := tp.stats(vh).RxPackets - after.RxPackets; got < n {
		t.Errorf("vxland received %d frames, want at least the %d broadcasts", got, n)
	}
}

// checkFloodOnce sends frames, broadcasts of netlab.FloodFrames, from
// the container from and checks that each of to receives every one of
// them exactly once.
func checkFloodOnce(t *testing.T, from *testContainer, frames [][]byte, to ...*testContainer) {
	t.Helper()
	counters := make([]*netlab.FrameCounter, len(to))
	for i, c := range to {
		fc, err := c.ns.CountFrames("eth0", floodEtherType)
		if err != nil {
			t.Fatal(err)
		}
		defer fc.Close()
		counters[i] = fc
	}
	if err := from.ns.SendFrames("eth0", frames); err != nil {
		t.Fatal(err)
	}
	for i, fc := range counters {
		got := 0
		for deadline := time.Now().Add(10 * time.Second); got < len(frames) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			var err error
			if got, err = fc.Count(); err != nil {
				t.Fatal(err)
			}
		}
		// A duplicate would come with its original: give it the time
		// to, then count again.
		time.Sleep(300 * time.Millisecond)
		got, err := fc.Count()
		if err != nil {
			t.Fatal(err)
		}
		if got != len(frames) {
			t.Errorf("%s received %d of the %d broadcasts from %s, want each once", to[i].ns, got, len(frames), from.ns)
		}
	}
}

func containsAny(s string, subs ...string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
}
