package control

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// meter counts what the agents ask of etcd, at their clients: every unary
// request (each retry too), the writes and the lists among them, and the
// bytes etcd sent. It also holds every connection the clients opened, so
// that the bench can cut them all at once.
type meter struct {
	requests, writes, lists atomic.Int64
	// keys counts the keys the writes put or delete: a transaction
	// counts its operations.
	keys     atomic.Int64
	received atomic.Int64
	// writeTime sums the writes' round trips, in nanoseconds.
	writeTime atomic.Int64

	mu    sync.Mutex
	conns map[*meteredConn]struct{}
	// gate, while not nil, holds new connections until it is closed.
	gate chan struct{}
}

func newMeter() *meter { return &meter{conns: make(map[*meteredConn]struct{})} }

// counts is a copy of the counters at one moment.
type counts struct{ requests, writes, keys, lists, received, writeTime int64 }

func (m *meter) counts() counts {
	return counts{m.requests.Load(), m.writes.Load(), m.keys.Load(), m.lists.Load(), m.received.Load(), m.writeTime.Load()}
}

func (c counts) sub(d counts) counts {
	return counts{c.requests - d.requests, c.writes - d.writes, c.keys - d.keys, c.lists - d.lists,
		c.received - d.received, c.writeTime - d.writeTime}
}

// meanWrite is the mean round trip of the writes counted in c.
func (c counts) meanWrite() time.Duration {
	if c.writes == 0 {
		return 0
	}
	return time.Duration(c.writeTime / c.writes)
}

// dialOptions make a client counted by m. The interceptor is chained
// inside etcd's own retrying one, so each attempt counts.
func (m *meter) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(m.count),
		grpc.WithContextDialer(m.dial),
	}
}

func (m *meter) count(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	m.requests.Add(1)
	switch method {
	case "/etcdserverpb.KV/Put", "/etcdserverpb.KV/Txn", "/etcdserverpb.KV/DeleteRange":
		if txn, ok := req.(*etcdserverpb.TxnRequest); ok {
			m.keys.Add(int64(len(txn.Success)))
		} else {
			m.keys.Add(1)
		}
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		m.writeTime.Add(int64(time.Since(start)))
		m.writes.Add(1)
		return err
	case "/etcdserverpb.KV/Range":
		m.lists.Add(1)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (m *meter) dial(ctx context.Context, addr string) (net.Conn, error) {
	m.mu.Lock()
	gate := m.gate
	m.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	mc := &meteredConn{Conn: c, m: m}
	m.mu.Lock()
	m.conns[mc] = struct{}{}
	m.mu.Unlock()
	return mc, nil
}

// cut closes every connection the clients hold to addr (host:port), or
// to any address when addr is empty, as a network blip or the death of
// the server process would; the clients reconnect by themselves.
func (m *meter) cut(addr string) int {
	m.mu.Lock()
	conns := make([]*meteredConn, 0, len(m.conns))
	for c := range m.conns {
		if addr == "" || c.RemoteAddr().String() == addr {
			conns = append(conns, c)
		}
	}
	m.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

// hold makes new connections wait until release, so that the clients stay
// away from etcd for as long as the bench needs; waiting, they do not pile
// up failed attempts and gRPC's backoff.
func (m *meter) hold() {
	m.mu.Lock()
	m.gate = make(chan struct{})
	m.mu.Unlock()
}

func (m *meter) release() {
	m.mu.Lock()
	close(m.gate)
	m.gate = nil
	m.mu.Unlock()
}

type meteredConn struct {
	net.Conn
	m *meter
}

func (c *meteredConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.m.received.Add(int64(n))
	return n, err
}

func (c *meteredConn) Close() error {
	c.m.mu.Lock()
	delete(c.m.conns, c)
	c.m.mu.Unlock()
	return c.Conn.Close()
}
