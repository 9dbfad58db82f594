package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

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
	etcd     *discovery.Embedded
	endpoint string
	stopped  bool
}

// StartCluster starts the cluster and waits until it serves clients.
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
	var initial []string
	for i := range clusterSize {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, ports[2*i+1]))
	}
	// Each member is ready once a majority runs: start them together.
	c := &Cluster{conns: newMeter(), members: make([]*member, clusterSize)}
	errs := make([]error, clusterSize)
	var started sync.WaitGroup
	for i := range clusterSize {
		started.Go(func() {
			e, err := discovery.StartEmbedded(ctx, discovery.EmbeddedConfig{
				Dir: filepath.Join(dir, fmt.Sprint("m", i)), Listen: ports[2*i], PeerListen: ports[2*i+1],
				Name: fmt.Sprint("m", i), Cluster: strings.Join(initial, ","),
			})
			if err != nil {
				errs[i] = err
				return
			}
			c.members[i] = &member{etcd: e, endpoint: e.Endpoints()[0]}
		})
	}
	started.Wait()
	for i, m := range c.members {
		if m == nil {
			c.members[i] = &member{stopped: true}
		} else {
			c.endpoints = append(c.endpoints, m.endpoint)
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	c.client, err = discovery.NewClient(ctx, discovery.ClientConfig{Endpoints: c.endpoints, DialOptions: c.conns.dialOptions()})
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
		if !m.stopped && m.etcd.Leading() {
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
	m.etcd.Kill()
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
