package discovery

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// Embedded is an etcd server running inside this process: a single
// member cluster for one machine or a small lab, with nothing else to
// install. It is the real etcd, not a fake.
type Embedded struct {
	etcd      *embed.Etcd
	endpoints []string
}

// EmbeddedConfig configures StartEmbedded.
type EmbeddedConfig struct {
	// Dir stores the data; a server restarted on the same Dir keeps it.
	Dir string
	// Listen is the client address, host:port.
	Listen string
	// PeerListen is the (unused, single-member) peer address; default:
	// Listen's host with Listen's port + 1.
	PeerListen string
	// Name and Cluster make the server one member of a cluster: its
	// name, and every member's name=peer URL, comma-separated. Default: a
	// cluster of this server alone. A member is ready only once a
	// majority has started: start the members together.
	Name, Cluster string
	// CertFile and KeyFile, when set, make the server speak TLS to its
	// clients; ClientCAFile, when set too, makes it require client
	// certificates signed by that CA.
	CertFile, KeyFile, ClientCAFile string
}

// StartEmbedded starts an etcd server and waits until it serves clients.
func StartEmbedded(ctx context.Context, c EmbeddedConfig) (*Embedded, error) {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd listen address %q: %w", c.Listen, err)
	}
	if c.PeerListen == "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65534 {
			return nil, fmt.Errorf("embedded etcd listen address %q: bad port", c.Listen)
		}
		c.PeerListen = net.JoinHostPort(host, strconv.Itoa(p+1))
	}
	client := url.URL{Scheme: "http", Host: c.Listen}
	if c.CertFile != "" {
		client.Scheme = "https"
	}
	peer := url.URL{Scheme: "http", Host: c.PeerListen}

	cfg := embed.NewConfig()
	cfg.Name = "vxland"
	if c.Name != "" {
		cfg.Name = c.Name
	}
	cfg.Dir = c.Dir
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	if c.Cluster != "" {
		cfg.InitialCluster = c.Cluster
	}
	if c.CertFile != "" {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile,
			TrustedCAFile: c.ClientCAFile, ClientCertAuth: c.ClientCAFile != ""}
	}
	// Failures reach us through StartEtcd's error and Err(); etcd's own
	// error log would print stack traces on every clean shutdown.
	cfg.LogLevel = "fatal"
	cfg.Logger = "zap"
	// Keep an hour of history, so that a watcher that was away for a
	// while resumes instead of re-listing; older revisions are compacted.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	// A host re-publishes everything it owns in one transaction.
	cfg.MaxTxnOps = 4096

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd in %s: %w", c.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s did not become ready within 60s", c.Dir)
	}
	return &Embedded{etcd: e, endpoints: []string{client.String()}}, nil
}

// Endpoints returns the client URLs.
func (e *Embedded) Endpoints() []string { return e.endpoints }

// Err reports a server failure after start.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Leading reports whether this server leads its cluster.
func (e *Embedded) Leading() bool { return e.etcd.Server.Leader() == e.etcd.Server.MemberID() }

// Kill stops the server's part in its cluster at once, as a crash would,
// without waiting for the clients it serves; Close finishes the shutdown.
func (e *Embedded) Kill() { e.etcd.Server.HardStop() }

// Close stops the server.
func (e *Embedded) Close() { e.etcd.Close() }
