package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// The tests run one VNI of hosts at 192.0.2.0/24 (TEST-NET-1): nothing is
// sent to these addresses, they only name VTEPs in etcd and in the FDB.
const (
	testVNI  = 42
	testPort = 4789
	// waitLimit bounds every wait for an eventual result.
	waitLimit = 10 * time.Second
)

// startEtcd starts an embedded etcd on loopback ports free at run time,
// storing in a temporary directory, and returns a client of it. Both stop
// when the test ends.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var e *Embedded
	var err error
	// A port found free may be taken before etcd binds it: try again.
	for range 3 {
		client, peer := freeLoopbackPorts(t)
		e, err = StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), Listen: client, PeerListen: peer})
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("embedded etcd: %v", err)
	}
	t.Cleanup(e.Close)
	cli, err := NewClient(context.Background(), ClientConfig{Endpoints: e.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func freeLoopbackPorts(t *testing.T) (string, string) {
	t.Helper()
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	return l1.Addr().String(), l2.Addr().String()
}

// logBuffer collects an agent's JSON log lines.
type logBuffer struct{ netlab.LockedBuffer }

// count returns how many records have message msg and every attribute of
// attrs (compared as strings).
func (l *logBuffer) count(t *testing.T, msg string, attrs ...string) int {
	t.Helper()
	n := 0
	for line := range strings.Lines(l.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec[slog.MessageKey] != msg {
			continue
		}
		match := true
		for i := 0; i+1 < len(attrs); i += 2 {
			if fmt.Sprint(rec[attrs[i]]) != attrs[i+1] {
				match = false
			}
		}
		if match {
			n++
		}
	}
	return n
}

// logged is v as logBuffer.count sees it in a JSON log line.
func logged(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var a any
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(a)
}

// host is one vxland host as the control plane sees it: its data plane
// tables and the agent that drives them.
type host struct {
	t     *testing.T
	addr  netip.Addr
	fdb   *fdb.Table
	local *fdb.LocalTable
	neigh *fdb.Neighbors
	log   *logBuffer
	agent *Agent

	cancel context.CancelFunc
	done   chan struct{}
}

// newHost returns a host at addr whose agent is configured by the
// defaults below and then by adjust.
func newHost(t *testing.T, cli *clientv3.Client, addr string, adjust ...func(*Config)) *host {
	h := &host{
		t:     t,
		addr:  netip.MustParseAddr(addr),
		fdb:   fdb.New(testPort, 0),
		local: fdb.NewLocalTable(fdb.LocalLimits{}),
		neigh: fdb.NewNeighbors(),
		log:   &logBuffer{},
	}
	cfg := Config{
		Client: cli, VNI: testVNI, Self: h.addr, Port: testPort, Hostname: "host-" + addr,
		// Long, so that an expiring lease cannot be what a test sees.
		LeaseTTL:  30 * time.Second,
		FDB:       h.fdb,
		Local:     h.local,
		Neighbors: h.neigh,
		Logger:    slog.New(slog.NewJSONHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range adjust {
		f(&cfg)
	}
	h.agent = New(cfg)
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("log of host %s:\n%s", h.addr, h.log)
		}
	})
	return h
}

// start runs the agent until stop or the end of the test.
func (h *host) start() {
	h.t.Helper()
	if h.done != nil {
		h.t.Fatalf("host %s started twice", h.addr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		h.agent.Run(ctx)
	}()
}

// stop cancels the agent's Run and waits for it to return.
func (h *host) stop() {
	if h.done == nil {
		return
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(waitLimit):
		h.t.Errorf("Run of host %s did not return within %s of its cancellation", h.addr, waitLimit)
	}
	h.done = nil
}

// waitSynced waits for the agent's first full list.
func (h *host) waitSynced() {
	h.t.Helper()
	select {
	case <-h.agent.Synced():
	case <-time.After(waitLimit):
		h.t.Fatalf("host %s did not list etcd within %s", h.addr, waitLimit)
	}
}

func (h *host) vtep() netip.AddrPort { return netip.AddrPortFrom(h.addr, testPort) }

// waitFor polls cond until it returns nil, and fails the test with cond's
// last error if that does not happen within waitLimit.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after %s: %v", what, waitLimit, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dataPlane is what the agent drove into one host's tables for the VNI.
type dataPlane struct {
	flood []netip.AddrPort           // sorted
	fdb   map[fdb.MAC]netip.AddrPort // remote entries
	neigh map[netip.Addr]fdb.MAC     // for the addresses asked about
}

// snapshot reads h's tables. Neighbours are looked up for ips, since the
// table cannot be listed; the check that nothing else is bound is Len.
func snapshot(t *testing.T, h *host, ips []netip.Addr) dataPlane {
	t.Helper()
	d := dataPlane{
		flood: slices.SortedFunc(slices.Values(floodAddrs(h.fdb)), netip.AddrPort.Compare),
		fdb:   make(map[fdb.MAC]netip.AddrPort),
		neigh: make(map[netip.Addr]fdb.MAC),
	}
	for _, e := range h.fdb.Entries() {
		if e.VNI != testVNI || e.Origin != fdb.OriginRemote.String() {
			t.Fatalf("host %s: FDB entry %+v that the agent did not make", h.addr, e)
		}
		d.fdb[mustMAC(e.MAC)] = e.VTEP
	}
	for _, ip := range ips {
		if mac, ok := h.neigh.Lookup(ip); ok {
			d.neigh[ip] = mac
		}
	}
	return d
}

func (d dataPlane) String() string {
	return fmt.Sprintf("flood %v, fdb %v, neighbours %v", d.flood, d.fdb, d.neigh)
}

// compare returns a description of the first difference, or nil.
func (d dataPlane) compare(want dataPlane) error {
	switch {
	case !slices.Equal(d.flood, want.flood):
		return fmt.Errorf("flood list %v, want %v", d.flood, want.flood)
	case !mapsEqual(d.fdb, want.fdb):
		return fmt.Errorf("remote FDB entries %v, want %v", d.fdb, want.fdb)
	case !mapsEqual(d.neigh, want.neigh):
		return fmt.Errorf("neighbours %v, want %v", d.neigh, want.neigh)
	}
	return nil
}

func mapsEqual[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// fromEtcd is the data plane that the VNI's records in etcd call for on
// the host at self.
func fromEtcd(t *testing.T, cli *clientv3.Client, self netip.Addr) dataPlane {
	t.Helper()
	resp, err := cli.Get(t.Context(), testKeys.Prefix(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	d := dataPlane{fdb: make(map[fdb.MAC]netip.AddrPort), neigh: make(map[netip.Addr]fdb.MAC)}
	for _, kv := range resp.Kvs {
		r, err := testKeys.parse(string(kv.Key), kv.Value)
		if err != nil {
			t.Fatalf("etcd holds a value the test did not mean to put: %s = %s: %v", kv.Key, kv.Value, err)
		}
		switch {
		case r.member != nil && r.member.Addr != self:
			d.flood = append(d.flood, netip.AddrPortFrom(r.member.Addr, testPort))
		case r.mac != nil && r.mac.VTEP != self:
			d.fdb[r.macKey] = netip.AddrPortFrom(r.mac.VTEP, testPort)
			for _, ip := range r.mac.IPs {
				d.neigh[ip] = r.macKey
			}
		}
	}
	slices.SortFunc(d.flood, netip.AddrPort.Compare)
	return d
}

// putMember registers a VTEP that runs no agent, as another host would.
func putMember(t *testing.T, cli *clientv3.Client, addr string, port uint16) {
	t.Helper()
	a := netip.MustParseAddr(addr)
	v, err := json.Marshal(Member{Version: SchemaVersion, Addr: a, Port: port, Hostname: "fake-" + addr})
	if err != nil {
		t.Fatal(err)
	}
	put(t, cli, testKeys.Member(a), string(v))
}

// putMAC publishes mac behind vtep, as the host at vtep would.
func putMAC(t *testing.T, cli *clientv3.Client, mac, vtep string, ips ...string) {
	t.Helper()
	r := MACRecord{Version: SchemaVersion, MAC: mac, VTEP: netip.MustParseAddr(vtep)}
	for _, ip := range ips {
		r.IPs = append(r.IPs, netip.MustParseAddr(ip))
	}
	v, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	put(t, cli, testKeys.MAC(mustMAC(mac)), string(v))
}

func put(t *testing.T, cli *clientv3.Client, key, value string) {
	t.Helper()
	if _, err := cli.Put(t.Context(), key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func del(t *testing.T, cli *clientv3.Client, key string) {
	t.Helper()
	resp, err := cli.Delete(t.Context(), key)
	if err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
	if resp.Deleted != 1 {
		t.Fatalf("delete %s: no such key", key)
	}
}

// getKey returns key's value and lease, or ok false when it does not exist.
func getKey(t *testing.T, cli *clientv3.Client, key string) (value string, lease clientv3.LeaseID, ok bool) {
	t.Helper()
	resp, err := cli.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0, false
	}
	return string(resp.Kvs[0].Value), clientv3.LeaseID(resp.Kvs[0].Lease), true
}

func addrPorts(hosts ...*host) []netip.AddrPort {
	var l []netip.AddrPort
	for _, h := range hosts {
		l = append(l, h.vtep())
	}
	slices.SortFunc(l, netip.AddrPort.Compare)
	return l
}

func vtepOf(addr string) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), testPort)
}

// isKnown reports whether f accepts packets from a.
func isKnown(f *fdb.Table, a netip.Addr) bool {
	_, ok := f.KnownVTEP(a)
	return ok
}

// floodAddrs returns the addresses of f's flood list for testVNI.
func floodAddrs(f *fdb.Table) []netip.AddrPort {
	var out []netip.AddrPort
	for _, v := range f.Flood(testVNI) {
		out = append(out, v.AddrPort())
	}
	return out
}
