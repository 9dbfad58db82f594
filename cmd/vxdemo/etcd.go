package main

import (
	"context"
	"fmt"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/vxland/vxland/internal/netlab"
)

// etcdKV is one key read from etcd.
type etcdKV struct {
	Key, Value string
	Lease      int64
}

// readEtcd lists the keys under prefix of the etcd at endpoint, as
// "etcdctl get --prefix" run on host from would: the client's connections
// are opened inside from's network namespace, the only place from which
// the underlay address of etcd is reachable.
func readEtcd(ctx context.Context, from *netlab.NS, endpoint, prefix string) ([]etcdKV, error) {
	dialInNS := func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := from.Do(func() error {
			var err error
			c, err = new(net.Dialer).DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dialInNS)},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s in %s: %w", endpoint, from, err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("reading %s from etcd at %s (from %s): %w", prefix, endpoint, from, err)
	}
	kvs := make([]etcdKV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs = append(kvs, etcdKV{Key: string(kv.Key), Value: string(kv.Value), Lease: kv.Lease})
	}
	return kvs, nil
}
