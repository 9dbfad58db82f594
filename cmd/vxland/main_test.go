package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxland/vxland/discovery"
	"go.etcd.io/etcd/server/v3/embed"
)

// The test binary plays other programs in integration tests, so that they
// run as real processes in network namespaces without a build step:
//   - daemonEnv=1: vxland itself, flags and all;
//   - etcdEnv=DIR,HOST:PORT: a stand-alone etcd server (the embedded one)
//     that a test can pause with SIGSTOP or kill without touching a host;
//     with etcdMemberEnv=NAME,INITIAL-CLUSTER too, a member of a cluster
//     (etcd's --name and --initial-cluster; its peer port is HOST:PORT+1).
const (
	daemonEnv     = "VXLAND_TEST_RUN_AS_DAEMON"
	etcdEnv       = "VXLAND_TEST_RUN_AS_ETCD"
	etcdMemberEnv = "VXLAND_TEST_ETCD_MEMBER"
)

func TestMain(m *testing.M) {
	if os.Getenv(daemonEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	if spec := os.Getenv(etcdEnv); spec != "" {
		os.Exit(runTestEtcd(spec))
	}
	os.Exit(m.Run())
}

func runTestEtcd(spec string) int {
	var dir, listen string
	for i := len(spec) - 1; i >= 0; i-- {
		if spec[i] == ',' {
			dir, listen = spec[:i], spec[i+1:]
			break
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var errc <-chan error
	if member := os.Getenv(etcdMemberEnv); member != "" {
		e, err := startEtcdMember(dir, listen, member)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer e.Close()
		errc = e.Err()
	} else {
		e, err := discovery.StartEmbedded(ctx, discovery.EmbeddedConfig{Dir: dir, Listen: listen})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer e.Close()
		errc = e.Err()
	}
	fmt.Println("etcd ready", listen)
	select {
	case <-ctx.Done():
	case err := <-errc:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startEtcdMember starts one member of a cluster: member is
// NAME,INITIAL-CLUSTER, the peers listen on the client port + 1. It
// returns once the member serves, which needs a quorum of the cluster.
func startEtcdMember(dir, listen, member string) (*embed.Etcd, error) {
	name, initial, _ := strings.Cut(member, ",")
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	client := url.URL{Scheme: "http", Host: listen}
	peer := url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(p+1))}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = name, dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = initial
	cfg.LogLevel, cfg.Logger = "fatal", "zap"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd member %s did not become ready within 60s", name)
	}
}
