package main

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// Three hosts with etcd, each one vxland serving VNIs 42 and 43, and a
// fourth that serves VNI 42 only. Each VNI has a container on each of the
// three hosts, with the same IP addresses in both VNIs and a MAC of its
// own. Each VNI's agent registers, publishes and watches its own VNI:
// the flood lists are per VNI (the fourth host is in VNI 42's only), the
// remote FDB entries of a VNI are that VNI's containers, every address
// resolves to its own VNI's MAC, and traffic crosses the hosts in each
// VNI.
func TestEtcdSeveralVNIs(t *testing.T) {
	tp := newTopo(t, 42)
	tp.startEtcdNode()
	for range 4 {
		tp.addHost()
	}
	both, only42 := tp.hosts[:3], tp.hosts[3]
	vnis := []int{42, 43}
	for _, h := range both {
		tp.launch(h, tp.daemonCmd(h.ns, append(etcdFlags(etcdEndpoint), "--vni", "42", "--vni", "43", "--local-ip", h.ip,
			"--control-socket", h.sock, "--metrics-listen", metricsAddr(h), "--persist=false", "--log-level", "debug")...))
	}
	tp.launch(only42, tp.daemonCmd(only42.ns, append(etcdFlags(etcdEndpoint), "--vni", "42", "--local-ip", only42.ip,
		"--control-socket", only42.sock, "--persist=false", "--log-level", "debug")...))

	// The flood list of each VNI is the other hosts that serve it.
	serving := map[int][]*testHost{42: tp.hosts, 43: both}
	for _, vni := range vnis {
		for _, h := range serving[vni] {
			var want []string
			for _, o := range serving[vni] {
				if o != h {
					want = append(want, o.ip)
				}
			}
			slices.Sort(want)
			waitFor(t, 10*time.Second, fmt.Sprintf("%s's flood list of VNI %d is %v", h.ns.Name, vni, want), func() bool {
				return slices.Equal(floodListOf(tp, h, vni), want)
			})
		}
	}
	for _, h := range both {
		if fl := floodListOf(tp, h, 43); slices.Contains(fl, only42.ip) {
			t.Errorf("%s's flood list of VNI 43 holds %s, which serves VNI 42 only: %v", h.ns.Name, only42.ip, fl)
		}
		checkProbes(t, h.sock, h.ns, metricsAddr(h), http.StatusOK)
		f := scrape(t, h)
		for _, vni := range vnis {
			if v := value(t, f, "vxland_etcd_synced", "vni", strconv.Itoa(vni)); v != 1 {
				t.Errorf("%s: vxland_etcd_synced{vni=%d} = %v once ready", h.ns.Name, vni, v)
			}
		}
	}

	// Container i of a VNI is on host i at 10.0.0.i, in both VNIs, with
	// the MAC 02:00:00:00:<VNI>:0i.
	type ctr struct {
		ns      *netlab.NS
		ip, mac string
		host    *testHost
	}
	ctrs := map[int][]ctr{}
	for _, vni := range vnis {
		for i, h := range both {
			name := fmt.Sprintf("v%dh%d", vni, i+1)
			c := ctr{ip: fmt.Sprintf("10.0.0.%d", i+1), mac: fmt.Sprintf("02:00:00:00:%02x:%02x", vni, i+1), host: h}
			ns, err := tp.lab.Container(h.ns, fmt.Sprintf("vxbr%d", vni), "c"+name, name, c.ip+"/24", tp.mtu)
			if err != nil {
				t.Fatal(err)
			}
			ns.MustRun(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6")
			ns.MustRun(t, "ip", "link", "set", "eth0", "address", c.mac)
			c.ns = ns
			ctrs[vni] = append(ctrs[vni], c)
		}
	}
	ctx := testCtx(t, 90*time.Second)
	for _, vni := range vnis {
		for _, a := range ctrs[vni] {
			for _, b := range ctrs[vni] {
				if a.ns == b.ns {
					continue
				}
				if err := netlab.Reach(ctx, a.ns, b.ns, b.ip); err != nil {
					t.Fatalf("VNI %d: %s -> %s: %v", vni, a.ns, b.ns, err)
				}
				// The address is the other host's container of this VNI,
				// never the other VNI's at the same address.
				neigh := a.ns.MustRun(t, "ip", "neigh", "show", b.ip, "dev", "eth0")
				if !strings.Contains(neigh, "lladdr "+b.mac) {
					t.Errorf("VNI %d: %s resolved %s to %q, want %s", vni, a.ns, b.ip, neigh, b.mac)
				}
			}
		}
	}

	// Each host learned from etcd the other hosts' containers of each VNI
	// in that VNI, and none of the other VNI's. (A VNI also holds the
	// MACs its bridges and the containers' first addresses sent from.)
	for _, vni := range vnis {
		other := map[int]int{42: 43, 43: 42}[vni]
		for _, h := range both {
			want := map[string]string{}
			for _, c := range ctrs[vni] {
				if c.host != h {
					want[c.mac] = c.host.ip
				}
			}
			var remote map[string]string
			waitFor(t, 10*time.Second, fmt.Sprintf("%s has VNI %d's remote containers from etcd", h.ns.Name, vni), func() bool {
				var f control.FDBState
				tp.query(h, &f, "show", "fdb", "--vni", strconv.Itoa(vni))
				remote = map[string]string{}
				for _, e := range f.Entries {
					if e.VNI != uint32(vni) {
						t.Fatalf("show fdb --vni %d on %s lists an entry of VNI %d: %+v", vni, h.ns.Name, e.VNI, e)
					}
					if e.Origin == fdb.OriginRemote.String() {
						remote[e.MAC] = e.VTEP.Addr().String()
					}
				}
				for mac, vtep := range want {
					if remote[mac] != vtep {
						return false
					}
				}
				return true
			})
			for _, c := range ctrs[other] {
				if vtep, ok := remote[c.mac]; ok {
					t.Errorf("%s, VNI %d: VNI %d's container %s behind %s", h.ns.Name, vni, other, c.mac, vtep)
				}
			}
		}
	}
}

// floodListOf returns the VTEP addresses of h's flood list of vni, sorted.
func floodListOf(tp *topo, h *testHost, vni int) []string {
	tp.t.Helper()
	var f control.FDBState
	tp.get(h, fmt.Sprintf("/fdb?vni=%d", vni), &f)
	var out []string
	for _, fl := range f.Flood {
		if fl.VNI != uint32(vni) {
			tp.t.Fatalf("/fdb?vni=%d on %s lists the flood list of VNI %d", vni, h.ns.Name, fl.VNI)
		}
		for _, v := range fl.VTEPs {
			out = append(out, v.Addr().String())
		}
	}
	slices.Sort(out)
	return out
}
