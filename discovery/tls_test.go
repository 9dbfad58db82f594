package discovery

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/vxland/vxland/internal/etcdtest"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The --etcd-cafile, --etcd-certfile and --etcd-keyfile flags against the
// embedded etcd's --embedded-etcd-certfile, --embedded-etcd-keyfile and
// --embedded-etcd-client-cafile: a client with the CA and a client
// certificate talks to a server that requires both; a client with a
// certificate from another CA, or without one, is refused.
func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	ca := etcdtest.NewCA(t, dir, "ca")
	serverCert, serverKey := ca.Issue(t, "server", net.IPv4(127, 0, 0, 1))
	clientCert, clientKey := ca.Issue(t, "client")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedConfig{
		Dir:        filepath.Join(dir, "etcd"),
		Listen:     "127.0.0.1:" + strconv.Itoa(freePort(t)),
		PeerListen: "127.0.0.1:" + strconv.Itoa(freePort(t)),
		CertFile:   serverCert, KeyFile: serverKey,
		ClientCAFile: ca.File(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if ep := e.Endpoints()[0]; ep[:8] != "https://" {
		t.Fatalf("endpoint %s is not https", ep)
	}

	good, err := NewClient(ctx, ClientConfig{Endpoints: e.Endpoints(), CAFile: ca.File(), CertFile: clientCert, KeyFile: clientKey})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if _, err := good.Put(ctx, "/vxland/tls-test", "ok"); err != nil {
		t.Fatalf("put over TLS with a client certificate: %v", err)
	}

	// A certificate from another CA is refused like none at all.
	rogueCert, rogueKey := etcdtest.NewCA(t, dir, "rogue-ca").Issue(t, "rogue")
	rogue, err := NewClient(ctx, ClientConfig{Endpoints: e.Endpoints(), CAFile: ca.File(), CertFile: rogueCert, KeyFile: rogueKey})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := rogue.Put(short, "/vxland/vtep/192.0.2.66", "{}"); err == nil {
		t.Fatal("a client certificate from an untrusted CA was served")
	}

	// CheckTLS says what the client does not: the first is accepted, the
	// rogue refused, and an endpoint nobody listens on is no refusal.
	goodCfg := ClientConfig{Endpoints: e.Endpoints(), CAFile: ca.File(), CertFile: clientCert, KeyFile: clientKey}
	if err := goodCfg.CheckTLS(ctx); err != nil {
		t.Errorf("CheckTLS with a trusted client certificate: %v", err)
	}
	rogueCfg := ClientConfig{Endpoints: e.Endpoints(), CAFile: ca.File(), CertFile: rogueCert, KeyFile: rogueKey}
	if err := rogueCfg.CheckTLS(ctx); !errors.Is(err, ErrTLSRefused) {
		t.Errorf("CheckTLS with a certificate from an untrusted CA: %v, want %v", err, ErrTLSRefused)
	}
	rogueCfg.Endpoints = []string{"https://127.0.0.1:" + strconv.Itoa(freePort(t))}
	if err := rogueCfg.CheckTLS(ctx); err != nil {
		t.Errorf("CheckTLS of an endpoint that is not listening: %v, want nil", err)
	}

	anon, err := NewClient(ctx, ClientConfig{Endpoints: e.Endpoints(), CAFile: ca.File()})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	short, cancelShort = context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := anon.Get(short, "/vxland/tls-test"); err == nil {
		t.Fatal("a client without a certificate was served by a server that requires one")
	}

	if _, err := (ClientConfig{CAFile: serverKey}).TLS(); err == nil {
		t.Fatal("a CA file without a certificate was accepted")
	}
	if _, err := (ClientConfig{CertFile: clientCert}).TLS(); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}

// The --etcd-username and --etcd-password-file flags: against an etcd with
// authentication enabled, the right password logs in and is confined to
// its role's prefix; a wrong one is refused when the client is made, with
// an error that says so; a client without credentials is refused.
func TestClientPassword(t *testing.T) {
	root := startEtcd(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	endpoints := root.Endpoints()
	if err := etcdtest.EnableAuth(ctx, root, "vxland", "s3cret", DefaultPrefix+"/"); err != nil {
		t.Fatal(err)
	}

	good, err := NewClient(ctx, ClientConfig{Endpoints: endpoints, Username: "vxland", Password: "s3cret"})
	if err != nil {
		t.Fatalf("the right password: %v", err)
	}
	defer good.Close()
	if _, err := good.Put(ctx, DefaultPrefix+"/auth-test", "ok"); err != nil {
		t.Fatalf("put under %s with the right password: %v", DefaultPrefix, err)
	}
	if _, err := good.Put(ctx, "/elsewhere", "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("put outside the role's prefix: %v, want permission denied", err)
	}

	_, err = NewClient(ctx, ClientConfig{Endpoints: endpoints, Username: "vxland", Password: "wrong"})
	if !errors.Is(err, rpctypes.ErrAuthFailed) || !strings.Contains(err.Error(), `refused user "vxland": wrong user name or password`) {
		t.Fatalf("a wrong password: err %v, want an authentication failure that says so", err)
	}

	anon, err := NewClient(ctx, ClientConfig{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Get(ctx, DefaultPrefix+"/auth-test"); !errors.Is(err, rpctypes.ErrUserEmpty) {
		t.Errorf("a client without credentials: %v, want refused", err)
	}
}
