package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/internal/etcdtest"
	"github.com/vxland/vxland/internal/netlab"
)

// tlsFlags are the flags of a daemon that talks to etcd over TLS with a
// client certificate.
func tlsFlags(ca *etcdtest.CA, cert, key string) []string {
	return []string{"--etcd-cafile", ca.File(), "--etcd-certfile", cert, "--etcd-keyfile", key}
}

// h1 runs the embedded etcd over TLS and requires client certificates of
// its CA: h2, with such a certificate, joins and carries traffic; h3,
// whose certificate another CA signed, is refused: it never registers,
// stays not ready, and says in its log that etcd refused its certificate.
func TestEtcdTLSRefusesUntrustedClient(t *testing.T) {
	tp := newTopo(t, 42)
	h1, h2, h3 := tp.addHost(), tp.addHost(), tp.addHost()
	ca := etcdtest.NewCA(t, tp.dir, "ca")
	serverCert, serverKey := ca.Issue(t, "etcd", net.ParseIP(h1.ip))
	cert, key := ca.Issue(t, "vxland")
	rogueCert, rogueKey := etcdtest.NewCA(t, tp.dir, "rogue-ca").Issue(t, "rogue")

	ep := "https://" + h1.ip + ":2379"
	tp.start(h1, nil, slices.Concat(etcdFlags(ep), tlsFlags(ca, cert, key), []string{
		"--embedded-etcd", filepath.Join(tp.dir, "etcd"), "--embedded-etcd-listen", h1.ip + ":2379",
		"--embedded-etcd-certfile", serverCert, "--embedded-etcd-keyfile", serverKey,
		"--embedded-etcd-client-cafile", ca.File()})...)
	tp.start(h2, nil, slices.Concat(etcdFlags(ep), tlsFlags(ca, cert, key))...)
	tp.start(h3, nil, slices.Concat(etcdFlags(ep), tlsFlags(ca, rogueCert, rogueKey))...)

	waitFor(t, 15*time.Second, "h1 and h2 see each other", func() bool {
		return slices.Equal(tp.floodList(h1), []string{h2.ip}) && slices.Equal(tp.floodList(h2), []string{h1.ip})
	})
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.TCPTransfer(ctx, c1.ns, c2.ns, c2.ip+":5001", 1<<20); err != nil {
		t.Fatalf("between the hosts with trusted certificates: %v", err)
	}

	// h3 keeps trying, is refused in each TLS session, and says so.
	const refused = `level=ERROR msg="etcd and this host refuse each other's TLS certificates`
	waitFor(t, 15*time.Second, "h3 logs the refusal", func() bool {
		return strings.Contains(h3.proc.Output(), refused)
	})
	if n := strings.Count(h3.proc.Output(), refused); n != 1 {
		t.Errorf("h3 logged the refusal %d times, want once:\n%s", n, h3.proc.Output())
	}
	body := checkProbes(t, h3.sock, nil, "", http.StatusServiceUnavailable)
	if !strings.Contains(body, "FDB not yet filled from etcd") {
		t.Errorf("h3's /readyz says %q, want that the FDB is not filled from etcd", body)
	}
	for _, h := range []*testHost{h1, h2} {
		if fl := tp.floodList(h); slices.Contains(fl, h3.ip) {
			t.Errorf("%s floods to h3 (%v), which etcd refused", h.ns, fl)
		}
	}
	if fl := tp.floodList(h3); len(fl) != 0 {
		t.Errorf("h3, refused by etcd, floods to %v", fl)
	}
	t.Logf("h3: %s", h3.proc.Output()[strings.Index(h3.proc.Output(), "level=ERROR"):])
}

// A rogue writer with access to etcd registers two members from a
// namespace on the underlay: one at 10.77.0.200, outside the hosts'
// --underlay-cidr 10.77.0.0/25, and, as the control, one at 10.77.0.3,
// inside it. The hosts log the outside record once with its key and keep
// it off their flood lists; a VXLAN packet from 10.77.0.200 is dropped
// as unknown_vtep and reaches no container, while the same packet from
// 10.77.0.3 is delivered.
func TestUnderlayCIDRRejectsRogueMember(t *testing.T) {
	const cidr, outside = "10.77.0.0/25", "10.77.0.200"
	tp := newTopo(t, 42)
	tp.startEtcdNode()
	h1, h2 := tp.addHost(), tp.addHost()
	rogue := tp.addHost() // 10.77.0.3: runs no vxland, only writes to etcd and sends
	rogue.ns.MustRun(t, "ip", "addr", "add", outside+"/24", "dev", "eth0")
	for _, h := range []*testHost{h1, h2} {
		tp.start(h, nil, append(etcdFlags(etcdEndpoint), "--underlay-cidr", cidr)...)
	}
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}

	cli := etcdClient(t, rogue.ns, etcdEndpoint)
	keys := discovery.NewKeys(discovery.DefaultPrefix, uint32(tp.vni))
	for _, addr := range []string{outside, rogue.ip} {
		m, _ := json.Marshal(discovery.Member{Version: discovery.SchemaVersion, Addr: netip.MustParseAddr(addr), Port: 4789, Hostname: "rogue"})
		if _, err := cli.Put(ctx, keys.Member(netip.MustParseAddr(addr)), string(m)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "h2 floods to h1 and the member inside the CIDR", func() bool {
		return slices.Equal(tp.floodList(h2), []string{h1.ip, rogue.ip})
	})
	rejected := fmt.Sprintf(`msg="rejecting etcd record: its VTEP is outside --underlay-cidr" component=discovery vni=%d key=%s`,
		tp.vni, keys.Member(netip.MustParseAddr(outside)))
	for _, h := range []*testHost{h1, h2} {
		waitFor(t, 10*time.Second, h.ns.Name+" logs the rejected record", func() bool {
			return strings.Contains(h.proc.Output(), rejected)
		})
		if n := strings.Count(h.proc.Output(), rejected); n != 1 {
			t.Errorf("%s logged the rejected record %d times, want once", h.ns, n)
		}
	}

	const victimPort = 7777
	victim := listenUDP(t, c2, victimPort)
	mac2, err := c2.ns.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	pkt := vxlanPacket(t, uint32(tp.vni), forgedUDP(t, mac2, c2.ip, victimPort))
	before := tp.stats(h2).Drops["unknown_vtep"]
	if err := sendUDP(rogue.ns, outside, h2.ip+":4789", pkt); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "h2 counts the packet from outside the CIDR as unknown_vtep", func() bool {
		return tp.stats(h2).Drops["unknown_vtep"] == before+1
	})
	buf := make([]byte, 2048)
	victim.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := victim.ReadFrom(buf); err == nil {
		t.Fatalf("a packet from %s, outside --underlay-cidr, reached the container: %q", outside, buf[:n])
	}

	// The control: the same packet from the member inside the CIDR.
	if err := sendUDP(rogue.ns, rogue.ip, h2.ip+":4789", pkt); err != nil {
		t.Fatal(err)
	}
	victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := victim.ReadFrom(buf); err != nil || string(buf[:n]) != "forged" {
		t.Fatalf("the same packet from %s, inside --underlay-cidr: %q %v, want it delivered", rogue.ip, buf[:n], err)
	}
	if got := tp.stats(h2).Drops["unknown_vtep"]; got != before+1 {
		t.Errorf("unknown_vtep is %d, want %d", got, before+1)
	}
}

// h1 starts with --etcd-username while etcd is down: it forwards to its
// static peer h2 at once. Then etcd comes up, with authentication on and
// h1's user in it, and h1 logs in and registers. A daemon started with a
// wrong password while etcd answers exits 2 and says why.
func TestEtcdUsernameWhileEtcdDown(t *testing.T) {
	tp := newTopo(t, 42)
	h1, h2, h3 := tp.addHost(), tp.addHost(), tp.addHost()
	password, wrong := filepath.Join(tp.dir, "password"), filepath.Join(tp.dir, "wrong")
	writeFile(t, password, "s3cret\n")
	writeFile(t, wrong, "guess\n")
	auth := func(file string) []string {
		return append(etcdFlags(etcdEndpoint), "--etcd-username", "vxland", "--etcd-password-file", file)
	}
	tp.start(h1, []string{h2.ip}, auth(password)...)
	tp.start(h2, []string{h1.ip})
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.TCPTransfer(ctx, c1.ns, c2.ns, c2.ip+":5001", 1<<20); err != nil {
		t.Fatalf("h1 with etcd down: %v", err)
	}
	if out := h1.proc.Output(); !strings.Contains(out, `msg="etcd does not answer the login; forwarding starts`) {
		t.Errorf("h1 did not say that it starts without etcd:\n%s", out)
	}

	tp.startEtcdNodeThen(func(ns *netlab.NS) {
		if err := etcdtest.EnableAuth(ctx, etcdClient(t, ns, etcdEndpoint), "vxland", "s3cret", discovery.DefaultPrefix+"/"); err != nil {
			t.Fatal(err)
		}
	})
	waitFor(t, 20*time.Second, "h1 registers in etcd", func() bool {
		return strings.Contains(h1.proc.Output(), `msg="registered in etcd"`)
	})
	checkProbes(t, h1.sock, nil, "", http.StatusOK)

	cmd := tp.daemonCmd(h3.ns, append([]string{"--vni", "42", "--local-ip", h3.ip, "--bridge", "br0", "--tap", "vxtap0",
		"--control-socket", h3.sock}, auth(wrong)...)...)
	p, err := h3.ns.StartCmd(cmd)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("vxland with a wrong password still runs after 20s:\n%s", p.Output())
	}
	if code := p.Cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(p.Output(), `--etcd-username: etcd at [`+etcdEndpoint+`] refused user \"vxland\": wrong user name or password`) {
		t.Errorf("vxland with a wrong password: exit %d, want 2 and the reason:\n%s", code, p.Output())
	}
}
