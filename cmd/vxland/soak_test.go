//go:build soak

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// The soak: `make soak` (SOAK_DURATION, default 10m), or
// SOAK_DURATION=3m go test -tags soak -run TestSoak -v ./cmd/vxland
//
// Three hosts discover each other through etcd; iperf3 moves TCP between
// containers on h1 and h2 the whole time, while the overlay churns: h3
// leaves and joins again, a MAC moves between h2 and h3, and etcd's
// history is compacted. The footprint of h1's and h2's daemons is sampled
// every few seconds and printed; after a warm-up, the mean of the last
// quarter of the samples must be within a tolerance of the first
// quarter's.

const (
	soakSample = 5 * time.Second
	soakChurn  = 10 * time.Second
	soakWarmup = 30 * time.Second
	// iperf3's bandwidth: steady load that leaves the shared machine
	// room for the churn.
	soakBandwidth = "200M"
)

func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("SOAK_DURATION"))
	if err != nil || d < 2*soakWarmup {
		t.Fatalf("SOAK_DURATION=%q: want a duration of at least %s, such as 10m", os.Getenv("SOAK_DURATION"), 2*soakWarmup)
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed")
	}
	tp, _ := newEtcdTopo(t, 0)
	for range 3 {
		tp.addHost()
	}
	flags := append(etcdFlags(etcdEndpoint), "--log-level", "info")
	for _, h := range tp.hosts {
		tp.start(h, nil, append(flags, "--metrics-listen", metricsAddr(h))...)
	}
	h1, h2, h3 := tp.hosts[0], tp.hosts[1], tp.hosts[2]
	c1, c2 := tp.quietContainer(h1), tp.quietContainer(h2)
	m2, m3 := tp.quietContainer(h2), tp.quietContainer(h3) // the moving MAC's two places
	if err := netlab.Reach(testCtx(t, 30*time.Second), c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}

	server, err := c2.ns.Start("iperf3", "-s", "-B", c2.ip)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Stop(time.Second)
	time.Sleep(500 * time.Millisecond)
	client, err := c1.ns.Start("iperf3", "-c", c2.ip, "-t", fmt.Sprint(int(d.Seconds())+5), "-b", soakBandwidth, "-i", "0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Stop(time.Second)

	cli := etcdClient(t, h1.ns, etcdEndpoint)
	moving := net.HardwareAddr{0x02, 0x5a, 0, 0, 0, 1}
	churn := []struct {
		name string
		do   func() error
	}{
		{"h3 leaves and joins", func() error {
			stop(t, h3, " in the soak")
			waitFor(t, 15*time.Second, "h3 gone from h1's flood list", func() bool {
				return !strings.Contains(strings.Join(tp.floodList(h1), ","), h3.ip)
			})
			tp.start(h3, nil, append(flags, "--metrics-listen", metricsAddr(h3))...)
			waitFor(t, 15*time.Second, "h3 back in h1's flood list", func() bool {
				return strings.Contains(strings.Join(tp.floodList(h1), ","), h3.ip)
			})
			return nil
		}},
		{"MAC moves", func() error {
			to, other := m2, m3
			if macBehind(tp, h1, moving) == h2.ip {
				to, other = m3, m2
			}
			setMAC(t, other, nil)
			setMAC(t, to, moving)
			if err := sendGARP(to, moving); err != nil {
				return err
			}
			want := h2.ip
			if to == m3 {
				want = h3.ip
			}
			waitFor(t, 15*time.Second, "h1 has the moved MAC behind "+want, func() bool { return macBehind(tp, h1, moving) == want })
			return nil
		}},
		{"etcd compaction", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			r, err := cli.Get(ctx, "compaction-probe")
			if err != nil {
				return err
			}
			_, err = cli.Compact(ctx, r.Header.Revision, clientv3.WithCompactPhysical())
			return err
		}},
	}

	var samples [][2]footprint
	start := time.Now()
	nextChurn := start.Add(soakChurn)
	churned, rounds := map[string]int{}, 0
	for i := 0; time.Since(start) < d; i++ {
		s := [2]footprint{tp.footprint(h1), tp.footprint(h2)}
		samples = append(samples, s)
		t.Logf("SOAK %6s | h1 %v | h2 %v", time.Since(start).Round(time.Second), s[0], s[1])
		select {
		case <-client.Done():
			t.Fatalf("iperf3 ended early: %v\n%s", client.Wait(), client.Output())
		default:
		}
		if time.Now().After(nextChurn) {
			c := churn[rounds%len(churn)]
			if err := c.do(); err != nil {
				t.Fatalf("churn %q: %v", c.name, err)
			}
			churned[c.name]++
			rounds++
			nextChurn = time.Now().Add(soakChurn)
		}
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * soakSample)))
	}
	for _, h := range []*testHost{h1, h2} {
		select {
		case <-h.proc.Done():
			t.Fatalf("vxland on %s exited: %v", h.ns, h.proc.Wait())
		default:
		}
	}
	s1, s2 := tp.stats(h1), tp.stats(h2)
	t.Logf("SOAK churn %v; h1 tx %d MB, h2 rx %d MB; drops h1 %v, h2 %v",
		churned, s1.TxBytes>>20, s2.RxBytes>>20, nonZero(s1.Drops), nonZero(s2.Drops))
	checkFlat(t, samples, start, d)
}

// macBehind returns the VTEP that h's FDB has mac behind, from etcd.
func macBehind(tp *topo, h *testHost, mac net.HardwareAddr) string {
	for _, e := range tp.fdb(h).Entries {
		if e.MAC == mac.String() && e.Origin == fdb.OriginRemote.String() {
			return e.VTEP.Addr().String()
		}
	}
	return ""
}

// setMAC gives c's eth0 the address mac, or a fresh random one if nil.
func setMAC(t *testing.T, c *testContainer, mac net.HardwareAddr) {
	t.Helper()
	if mac == nil {
		mac = net.HardwareAddr{0x02, 0x5b, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(mac[2:], rand.Uint32())
	}
	c.ns.MustRun(t, "ip", "link", "set", "eth0", "down")
	c.ns.MustRun(t, "ip", "link", "set", "eth0", "address", mac.String())
	c.ns.MustRun(t, "ip", "link", "set", "eth0", "up")
}

// checkFlat compares the mean of the first quarter of the samples taken
// after the warm-up with the last quarter's, for each daemon.
func checkFlat(t *testing.T, samples [][2]footprint, start time.Time, d time.Duration) {
	t.Helper()
	skip := int(soakWarmup / soakSample)
	if len(samples)-skip < 8 {
		t.Fatalf("%d samples after the warm-up, want 8 at least: soak longer", len(samples)-skip)
	}
	s := samples[skip:]
	q := len(s) / 4
	for i, name := range []string{"h1", "h2"} {
		var first, last footprint
		for _, x := range s[:q] {
			first = first.add(x[i], q)
		}
		for _, x := range s[len(s)-q:] {
			last = last.add(x[i], q)
		}
		t.Logf("SOAK %s first quarter %v | last quarter %v", name, first, last)
		if last.goroutines > first.goroutines+leakGoroutines {
			t.Errorf("%s: goroutines grew from %.1f to %.1f", name, first.goroutines, last.goroutines)
		}
		if last.fds > first.fds+leakFDs {
			t.Errorf("%s: fds grew from %.1f to %.1f", name, first.fds, last.fds)
		}
		if last.heapInuse > first.heapInuse+max(leakHeap, first.heapInuse/4) {
			t.Errorf("%s: heap grew from %.1f MB to %.1f MB", name, first.heapInuse/(1<<20), last.heapInuse/(1<<20))
		}
		if last.residentMem > first.residentMem+max(leakHeap, first.residentMem/4) {
			t.Errorf("%s: resident memory grew from %.1f MB to %.1f MB", name, first.residentMem/(1<<20), last.residentMem/(1<<20))
		}
	}
}

// add adds x/n to f, for a mean of n samples.
func (f footprint) add(x footprint, n int) footprint {
	k := float64(n)
	f.goroutines += x.goroutines / k
	f.fds += x.fds / k
	f.heapInuse += x.heapInuse / k
	f.residentMem += x.residentMem / k
	return f
}
