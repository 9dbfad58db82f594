//go:build faults

package main

import (
	"testing"
	"time"
)

// The full fault suite: `make test-faults`, or
// go test -tags faults -run 'TestFault' -v ./cmd/vxland
// Each scenario is in faults_test.go, shared with the smoke in `make test`.

func TestFaultDaemonKill(t *testing.T) {
	faultDaemonKill(t, faultScale{rounds: 5, hold: 2 * time.Second})
}

func TestFaultEtcdRestart(t *testing.T) {
	faultEtcdRestart(t, faultScale{rounds: 3, hold: 2 * testLeaseTTL})
}

func TestFaultLinkCut(t *testing.T) {
	faultLinkCut(t, faultScale{rounds: 3, hold: 2 * time.Second})
}

func TestFaultMalformedFlood(t *testing.T) {
	faultMalformedFlood(t, faultScale{rounds: 1, count: 1_000_000})
}

func TestFaultEtcdPause(t *testing.T) {
	faultEtcdPause(t, faultScale{rounds: 2, hold: 2 * testLeaseTTL})
}

func TestFaultMACFlood(t *testing.T) {
	faultMACFlood(t, faultScale{rounds: 1, count: 100_000})
}

func TestFaultEtcdLeaderKill(t *testing.T) {
	faultEtcdLeaderKill(t, faultScale{rounds: 1})
}

func TestFaultOversizeFrames(t *testing.T) {
	faultOversizeFrames(t, faultScale{rounds: 1, count: 10_000})
}
