package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// Two hosts with etcd serve VNIs 42 and 43. SIGHUP with h1's --config
// file rewritten to 42 and 44 (h2's to 42, 43 and 44) starts h1's agent
// of VNI 44 and stops its agent of VNI 43: VNI 44 carries traffic between
// the hosts, their MACs published in etcd and learned from it; h1's keys
// of VNI 43 vanish at once, though its lease lives 60 s unless revoked;
// h1's keys of VNI 42 keep their lease, and a probe on VNI 42 loses
// nothing.
func TestReloadAddsAndRemovesVNIsWithEtcd(t *testing.T) {
	const leaseTTL = 60 * time.Second
	tp := newTopo(t, 42)
	tp.startEtcdNode()
	h1, h2 := tp.addHost(), tp.addHost()
	paths := map[*testHost]string{}
	for _, h := range []*testHost{h1, h2} {
		paths[h] = filepath.Join(tp.dir, h.ns.Name+".yaml")
		writeFile(t, paths[h], "vnis:\n  - {vni: 42}\n  - {vni: 43}\n")
		tp.launch(h, tp.daemonCmd(h.ns, "--config", paths[h], "--etcd-endpoints", etcdEndpoint, "--lease-ttl", leaseTTL.String(),
			"--local-ip", h.ip, "--control-socket", h.sock, "--metrics-listen", metricsAddr(h), "--persist=false"))
	}
	container := func(h *testHost, vni int, ip string) *netlab.NS {
		t.Helper()
		name := fmt.Sprintf("v%dh%d", vni, slices.Index(tp.hosts, h)+1)
		ns, err := tp.lab.Container(h.ns, fmt.Sprintf("vxbr%d", vni), "c"+name, name, ip+"/24", tp.mtu)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	const ip1, ip2 = "10.0.0.1", "10.0.0.2"
	ctx := testCtx(t, 60*time.Second)
	c42a, c42b := container(h1, 42, ip1), container(h2, 42, ip2)
	c43 := container(h1, 43, ip1)
	container(h2, 43, ip2)
	for vni, c := range map[int]*netlab.NS{42: c42a, 43: c43} {
		if _, err := netlab.Ping(ctx, c, ip2, 3); err != nil {
			t.Fatalf("VNI %d: ping: %v", vni, err)
		}
	}
	probe, err := netlab.StartUDPProbe(context.Background(), c42b, c42a, ip1, probeInterval)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { probe.Stop() })

	cli := etcdClient(t, h1.ns, etcdEndpoint)
	// h1's keys of a VNI (its member key and its MACs), with their lease.
	keysOf := func(vni uint32, h *testHost) map[string]clientv3.LeaseID {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, discovery.NewKeys(discovery.DefaultPrefix, vni).Prefix(), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]clientv3.LeaseID{}
		for _, kv := range resp.Kvs {
			var r struct{ Addr, VTEP string }
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				t.Fatalf("%s: %v", kv.Key, err)
			}
			if r.Addr == h.ip || r.VTEP == h.ip {
				keys[string(kv.Key)] = clientv3.LeaseID(kv.Lease)
			}
		}
		return keys
	}
	macKey := func(vni uint32, ns *netlab.NS) string {
		return discovery.NewKeys(discovery.DefaultPrefix, vni).MAC(fdb.MAC(mustMAC(t, ns)))
	}
	waitFor(t, 10*time.Second, "h1's container of VNI 43 published in etcd", func() bool {
		_, ok := keysOf(43, h1)[macKey(43, c43)]
		return ok
	})
	keys42 := keysOf(42, h1)
	if _, ok := keys42[macKey(42, c42a)]; !ok {
		t.Fatalf("h1's container of VNI 42 not in etcd: %v", keys42)
	}
	lease43 := keysOf(43, h1)[discovery.NewKeys(discovery.DefaultPrefix, 43).Member(netip.MustParseAddr(h1.ip))]
	if lease43 == 0 {
		t.Fatal("h1's member key of VNI 43 has no lease: the revoke below would prove nothing")
	}
	waitFor(t, 10*time.Second, "the probe on VNI 42 under way", func() bool { return probe.Sent() >= 100 })

	writeFile(t, paths[h2], "vnis:\n  - {vni: 42}\n  - {vni: 43}\n  - {vni: 44}\n")
	h2.signal(t, syscall.SIGHUP)
	writeFile(t, paths[h1], "vnis:\n  - {vni: 42}\n  - {vni: 44}\n")
	h1.signal(t, syscall.SIGHUP)
	hup := time.Now()

	// h1's keys of VNI 43 are gone, long before its lease could expire:
	// the agent revoked it.
	waitFor(t, 10*time.Second, "h1's keys of VNI 43 gone from etcd", func() bool { return len(keysOf(43, h1)) == 0 })
	gone := time.Since(hup)
	if gone >= leaseTTL/2 {
		t.Fatalf("h1's keys of VNI 43 gone after %s; a revoke takes well under the lease TTL %s", gone, leaseTTL)
	}
	t.Logf("h1's keys of VNI 43 gone from etcd %s after SIGHUP (lease TTL %s)", gone.Round(time.Millisecond), leaseTTL)
	ttl, err := cli.TimeToLive(ctx, lease43)
	if err != nil || ttl.TTL != -1 {
		t.Errorf("h1's lease %x of VNI 43: %+v, %v; want it revoked (TTL -1)", lease43, ttl, err)
	}
	for _, h := range []*testHost{h1, h2} {
		waitFor(t, 15*time.Second, h.ns.Name+"'s reload that adds VNI 44 logged", func() bool {
			return strings.Contains(h.proc.Output(), `msg="VNIs changed" added=[44]`)
		})
	}

	// VNI 44 carries traffic, its MACs learned from etcd.
	c44a, c44b := container(h1, 44, ip1), container(h2, 44, ip2)
	if _, err := netlab.Ping(ctx, c44a, ip2, 3); err != nil {
		t.Fatalf("VNI 44, added by the reload: ping: %v", err)
	}
	for _, x := range []struct {
		h, other *testHost
		c        *netlab.NS
	}{{h1, h2, c44b}, {h2, h1, c44a}} {
		mac := net.HardwareAddr(mustMAC(t, x.c)).String()
		waitFor(t, 10*time.Second, fmt.Sprintf("%s's container of VNI 44 in etcd and in %s's FDB from it", x.other.ns.Name, x.h.ns.Name), func() bool {
			if _, ok := keysOf(44, x.other)[macKey(44, x.c)]; !ok {
				return false
			}
			var f control.FDBState
			tp.get(x.h, "/fdb?vni=44", &f)
			return slices.ContainsFunc(f.Entries, func(e fdb.Entry) bool {
				return e.MAC == mac && e.Origin == fdb.OriginRemote.String() && e.VTEP.Addr().String() == x.other.ip
			})
		})
	}

	// The agents' metrics and readiness follow them: VNI 44's agent is
	// there and synced, VNI 43's gone.
	waitFor(t, 10*time.Second, "h1's metrics with VNI 44's agent synced", func() bool {
		v, ok := scrape(t, h1).Value("vxland_etcd_synced", "vni", "44")
		return ok && v == 1
	})
	if v, ok := scrape(t, h1).Value("vxland_etcd_synced", "vni", "43"); ok {
		t.Errorf("h1's metrics still have VNI 43's agent: vxland_etcd_synced %v", v)
	}
	if code, body, err := getUnix(h1.sock, "/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("h1's /readyz after the reload: %d %q %v, want 200", code, body, err)
	}

	// VNI 42: the same keys on the same lease, and a probe that lost
	// nothing.
	if now := keysOf(42, h1); !mapsEqualOn(keys42, now) {
		t.Errorf("h1's keys of VNI 42 changed across the reload:\nbefore %v\nafter  %v", keys42, now)
	}
	probeLostNothing(t, probe, "VNI 42's probe", "across the reload")
}

// mapsEqualOn reports whether every key of want is in got with the same
// value.
func mapsEqualOn[K, V comparable](want, got map[K]V) bool {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}
