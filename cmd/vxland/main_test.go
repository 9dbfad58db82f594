package main

import (
	"os"
	"testing"
)

// daemonEnv makes the test binary act as vxland, so that integration tests
// run the real daemon, flags and all, in network namespaces without a
// separate build step.
const daemonEnv = "VXLAND_TEST_RUN_AS_DAEMON"

func TestMain(m *testing.M) {
	if os.Getenv(daemonEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
