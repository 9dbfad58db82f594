package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/tap"
)

// The fault suite: one fault per scenario, on hosts in namespaces with a
// UDP probe running between two containers, so that each fault is
// measured by what it cost the traffic (datagrams lost, the longest time
// nothing arrived), by the daemons' drop counters and by their footprint
// (goroutines, file descriptors, heap) before and after. The full suite
// (faults_full_test.go, `make test-faults`) and the smoke in `make test`
// run the same scenarios; only their sizes differ.

// probeInterval spaces the probe's datagrams: 200 a second.
const probeInterval = 5 * time.Millisecond

// faultLab is two hosts with one container each, a probe from c1 to c2
// and, when asked for, a stand-alone etcd server, or a cluster of three,
// that the hosts discover each other through.
type faultLab struct {
	t       *testing.T
	tp      *topo
	h1, h2  *testHost
	c1, c2  *testContainer
	etcd    *netlab.Process // the one server
	etcdNS  *netlab.NS
	members []*netlab.Process // or the cluster's members
	probe   *netlab.UDPProbe
	before  map[*testHost]footprint
	flags   []string
}

// newFaultLab builds the lab, starts the daemons (with etcd or with
// static peers), checks the containers reach each other, starts the probe
// and takes each daemon's footprint.
func newFaultLab(t *testing.T, etcdServers int, extra ...string) *faultLab {
	t.Helper()
	fl := &faultLab{t: t, tp: newTopo(t, 42)}
	tp := fl.tp
	switch etcdServers {
	case 0:
	case 1:
		fl.etcd = tp.startEtcdNode()
		fl.etcdNS = fl.etcd.NS
		fl.flags = etcdFlags(etcdEndpoint)
	default:
		var endpoints []string
		fl.members, endpoints = tp.startEtcdCluster(etcdServers)
		fl.flags = etcdFlags(strings.Join(endpoints, ","))
	}
	fl.h1, fl.h2 = tp.addHost(), tp.addHost()
	fl.flags = append(fl.flags, extra...)
	for _, h := range tp.hosts {
		fl.startDaemon(h)
	}
	fl.c1, fl.c2 = tp.quietContainer(fl.h1), tp.quietContainer(fl.h2)
	if err := netlab.Reach(testCtx(t, 30*time.Second), fl.c1.ns, fl.c2.ns, fl.c2.ip); err != nil {
		t.Fatal(err)
	}
	p, err := netlab.StartUDPProbe(context.Background(), fl.c1.ns, fl.c2.ns, fl.c2.ip, probeInterval)
	if err != nil {
		t.Fatal(err)
	}
	fl.probe = p
	t.Cleanup(func() { p.Stop() })
	fl.waitSent(200) // a second of steady traffic before the fault
	fl.before = map[*testHost]footprint{fl.h1: fl.tp.footprint(fl.h1), fl.h2: fl.tp.footprint(fl.h2)}
	return fl
}

// startDaemon (re)starts vxland on h with the lab's flags: static peers
// without etcd, and metrics for the footprint.
func (fl *faultLab) startDaemon(h *testHost) {
	fl.t.Helper()
	var peers []string
	if fl.etcd == nil && fl.members == nil {
		peers = othersOf(fl.tp, h)
	}
	fl.tp.start(h, peers, append([]string{"--metrics-listen", metricsAddr(h), "--log-level", "info"}, fl.flags...)...)
}

// waitSent waits until the probe has sent n more datagrams.
func (fl *faultLab) waitSent(n int) {
	fl.t.Helper()
	want := fl.probe.Sent() + n
	waitFor(fl.t, time.Duration(n)*probeInterval+30*time.Second, fmt.Sprintf("the probe sending %d datagrams", n),
		func() bool { return fl.probe.Sent() >= want })
}

// waitDelivered waits until a datagram sent from now on arrives, and
// returns the sequence number from which the path carried again.
func (fl *faultLab) waitDelivered(d time.Duration, what string) int {
	fl.t.Helper()
	from := fl.probe.Sent()
	waitFor(fl.t, d, what, func() bool {
		w := netlab.ProbeWindow{From: from, To: fl.probe.Sent()}
		return fl.probe.Lost(w) < w.To-w.From
	})
	return from
}

// footprint is what a daemon holds, read from its metrics right after a
// garbage collection.
type footprint struct {
	pid                    int
	goroutines, fds        float64
	heapInuse, residentMem float64
}

func (tp *topo) footprint(h *testHost) footprint {
	tp.t.Helper()
	// The profiler's heap endpoint collects garbage first when asked, so
	// that the heap read next is what is live, not what GC has yet to
	// free.
	code, _, err := getUnix(h.sock, "/debug/pprof/heap?gc=1")
	if err != nil || code != http.StatusOK {
		tp.t.Fatalf("garbage collection on %s: %d %v", h.ns, code, err)
	}
	m := scrape(tp.t, h)
	return footprint{
		pid:         h.proc.Pid(),
		goroutines:  value(tp.t, m, "go_goroutines"),
		fds:         value(tp.t, m, "process_open_fds"),
		heapInuse:   value(tp.t, m, "go_memstats_heap_inuse_bytes"),
		residentMem: value(tp.t, m, "process_resident_memory_bytes"),
	}
}

// Leak tolerances: a scrape, a control connection or a timer may come and
// go, but a fault must not leave goroutines, descriptors or heap behind.
const (
	leakGoroutines = 10
	leakFDs        = 10
	leakHeap       = 4 << 20 // bytes, or a quarter of the heap before, whichever is more
)

// String is the footprint's part of a fault's figures.
func (f footprint) String() string {
	return fmt.Sprintf("goroutines %.0f, fds %.0f, heap %.1f MB, rss %.1f MB",
		f.goroutines, f.fds, f.heapInuse/(1<<20), f.residentMem/(1<<20))
}

// checkDaemons fails the test if a daemon died, or (unless restarted names
// it) was replaced, and if one holds more after the fault than before;
// it logs both footprints.
func (fl *faultLab) checkDaemons(restarted ...*testHost) {
	fl.t.Helper()
	for _, h := range []*testHost{fl.h1, fl.h2} {
		select {
		case <-h.proc.Done():
			fl.t.Fatalf("vxland on %s exited: %v\n%s", h.ns, h.proc.Wait(), h.proc.Output())
		default:
		}
		b, a := fl.before[h], fl.tp.footprint(h)
		wasRestarted := false
		for _, r := range restarted {
			wasRestarted = wasRestarted || r == h
		}
		if !wasRestarted && a.pid != b.pid {
			fl.t.Errorf("vxland on %s is PID %d, was %d", h.ns, a.pid, b.pid)
		}
		fl.t.Logf("%s: before %v | after %v", h.ns, b, a)
		if a.goroutines > b.goroutines+leakGoroutines {
			fl.t.Errorf("%s: %.0f goroutines after the fault, %.0f before", h.ns, a.goroutines, b.goroutines)
		}
		if a.fds > b.fds+leakFDs {
			fl.t.Errorf("%s: %.0f open fds after the fault, %.0f before", h.ns, a.fds, b.fds)
		}
		if a.heapInuse > b.heapInuse+max(leakHeap, b.heapInuse/4) {
			fl.t.Errorf("%s: heap in use %.1f MB after the fault, %.1f MB before", h.ns, a.heapInuse/(1<<20), b.heapInuse/(1<<20))
		}
	}
}

// inFlight is how many of the probe's datagrams (200 ms of them) may be
// on their way when a fault strikes.
const inFlight = 40

// checkTraffic fails the test if the probe lost a datagram outside the
// fault's window (before it, or once the path carried again after it
// plus a settling time of settle datagrams), and logs the figures of the
// fault in one line.
func (fl *faultLab) checkTraffic(name string, fault netlab.ProbeWindow, settle int, counters string) {
	fl.t.Helper()
	fl.waitSent(settle + 200) // and a second of steady traffic after
	if err := fl.probe.Stop(); err != nil {
		fl.t.Fatalf("probe: %v", err)
	}
	end := fl.probe.Sent()
	// A datagram sent just before the fault may still be in a queue the
	// fault empties (the TAP's, a socket's, a killed daemon's batch): the
	// fault's, not a loss before it.
	fault.From = max(fault.From-inFlight, 0)
	before := netlab.ProbeWindow{From: 0, To: fault.From}
	after := netlab.ProbeWindow{From: fault.To + settle, To: end}
	lost := fl.probe.Lost(fault)
	gap, _ := fl.probe.MaxGap()
	fl.t.Logf("FAULT %-22s | outage %7s | lost %5d of %6d in the fault, %d before, %d after | %s",
		name, gap.Round(time.Millisecond), lost, fault.To-fault.From, fl.probe.Lost(before), fl.probe.Lost(after), counters)
	if n := fl.probe.Lost(before); n != 0 {
		fl.t.Errorf("%d datagrams lost before the fault", n)
	}
	if n := fl.probe.Lost(after); n != 0 {
		fl.t.Errorf("%d of %d datagrams lost after the fault, once traffic flowed again", n, after.To-after.From)
	}
	if n := fl.probe.Duplicates(); n != 0 {
		fl.t.Errorf("%d datagrams arrived twice", n)
	}
}

// faultScale sizes a scenario: the smoke in `make test` runs each fault
// once and briefly, the full suite repeats it and holds it longer.
type faultScale struct {
	rounds int           // times the fault is done
	hold   time.Duration // how long the fault lasts (a process down, a link cut)
	count  int           // packets the fault sends, where it sends any
}

// faultDaemonKill: vxland on h1 is SIGKILLed and started again, rounds
// times. Its persistent TAP keeps the containers' link, so the probe
// loses what is sent while no daemon runs, and nothing once it is back.
func faultDaemonKill(t *testing.T, sc faultScale) {
	fl := newFaultLab(t, 0)
	fault := netlab.ProbeWindow{From: fl.probe.Sent()}
	var recover []time.Duration
	for range sc.rounds {
		fl.h1.proc.Cmd.Process.Signal(syscall.SIGKILL)
		<-fl.h1.proc.Done()
		time.Sleep(sc.hold)
		start := time.Now()
		fl.startDaemon(fl.h1)
		fl.waitDelivered(30*time.Second, "the probe's datagrams arriving after the restart")
		recover = append(recover, time.Since(start))
	}
	fault.To = fl.probe.Sent()
	fl.checkDaemons(fl.h1)
	s := fl.tp.stats(fl.h1)
	fl.checkTraffic("vxland SIGKILL", fault, 0,
		fmt.Sprintf("%d kills, down %s each, start to traffic %v; h1 drops %v", sc.rounds, sc.hold, roundAll(recover), nonZero(s.Drops)))
}

// faultEtcdRestart: the etcd server is killed and, after hold, started
// again on its data; the agents reconnect. The data plane does not need
// etcd: back within the lease TTL, etcd still has every lease and key,
// and nothing is lost. Back after it, an agent has given its lease up
// and registers anew, and the old lease, which etcd restored, expires
// and takes the host's keys with it if its new registration is not in
// yet: the other host drops it from its flood list for that moment.
func faultEtcdRestart(t *testing.T, sc faultScale) {
	fl := newFaultLab(t, 1)
	fault := netlab.ProbeWindow{From: fl.probe.Sent()}
	var reconnect []time.Duration
	for range sc.rounds {
		fl.etcd.Cmd.Process.Signal(syscall.SIGKILL)
		<-fl.etcd.Done()
		waitFor(t, 15*time.Second, "both agents see etcd gone", func() bool {
			return !fl.tp.etcdConnected(fl.h1) && !fl.tp.etcdConnected(fl.h2)
		})
		time.Sleep(sc.hold)
		start := time.Now()
		fl.etcd = fl.tp.runEtcd(fl.etcdNS)
		waitFor(t, 30*time.Second, "both agents reconnected to etcd", func() bool {
			return fl.tp.etcdConnected(fl.h1) && fl.tp.etcdConnected(fl.h2)
		})
		reconnect = append(reconnect, time.Since(start))
	}
	fault.To = fl.probe.Sent()
	fl.checkMembership()
	fl.checkDaemons()
	fl.checkTraffic("etcd kill+restart", fault, 0,
		fmt.Sprintf("%d restarts, down %s each, agents reconnected %v after etcd started; etcd errors %s",
			sc.rounds, sc.hold, roundAll(reconnect), fl.etcdErrors()))
	if n := fl.probe.Lost(fault); n != 0 && sc.hold < testLeaseTTL {
		t.Errorf("%d datagrams lost while etcd was down for less than the lease TTL", n)
	}
}

// etcdConnected reads vxland_etcd_connected from h's metrics.
func (tp *topo) etcdConnected(h *testHost) bool {
	return value(tp.t, scrape(tp.t, h), "vxland_etcd_connected") == 1
}

// etcdErrors is the agents' count of etcd errors, for the figures.
func (fl *faultLab) etcdErrors() string {
	var parts []string
	for _, h := range []*testHost{fl.h1, fl.h2} {
		v, _ := scrape(fl.t, h).Value("vxland_etcd_errors_total")
		parts = append(parts, fmt.Sprintf("%s %.0f", h.ns.Name, v))
	}
	return strings.Join(parts, ", ")
}

// checkMembership waits until each host's flood list names the other
// host again, as etcd says.
func (fl *faultLab) checkMembership() {
	fl.t.Helper()
	for _, h := range []*testHost{fl.h1, fl.h2} {
		want := othersOf(fl.tp, h)
		waitFor(fl.t, 15*time.Second, h.ns.Name+"'s flood list names the other host", func() bool {
			got := fl.tp.floodList(h)
			return strings.Join(got, ",") == strings.Join(want, ",")
		})
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// The smoke of the fault suite, in `make test`: vxland killed and
// started again, and etcd killed and started again, once each, briefly.
func TestFaultSmokeDaemonKill(t *testing.T) {
	faultDaemonKill(t, faultScale{rounds: 1, hold: 500 * time.Millisecond})
}

func TestFaultSmokeEtcdRestart(t *testing.T) {
	faultEtcdRestart(t, faultScale{rounds: 1, hold: time.Second})
}

// faultLinkCut: h1's underlay link is set down for hold and up again,
// rounds times. While it is down h1 cannot send: the probe loses what is
// sent meanwhile, and h1 counts each datagram the underlay refused as
// send_error.
func faultLinkCut(t *testing.T, sc faultScale) {
	fl := newFaultLab(t, 0)
	before := fl.tp.stats(fl.h1)
	fault := netlab.ProbeWindow{From: fl.probe.Sent()}
	var recover []time.Duration
	for range sc.rounds {
		fl.h1.ns.MustRun(t, "ip", "link", "set", "eth0", "down")
		time.Sleep(sc.hold)
		start := time.Now()
		fl.h1.ns.MustRun(t, "ip", "link", "set", "eth0", "up")
		fl.waitDelivered(30*time.Second, "the probe's datagrams arriving after the link came up")
		recover = append(recover, time.Since(start))
	}
	fault.To = fl.probe.Sent()
	fl.checkDaemons()
	after := fl.tp.stats(fl.h1)
	refused := after.Drops["send_error"] - before.Drops["send_error"]
	lost := uint64(fl.probe.Lost(fault))
	fl.checkTraffic("underlay link cut", fault, 0,
		fmt.Sprintf("%d cuts of %s, link up to traffic %v; h1 send_error +%d, drops %v", sc.rounds, sc.hold, roundAll(recover), refused, nonZero(after.Drops)))
	// Every datagram lost was refused by h1's socket and counted (h1 also
	// sends ARP and neighbour traffic of its own, so it may count more).
	if refused < lost*9/10 {
		t.Errorf("h1 counted %d send errors for %d datagrams lost while its link was down", refused, lost)
	}
}

// malformedKinds are the datagrams a non-peer sends in
// faultMalformedFlood, and the reason vxland drops each for.
var malformedKinds = []struct {
	reason string
	pkt    func(t *testing.T, frame []byte) []byte
}{
	{"short", func(*testing.T, []byte) []byte { return []byte{0x08, 0, 0, 0} }},
	{"no_i_flag", func(t *testing.T, f []byte) []byte { b := vxlanPacket(t, 42, f); b[0] = 0; return b }},
	{"vni_mismatch", func(t *testing.T, f []byte) []byte { return vxlanPacket(t, 43, f) }},
	{"unknown_vtep", func(t *testing.T, f []byte) []byte { return vxlanPacket(t, 42, f) }},
}

// faultMalformedFlood: a namespace on the underlay that is no member
// sends sc.count malformed datagrams, as fast as it can, to h2's VXLAN
// port, where the probe's traffic arrives too. What vxland reads it drops
// and counts by reason; what it could not read in time the kernel drops
// from the socket's buffer and counts (UDP RcvbufErrors).
func faultMalformedFlood(t *testing.T, sc faultScale) {
	fl := newFaultLab(t, 0)
	stranger := fl.tp.addHost() // on the underlay, no peer of anyone
	frame := forgedUDP(t, net.HardwareAddr{0x02, 0, 0, 0, 0, 1}, fl.c2.ip, 7777)
	pkts := make([][]byte, len(malformedKinds))
	for i, k := range malformedKinds {
		pkts[i] = k.pkt(t, frame)
	}
	before := fl.tp.stats(fl.h2)
	rcvbufBefore := udpRcvbufErrors(t, fl.h2.ns)
	fault := netlab.ProbeWindow{From: fl.probe.Sent()}
	start := time.Now()
	sent, err := sendUDPFlood(stranger.ns, fl.h2.ip+":4789", pkts, sc.count)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	fault.To = fl.probe.Sent()

	// Wait until vxland has read all that the kernel queued for it.
	var after overlay.Stats
	var counted, kernel uint64
	settled := func() bool {
		after = fl.tp.stats(fl.h2)
		counted = 0
		for _, k := range malformedKinds {
			counted += after.Drops[k.reason] - before.Drops[k.reason]
		}
		kernel = udpRcvbufErrors(t, fl.h2.ns) - rcvbufBefore
		return counted+kernel >= uint64(sc.count)
	}
	waitFor(t, 30*time.Second, "every malformed datagram counted by vxland or the kernel", settled)
	fl.checkDaemons()
	for i, k := range malformedKinds {
		if got := after.Drops[k.reason] - before.Drops[k.reason]; got > sent[i] {
			t.Errorf("drops[%s] grew by %d, more than the %d sent", k.reason, got, sent[i])
		}
	}
	// The probe's own datagrams that the kernel dropped from the full
	// buffer are in its count too, and are the loss the probe reports.
	lost := uint64(fl.probe.Lost(fault))
	if counted+kernel > uint64(sc.count)+lost {
		t.Errorf("vxland counted %d and the kernel %d drops; %d malformed datagrams and %d of the probe's were lost", counted, kernel, sc.count, lost)
	}
	var byReason []string
	for _, k := range malformedKinds {
		byReason = append(byReason, fmt.Sprintf("%s %d", k.reason, after.Drops[k.reason]-before.Drops[k.reason]))
	}
	fl.checkTraffic("malformed flood", fault, 0,
		fmt.Sprintf("%d sent in %s (%.0f/s); vxland dropped %d (%s), socket buffer full %d",
			sc.count, took.Round(time.Millisecond), float64(sc.count)/took.Seconds(), counted, strings.Join(byReason, ", "), kernel))
}

// sendUDPFlood sends n datagrams from ns to addr, taking pkts in turn, as
// fast as one socket goes; it returns how many of each it sent.
func sendUDPFlood(ns *netlab.NS, addr string, pkts [][]byte, n int) ([]uint64, error) {
	sent := make([]uint64, len(pkts))
	err := ns.Do(func() error {
		c, err := net.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range n {
			k := i % len(pkts)
			if _, err := c.Write(pkts[k]); err != nil {
				// The kernel refuses a send when the peer's
				// port answered unreachable; that one is not sent.
				if errors.Is(err, syscall.ECONNREFUSED) {
					continue
				}
				return fmt.Errorf("datagram %d of %d to %s: %w", i+1, n, addr, err)
			}
			sent[k]++
		}
		return nil
	})
	return sent, err
}

// udpRcvbufErrors reads the UDP datagrams that ns's kernel dropped for a
// full socket buffer (/proc/net/snmp, per namespace).
func udpRcvbufErrors(t *testing.T, ns *netlab.NS) uint64 {
	t.Helper()
	out := ns.MustRun(t, "cat", "/proc/net/snmp")
	var head []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, name := range head {
			if name == "RcvbufErrors" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatalf("/proc/net/snmp in %s: %q: %v", ns, l, err)
				}
				return v
			}
		}
	}
	t.Fatalf("/proc/net/snmp in %s has no Udp RcvbufErrors:\n%s", ns, out)
	return 0
}

// faultEtcdPause: the etcd server is stopped (SIGSTOP) for sc.hold,
// longer than the lease TTL, and continued. The agents' leases expire on
// the server's clock as it resumes: etcd deletes their keys, the hosts
// drop each other from their flood lists, their keep-alives fail, and
// they register again; the figures say what that cost the traffic.
func faultEtcdPause(t *testing.T, sc faultScale) {
	fl := newFaultLab(t, 1)
	relists := func() float64 {
		v1, _ := scrape(t, fl.h1).Value("vxland_etcd_relists_total")
		v2, _ := scrape(t, fl.h2).Value("vxland_etcd_relists_total")
		return v1 + v2
	}
	relistsBefore := relists()
	fault := netlab.ProbeWindow{From: fl.probe.Sent()}
	var recover []time.Duration
	for range sc.rounds {
		if err := fl.etcd.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(sc.hold)
		if err := fl.etcd.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitFor(t, 30*time.Second, "both agents registered again", func() bool {
			return fl.tp.etcdConnected(fl.h1) && fl.tp.etcdConnected(fl.h2)
		})
		recover = append(recover, time.Since(start))
		fl.checkMembership()
	}
	fault.To = fl.probe.Sent()
	fl.checkDaemons()
	lost := strings.Count(fl.h1.proc.Output()+fl.h2.proc.Output(), "etcd lease lost")
	fl.checkTraffic("etcd paused > TTL", fault, 100, // the flood lists back, ARP again
		fmt.Sprintf("%d pauses of %s (lease TTL %s), registered again %v after SIGCONT; leases lost %d, re-lists %.0f, etcd errors %s",
			sc.rounds, sc.hold, testLeaseTTL, roundAll(recover), lost, relists()-relistsBefore, fl.etcdErrors()))
}

// faultMACFlood: a hostile container on h1 sends sc.count broadcast
// frames, each from its own source MAC, as fast as its link takes them,
// against every limit at its default. h1 floods what its flood rates let
// through and counts the rest; h2 learns up to --fdb-max. Every frame is
// accounted for: flooded, dropped by a flood rate, or dropped by the
// kernel from the TAP's queue before vxland read it.
func faultMACFlood(t *testing.T, sc faultScale) {
	fl := newFaultLab(t, 0)
	hostile := fl.tp.quietContainer(fl.h1)
	before1, before2 := fl.tp.stats(fl.h1), fl.tp.stats(fl.h2)
	_, tapBefore := linkCounters(t, fl.h1.ns, "vxtap0")
	fault := netlab.ProbeWindow{From: fl.probe.Sent()}
	start := time.Now()
	if err := hostile.ns.SendFrames("eth0", netlab.FloodFrames(sc.count)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	fault.To = fl.probe.Sent()
	delta := func(a, b overlay.Stats, reason string) uint64 { return a.Drops[reason] - b.Drops[reason] }
	var after1 overlay.Stats
	var accounted, tapDropped uint64
	waitFor(t, 30*time.Second, "every frame of the flood accounted for", func() bool {
		after1 = fl.tp.stats(fl.h1)
		_, tapDropped = linkCounters(t, fl.h1.ns, "vxtap0")
		tapDropped -= tapBefore
		accounted = after1.TxFlooded - before1.TxFlooded + delta(after1, before1, "flood_rate_total") +
			delta(after1, before1, "flood_rate_source") + tapDropped
		return accounted >= uint64(sc.count)
	})
	fl.checkDaemons()
	after2 := fl.tp.stats(fl.h2)
	// The probe's frames share the TAP's queue with the flood: those lost
	// there are in its drops too.
	if lost := uint64(fl.probe.Lost(fault)); accounted > uint64(sc.count)+lost+10 {
		t.Errorf("h1 accounts for %d frames of a flood of %d and %d of the probe's lost", accounted, sc.count, lost)
	}
	fl.checkTraffic("100k source MACs", fault, 0,
		fmt.Sprintf("%d frames in %s; h1 flooded %d, flood_rate_total %d, flood_rate_source %d, local_mac_full %d, local_mac_rate %d, TAP queue dropped %d; h2 fdb_full %d",
			sc.count, took.Round(time.Millisecond), after1.TxFlooded-before1.TxFlooded, delta(after1, before1, "flood_rate_total"),
			delta(after1, before1, "flood_rate_source"), delta(after1, before1, "local_mac_full"), delta(after1, before1, "local_mac_rate"),
			tapDropped, delta(after2, before2, "fdb_full")))
}

// linkCounters reads an interface's packets received and frames dropped
// on transmit (for the TAP: the bridge sent them, vxland did not read
// them in time) from the kernel.
func linkCounters(t *testing.T, ns *netlab.NS, ifname string) (rxPackets, txDropped uint64) {
	t.Helper()
	s, err := ns.LinkStats(ifname)
	if err != nil {
		t.Fatal(err)
	}
	return s.RX.Packets, s.TX.Dropped
}

// startEtcdCluster runs a cluster of n etcd members, each a process in a
// namespace of its own on the underlay at 10.77.0.101 on, and returns
// them and their client URLs.
func (tp *topo) startEtcdCluster(n int) ([]*netlab.Process, []string) {
	tp.t.Helper()
	var nodes []*netlab.NS
	var initial, endpoints []string
	for i := range n {
		ip := fmt.Sprintf("10.77.0.%d", 101+i)
		nodes = append(nodes, tp.underlayNode(fmt.Sprintf("e%d", i+1), fmt.Sprintf("pe%d", i+1), ip))
		initial = append(initial, fmt.Sprintf("m%d=http://%s:2380", i+1, ip))
		endpoints = append(endpoints, "http://"+ip+":2379")
	}
	var members []*netlab.Process
	for i, ns := range nodes {
		ip := fmt.Sprintf("10.77.0.%d", 101+i)
		members = append(members, tp.startEtcdProcess(ns,
			fmt.Sprintf("%s=%s,%s:2379", etcdEnv, filepath.Join(tp.dir, fmt.Sprintf("etcd-m%d", i+1)), ip),
			fmt.Sprintf("%s=m%d,%s", etcdMemberEnv, i+1, strings.Join(initial, ","))))
	}
	for _, m := range members {
		tp.waitEtcdReady(m)
	}
	return members, endpoints
}

// faultEtcdLeaderKill: of a cluster of three etcd members, the leader is
// killed. The other two elect a new one; the agents' clients move to a
// member that lives, their leases are kept (a new leader extends them),
// and the data plane loses nothing.
func faultEtcdLeaderKill(t *testing.T, sc faultScale) {
	fl := newFaultLab(t, 3)
	cli := etcdClient(t, fl.h1.ns, "http://10.77.0.101:2379")
	status := func(i int) (leader, self uint64, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := cli.Status(ctx, fmt.Sprintf("http://10.77.0.%d:2379", 101+i))
		if err != nil {
			return 0, 0, err
		}
		return r.Leader, r.Header.MemberId, nil
	}
	var killed int
	var oldLeader uint64
	waitFor(t, 15*time.Second, "a leader elected", func() bool {
		for i := range fl.members {
			if l, self, err := status(i); err == nil && l != 0 && l == self {
				killed, oldLeader = i, l
				return true
			}
		}
		return false
	})
	fault := netlab.ProbeWindow{From: fl.probe.Sent()}
	fl.members[killed].Cmd.Process.Signal(syscall.SIGKILL)
	<-fl.members[killed].Done()
	var newLeader uint64
	elected := waitFor(t, 30*time.Second, "a new leader elected", func() bool {
		for i := range fl.members {
			if i == killed {
				continue
			}
			if l, _, err := status(i); err == nil && l != 0 && l != oldLeader {
				newLeader = l
				return true
			}
		}
		return false
	})
	// The leases outlive the election: past a whole TTL the agents are
	// still registered, on leases renewed through the new leader.
	time.Sleep(testLeaseTTL + time.Second)
	waitFor(t, 15*time.Second, "both agents registered", func() bool {
		return fl.tp.etcdConnected(fl.h1) && fl.tp.etcdConnected(fl.h2)
	})
	fault.To = fl.probe.Sent()
	fl.checkMembership()
	fl.checkDaemons()
	leases := strings.Count(fl.h1.proc.Output()+fl.h2.proc.Output(), "etcd lease lost")
	fl.checkTraffic("etcd leader killed", fault, 0,
		fmt.Sprintf("leader m%d (%x) killed, %x elected %s later, agents still registered a TTL on; leases lost %d, etcd errors %s",
			killed+1, oldLeader, newLeader, elected.Round(time.Millisecond), leases, fl.etcdErrors()))
	if n := fl.probe.Lost(fault); n != 0 {
		t.Errorf("%d datagrams lost while etcd elected a new leader", n)
	}
	if leases != 0 {
		t.Errorf("%d leases lost to the election; a new leader keeps them", leases)
	}
}

// faultOversizeFrames: a container whose link (both ends, to the bridge)
// has an MTU of 9000 sends sc.count frames of 9000 bytes to a container
// on h2. The TAPs' link MTU is 9000 too (--tap-mtu), so the bridge hands
// the frames to vxland, which drops each as too_big (answering, within
// its rate limit, with ICMP "fragmentation needed") unless the TAP's
// queue dropped it first; none crosses, and the other traffic goes on.
func faultOversizeFrames(t *testing.T, sc faultScale) {
	fl := newFaultLab(t, 0, "--tap-mtu", "9000")
	big := fl.tp.quietContainer(fl.h1)
	hostSide := fmt.Sprintf("vc%d", fl.tp.nextIP)
	big.ns.MustRun(t, "ip", "link", "set", "eth0", "mtu", "9000")
	fl.h1.ns.MustRun(t, "ip", "link", "set", hostSide, "mtu", "9000")
	dst, err := fl.c2.ns.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	src, err := big.ns.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	// A valid IPv4 packet with DF (a bridge that passes IPv4 to iptables
	// drops a malformed one before vxland could see it).
	ip := &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolUDP,
		SrcIP: net.ParseIP(big.ip).To4(), DstIP: net.ParseIP(fl.c2.ip).To4()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	pkt := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(pkt, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}, ip, udp,
		gopacket.Payload(make([]byte, 9000-20-8))); err != nil {
		t.Fatal(err)
	}
	frame := pkt.Bytes()
	frames := make([][]byte, sc.count)
	for i := range frames {
		frames[i] = frame
	}
	b1, b2 := fl.tp.stats(fl.h1), fl.tp.stats(fl.h2)
	bridged, _ := linkCounters(t, fl.h1.ns, hostSide)
	_, tapDropped := linkCounters(t, fl.h1.ns, "vxtap0")
	fault := netlab.ProbeWindow{From: fl.probe.Sent()}
	if err := big.ns.SendFrames("eth0", frames); err != nil {
		t.Fatal(err)
	}
	fault.To = fl.probe.Sent()
	fl.waitSent(100)
	rx, _ := linkCounters(t, fl.h1.ns, hostSide)
	if bridged = rx - bridged; bridged < uint64(sc.count) {
		t.Errorf("the bridge's port received %d frames of the %d sent: the fault did not happen", bridged, sc.count)
	}
	_, dropped := linkCounters(t, fl.h1.ns, "vxtap0")
	tapDropped = dropped - tapDropped
	fl.checkDaemons()
	a1, a2 := fl.tp.stats(fl.h1), fl.tp.stats(fl.h2)
	// The probe's datagrams are 64 bytes of payload: no frame over the
	// overlay's MTU crossed if h2 received less than that many bytes
	// per probe frame (and a few for ARP).
	probeFrames := a2.RxPackets - b2.RxPackets
	if maxBytes := probeFrames * 200; a2.RxBytes-b2.RxBytes > maxBytes {
		t.Errorf("h2 received %d bytes in %d frames: an oversize frame crossed", a2.RxBytes-b2.RxBytes, probeFrames)
	}
	tooBig := a1.Drops["too_big"] - b1.Drops["too_big"]
	if tooBig == 0 || tooBig > uint64(sc.count) || tooBig+tapDropped < uint64(sc.count) {
		t.Errorf("of %d oversize frames, vxland counted %d as too_big and the TAP's queue dropped %d", sc.count, tooBig, tapDropped)
	}
	fl.checkTraffic("oversize frames", fault, inFlight,
		fmt.Sprintf("%d frames of %d bytes sent, %d reached the bridge; h1 counted too_big +%d (ICMP answers %d, rate limited %d), the TAP's queue dropped %d, tap oversize +%d; h2 received %d frames, %d bytes",
			sc.count, len(frame), bridged, tooBig, a1.ICMPTooBigSent-b1.ICMPTooBigSent, a1.ICMPTooBigLimited-b1.ICMPTooBigLimited, tapDropped,
			a1.Drops[tap.DropOversize]-b1.Drops[tap.DropOversize], probeFrames, a2.RxBytes-b2.RxBytes))
}
