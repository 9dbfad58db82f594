package main

import (
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
