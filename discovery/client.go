package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// ClientConfig says how to reach etcd.
type ClientConfig struct {
	Endpoints []string
	// CAFile, CertFile and KeyFile enable TLS: CAFile verifies the
	// servers, CertFile and KeyFile authenticate us.
	CAFile, CertFile, KeyFile string
	// Username and Password log in to an etcd with authentication
	// enabled. The client logs in when it is made, so with them NewClient
	// waits (up to its dial timeout) for etcd to answer, and fails when
	// it does not.
	Username, Password string
	// DialOptions are added to the client's gRPC options, after its own:
	// the control-plane bench counts requests and bytes with them.
	DialOptions []grpc.DialOption
}

// TLS returns the TLS configuration, or nil when no TLS file is set.
func (c ClientConfig) TLS() (*tls.Config, error) {
	if c.CAFile == "" && c.CertFile == "" && c.KeyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA file %s: no PEM certificate in it", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("etcd client certificate and key must be given together")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// NewClient connects to etcd. Without a user name it does not wait for a
// server: vxland starts forwarding whether or not etcd is up. Ending ctx
// stops the login and closes the client.
func NewClient(ctx context.Context, c ClientConfig) (*clientv3.Client, error) {
	tlsCfg, err := c.TLS()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Context:     ctx,
		Endpoints:   c.Endpoints,
		TLS:         tlsCfg,
		Username:    c.Username,
		Password:    c.Password,
		DialTimeout: 5 * time.Second,
		// Notice a dead connection within seconds, not minutes.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		// Our own log says what matters; the client's own is noise.
		Logger:      zap.NewNop(),
		DialOptions: c.DialOptions,
	})
	if errors.Is(err, rpctypes.ErrAuthFailed) {
		return nil, fmt.Errorf("etcd at %v refused user %q: wrong user name or password: %w", c.Endpoints, c.Username, err)
	}
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", c.Endpoints, err)
	}
	return cli, nil
}

// ErrTLSRefused is the error of a TLS session with etcd that failed: etcd
// refused this host's certificate, or this host refused etcd's.
var ErrTLSRefused = errors.New("TLS with etcd failed")

// CheckTLS opens a TLS session with each endpoint of c that it can reach
// and returns an error wrapping ErrTLSRefused for the first that fails;
// nil when each either accepts this host or cannot be reached (the
// caller retries those). The etcd client only says "context deadline
// exceeded" when the server refuses its certificate, because it waits for
// a connection; this says why. Under TLS 1.3 a server refuses a client
// certificate after the handshake, so CheckTLS also waits up to a second
// for that refusal: the server sends nothing else before the client
// speaks.
func (c ClientConfig) CheckTLS(ctx context.Context) error {
	cfg, err := c.TLS()
	if err != nil || cfg == nil {
		return err
	}
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" {
			continue
		}
		cfg := cfg.Clone()
		cfg.ServerName = u.Hostname()
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
		conn, err := d.DialContext(ctx, "tcp", u.Host)
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			continue // not reachable: not a refusal
		}
		if err == nil {
			conn.SetReadDeadline(time.Now().Add(time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				continue // accepted
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s: %w", ErrTLSRefused, ep, err)
	}
	return nil
}
