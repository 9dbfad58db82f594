package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay"
)

// ipv6Container is addContainer with an IPv6 address as well, fd00::N/64
// for 10.200.0.N, usable at once (no duplicate address detection), and
// without router solicitations, which nobody on the overlay answers.
func (tp *topo) ipv6Container(h *testHost) (*testContainer, netip.Addr) {
	tp.t.Helper()
	c := tp.addContainer(h)
	ip6 := netip.MustParseAddr("fd00::" + c.ip[strings.LastIndexByte(c.ip, '.')+1:])
	for _, kv := range [][2]string{{"net.ipv6.conf.eth0.disable_ipv6", "0"}, {"net.ipv6.conf.eth0.router_solicitations", "0"}} {
		if err := c.ns.SetSysctl(kv[0], kv[1]); err != nil {
			tp.t.Fatal(err)
		}
	}
	c.ns.MustRun(tp.t, "ip", "-6", "addr", "add", ip6.String()+"/64", "dev", "eth0", "nodad")
	return c, ip6
}

// IPv6 neighbour discovery for addresses published in etcd is answered
// on the local host and never crosses the underlay.
func TestEtcdNDSuppression(t *testing.T) {
	tp, _ := newEtcdTopo(t, 3)
	h1 := tp.hosts[0]
	c1, ip1 := tp.ipv6Container(h1)
	type far struct {
		c   *testContainer
		ip6 netip.Addr
	}
	var fars []far
	for _, h := range tp.hosts[1:] {
		c, ip6 := tp.ipv6Container(h)
		fars = append(fars, far{c, ip6})
	}
	for _, h := range tp.hosts {
		waitFor(t, 10*time.Second, h.ns.Name+" sees the other hosts", func() bool {
			return slices.Equal(tp.floodList(h), othersOf(tp, h))
		})
	}
	ctx := testCtx(t, 90*time.Second)
	cli := etcdClient(t, h1.ns, etcdEndpoint)
	keys := discovery.NewKeys(discovery.DefaultPrefix, 42)
	for _, f := range fars {
		// f talks first: its solicitation for c1 tells its host its
		// address, which that host publishes.
		if err := netlab.Reach(ctx, f.c.ns, c1.ns, ip1.String()); err != nil {
			t.Fatal(err)
		}
		mac, err := f.c.ns.HardwareAddr("eth0")
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, fmt.Sprintf("%s published with %s", f.ip6, mac), func() bool {
			var rec discovery.MACRecord
			resp, err := cli.Get(ctx, keys.MAC([6]byte(mac)))
			return err == nil && len(resp.Kvs) == 1 && json.Unmarshal(resp.Kvs[0].Value, &rec) == nil && slices.Contains(rec.IPv6, f.ip6)
		})
	}

	// Once h1 has the records, c1's solicitations for the far containers
	// are answered on h1: none is flooded, nothing at all is flooded.
	var before, after overlay.Stats
	deadline := time.Now().Add(15 * time.Second)
	for {
		c1.ns.MustRun(t, "ip", "-6", "neigh", "flush", "dev", "eth0")
		before = tp.stats(h1)
		for _, f := range fars {
			if err := netlab.Reach(ctx, c1.ns, f.c.ns, f.ip6.String()); err != nil {
				t.Fatal(err)
			}
		}
		after = tp.stats(h1)
		if after.NDAnswered >= before.NDAnswered+uint64(len(fars)) && after.NDFlooded == before.NDFlooded && after.TxFlooded == before.TxFlooded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c1's solicitations not answered on h1: nd_answered %d -> %d, nd_flooded %d -> %d, tx_flooded %d -> %d",
				before.NDAnswered, after.NDAnswered, before.NDFlooded, after.NDFlooded, before.TxFlooded, after.TxFlooded)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, f := range fars {
		mac, err := f.c.ns.HardwareAddr("eth0")
		if err != nil {
			t.Fatal(err)
		}
		neigh := c1.ns.MustRun(t, "ip", "-6", "neigh", "show", f.ip6.String(), "dev", "eth0")
		if !strings.Contains(neigh, "lladdr "+mac.String()) {
			t.Fatalf("c1 resolved %s to %q, want %s", f.ip6, neigh, mac)
		}
	}
}
