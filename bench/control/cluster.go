package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/vxland/vxland/discovery"
)

// clusterSize is the number of etcd members: the smallest cluster that
// survives the loss of one, which the leader-change phase needs.
const clusterSize = 3

// Cluster is a three-member etcd cluster in this process, on loopback
// ports free at start, storing under one directory.
type Cluster struct {
	members   []*member
	endpoints []string
	// client is the bench's own client: it compacts, reads etcd's
	// content and status, and is not counted with the agents'.
	client *clientv3.Client
	conns  *meter // of client
	// closing waits for members stopped in the background.
	closing sync.WaitGroup
}

type member struct {
	etcd     *embed.Etcd
	endpoint string
	stopped  bool
}

// StartCluster starts the cluster and waits until it has a leader.
func StartCluster(ctx context.Context, dir string) (*Cluster, error) {
	var err error
	// A port found free may be taken before etcd binds it: try again.
	for try := range 3 {
		var c *Cluster
		c, err = startCluster(ctx, filepath.Join(dir, fmt.Sprint("try", try)))
		if err == nil {
			return c, nil
		}
	}
	return nil, err
}

func startCluster(ctx context.Context, dir string) (*Cluster, error) {
	ports, err := freeLoopbackPorts(2 * clusterSize)
	if err != nil {
		return nil, err
	}
	names := make([]string, clusterSize)
	var initial []string
	for i := range clusterSize {
		names[i] = fmt.Sprintf("m%d", i)
		initial = append(initial, names[i]+"=http://"+ports[2*i+1])
	}
	c := &Cluster{conns: newMeter()}
	for i := range clusterSize {
		client := url.URL{Scheme: "http", Host: ports[2*i]}
		peer := url.URL{Scheme: "http", Host: ports[2*i+1]}
		cfg := embed.NewConfig()
		cfg.Name = names[i]
		cfg.Dir = filepath.Join(dir, names[i])
		cfg.ListenClientUrls = []url.URL{client}
		cfg.AdvertiseClientUrls = []url.URL{client}
		cfg.ListenPeerUrls = []url.URL{peer}
		cfg.AdvertisePeerUrls = []url.URL{peer}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "vxctlbench-" + filepath.Base(dir)
		cfg.LogLevel = "fatal"
		cfg.Logger = "zap"
		// Compaction is the bench's to do, when it measures it.
		cfg.AutoCompactionRetention = "0"
		// A host re-publishes everything it owns in one transaction, as
		// vxland's embedded etcd allows.
		cfg.MaxTxnOps = 4096
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("starting etcd member %s: %w", names[i], err)
		}
		c.members = append(c.members, &member{etcd: e, endpoint: client.String()})
		c.endpoints = append(c.endpoints, client.String())
	}
	for _, m := range c.members {
		select {
		case <-m.etcd.Server.ReadyNotify():
		case err := <-m.etcd.Err():
			c.Close()
			return nil, fmt.Errorf("etcd member at %s: %w", m.endpoint, err)
		case <-ctx.Done():
			c.Close()
			return nil, ctx.Err()
		case <-time.After(60 * time.Second):
			c.Close()
			return nil, fmt.Errorf("etcd member at %s not ready within 60s", m.endpoint)
		}
	}
	c.client, err = discovery.NewClient(discovery.ClientConfig{Endpoints: c.endpoints, DialOptions: c.conns.dialOptions()})
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func freeLoopbackPorts(n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// Endpoints returns the client URLs of every member, stopped or not.
func (c *Cluster) Endpoints() []string { return c.endpoints }

// Client returns the bench's own client of the cluster.
func (c *Cluster) Client() *clientv3.Client { return c.client }

// leader returns the running member that leads the cluster.
func (c *Cluster) leader() (*member, error) {
	for _, m := range c.members {
		if !m.stopped && m.etcd.Server.Leader() == m.etcd.Server.MemberID() {
			return m, nil
		}
	}
	return nil, errors.New("no running etcd member is the leader")
}

// KillLeader stops the member that leads the cluster at once, as if its
// process were killed, and returns its client address (host:port): the
// caller resets the connections of its own clients to it, as the kernel
// would (Cluster resets its own). The other two elect a new leader among
// themselves. The rest of the member's shutdown, which waits for the
// streams it served, runs in the background until Close.
func (c *Cluster) KillLeader() (string, error) {
	m, err := c.leader()
	if err != nil {
		return "", err
	}
	m.stopped = true
	m.etcd.Server.HardStop()
	addr := strings.TrimPrefix(m.endpoint, "http://")
	c.conns.cut(addr)
	c.closing.Go(m.etcd.Close)
	return addr, nil
}

// Status is what etcd says about its load.
type Status struct {
	// DBSize is the leader's database file; DBSizeInUse the part of it
	// that holds data.
	DBSize, DBSizeInUse int64
	// Revision is the store's revision.
	Revision int64
}

// Status asks the running members, and returns the first answer.
func (c *Cluster) Status(ctx context.Context) (Status, error) {
	var err error
	for _, m := range c.members {
		if m.stopped {
			continue
		}
		var s *clientv3.StatusResponse
		s, err = c.client.Status(ctx, m.endpoint)
		if err == nil {
			return Status{DBSize: s.DbSize, DBSizeInUse: s.DbSizeInUse, Revision: s.Header.Revision}, nil
		}
	}
	return Status{}, fmt.Errorf("etcd status: %w", err)
}

// Close stops the client and every member still running.
func (c *Cluster) Close() {
	if c.client != nil {
		c.client.Close()
	}
	for _, m := range c.members {
		if !m.stopped {
			m.stopped = true
			m.etcd.Close()
		}
	}
	c.closing.Wait()
}
