package discovery

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// writeCert writes a certificate (signed by parent, or self-signed when
// parent is nil) and its key as PEM files in dir.
func writeCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".pem", "CERTIFICATE", der)
	write(name+"-key.pem", "EC PRIVATE KEY", kder)
	return cert, key
}

// caTemplate is a CA certificate valid for the next hour.
func caTemplate(serial int64, name string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
}

// clientTemplate is a client certificate of vxland valid for the next hour.
func clientTemplate(serial int64) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "vxland"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
}

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
	now := time.Now()
	ca, caKey := writeCert(t, dir, "ca", caTemplate(1, "vxland test CA"), nil, nil)
	writeCert(t, dir, "server", &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "etcd"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}, ca, caKey)
	writeCert(t, dir, "client", clientTemplate(3), ca, caKey)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedConfig{
		Dir:        filepath.Join(dir, "etcd"),
		Listen:     "127.0.0.1:" + strconv.Itoa(freePort(t)),
		PeerListen: "127.0.0.1:" + strconv.Itoa(freePort(t)),
		CertFile:   filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"),
		ClientCAFile: filepath.Join(dir, "ca.pem"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if ep := e.Endpoints()[0]; ep[:8] != "https://" {
		t.Fatalf("endpoint %s is not https", ep)
	}

	good, err := NewClient(ctx, ClientConfig{Endpoints: e.Endpoints(), CAFile: filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if _, err := good.Put(ctx, "/vxland/tls-test", "ok"); err != nil {
		t.Fatalf("put over TLS with a client certificate: %v", err)
	}

	// A certificate from another CA is refused like none at all.
	rogueCA, rogueKey := writeCert(t, dir, "rogue-ca", caTemplate(4, "rogue CA"), nil, nil)
	writeCert(t, dir, "rogue", clientTemplate(5), rogueCA, rogueKey)
	rogue, err := NewClient(ctx, ClientConfig{Endpoints: e.Endpoints(), CAFile: filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "rogue.pem"), KeyFile: filepath.Join(dir, "rogue-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := rogue.Put(short, "/vxland/vtep/192.0.2.66", "{}"); err == nil {
		t.Fatal("a client certificate from an untrusted CA was served")
	}

	anon, err := NewClient(ctx, ClientConfig{Endpoints: e.Endpoints(), CAFile: filepath.Join(dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	short, cancelShort = context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := anon.Get(short, "/vxland/tls-test"); err == nil {
		t.Fatal("a client without a certificate was served by a server that requires one")
	}

	if _, err := (ClientConfig{CAFile: filepath.Join(dir, "server-key.pem")}).TLS(); err == nil {
		t.Fatal("a CA file without a certificate was accepted")
	}
	if _, err := (ClientConfig{CertFile: filepath.Join(dir, "client.pem")}).TLS(); err == nil {
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
	// What an operator does with etcdctl: root, a vxland user whose role
	// may write the vxland prefix only, and authentication on.
	steps := []func() error{
		func() error { _, err := root.RoleAdd(ctx, "root"); return err },
		func() error { _, err := root.UserAdd(ctx, "root", "root-secret"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.RoleAdd(ctx, "vxland"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx, "vxland", DefaultPrefix+"/", clientv3.GetPrefixRangeEnd(DefaultPrefix+"/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := root.UserAdd(ctx, "vxland", "s3cret"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "vxland", "vxland"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("setting up authentication, step %d: %v", i, err)
		}
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
