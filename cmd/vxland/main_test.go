package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/vxland/vxland/discovery"
)

// The test binary plays other programs in integration tests, so that they
// run as real processes in network namespaces without a build step:
//   - daemonEnv=1: vxland itself, flags and all;
//   - etcdEnv=DIR,HOST:PORT: a stand-alone etcd server (the embedded one)
//     that a test can pause with SIGSTOP or kill without touching a host.
const (
	daemonEnv = "VXLAND_TEST_RUN_AS_DAEMON"
	etcdEnv   = "VXLAND_TEST_RUN_AS_ETCD"
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
	e, err := discovery.StartEmbedded(ctx, discovery.EmbeddedConfig{Dir: dir, Listen: listen})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer e.Close()
	fmt.Println("etcd ready", e.Endpoints())
	select {
	case <-ctx.Done():
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
