package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
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
		Logger: zap.NewNop(),
	})
	if errors.Is(err, rpctypes.ErrAuthFailed) {
		return nil, fmt.Errorf("etcd at %v refused user %q: wrong user name or password: %w", c.Endpoints, c.Username, err)
	}
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", c.Endpoints, err)
	}
	return cli, nil
}
