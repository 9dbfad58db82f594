package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/buildtest"
	"github.com/vxland/vxland/internal/netlab"
)

// TestHarnessSmoke runs the whole bench briefly (one round of one-second
// runs) and checks that every configuration produced every number and that
// the files are well-formed. vxland-base runs the same executable as
// vxland, so that the comparison of two builds is exercised, and
// vxland-poll runs it with a flag vxland has (--idle-sched=normal). It
// asserts no speed: a slow machine passes.
func TestHarnessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: builds five topologies and runs iperf3 for about 35 s")
	}
	skipWithoutPrerequisites(t)
	o := Smoke
	o.VxlandPath = buildtest.Vxland(t)
	o.VxlandBasePath = o.VxlandPath
	o.PollFlags = []string{"--idle-sched=normal"}
	configs := append(slices.Clip(AllConfigs), VxlandBase, VxlandPoll) // what the base executable and the poll flags add
	o.LabPrefix = "vxbt"
	o.WorkDir = t.TempDir()

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var progress []string
	start := time.Now()
	res, err := Run(ctx, o, func(s string) { progress = append(progress, s) })
	t.Logf("bench took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Runs {
		if r.Error != "" {
			t.Errorf("round %d %s %s failed: %s", r.Round, r.Config, r.Test, r.Error)
		}
	}
	// The idle test runs only when vxland has CPUs of its own.
	tests := slices.DeleteFunc(slices.Clone(AllTests), func(t Test) bool { return t == TestIdle })
	if want := len(configs) * len(tests); len(res.Runs) != want {
		t.Errorf("%d runs, want %d", len(res.Runs), want)
	}
	// One per build, the kernel's rate for the paced runs, one per test.
	if want := len(configs)*len(tests) + len(configs) + 1; len(progress) != want {
		t.Errorf("%d progress lines, want %d (one per build, the paced rate and per test)", len(progress), want)
	}
	if res.UDP64PacedKPPS <= 0 {
		t.Error("no rate for the paced UDP runs")
	}
	if !slices.Equal(res.Options.PollFlags, o.PollFlags) {
		t.Errorf("poll flags recorded as %q, want %q", res.Options.PollFlags, o.PollFlags)
	}
	// Every vxland TCP run reports both daemons' heap growth.
	for _, r := range res.Runs {
		if r.Config.runsVxland() && (r.Test == TestTCP1 || r.Test == TestTCP4) && r.Error == "" && len(r.VxlandHeapAlloc) != 2 {
			t.Errorf("round %d %s %s: heap growth of %d vxland daemons, want 2", r.Round, r.Config, r.Test, len(r.VxlandHeapAlloc))
		}
	}
	// The latency tests: echo every millisecond, ten times as many, also
	// under a TCP stream, and request/response transactions through every
	// configuration.
	for _, r := range res.Runs {
		switch {
		case r.Error != "":
		case r.Test == TestRTTFast && (r.RTT == nil || len(r.RTT.Micros)+r.RTT.Lost != fastRTTFactor*o.RTTSamples):
			t.Errorf("%s %s: %+v, want %d echo requests", r.Config, r.Test, r.RTT, fastRTTFactor*o.RTTSamples)
		case r.Test == TestRTTLoaded && (r.RTT == nil || len(r.RTT.Micros) == 0 || !(r.RTT.LoadGbit > 0)):
			t.Errorf("%s %s: %+v, want round trips and the throughput of the load", r.Config, r.Test, r.RTT)
		case r.Test == TestRR && (r.RR == nil || r.RR.Transactions == 0 || !(r.RR.P50 > 0) || !(r.RR.ClientCPUPercent > 0)):
			t.Errorf("%s %s: %+v, want transactions, their p50 and the client's CPU", r.Config, r.Test, r.RR)
		}
	}
	if res.Machine.Vxland == "" || res.Machine.VxlandBase != res.Machine.Vxland {
		t.Errorf("vxland build %q and base build %q, want the same recorded twice", res.Machine.Vxland, res.Machine.VxlandBase)
	}
	if res.Machine.Offloads["tcp-segmentation-offload"] == "" && hasTool("ethtool") {
		t.Errorf("offload settings not recorded: %v", res.Machine.Offloads)
	}

	dir := filepath.Join(t.TempDir(), "results")
	if err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	checkResultFiles(t, dir, configs)
	if t.Failed() {
		md, _ := os.ReadFile(filepath.Join(dir, MarkdownFile))
		t.Logf("results:\n%s", md)
	}

	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if mine := fmt.Sprintf("vxbt%d-", os.Getpid()); strings.Contains(string(out), mine) {
		t.Errorf("namespaces left behind:\n%s", out)
	}
}

func hasTool(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// vxland-poll's flags reach the vxland it starts: one vxland refuses
// fails the bench, naming the flag.
func TestPollFlagsReachVxland(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: builds a topology")
	}
	skipWithoutPrerequisites(t)
	o := Smoke
	o.VxlandPath = buildtest.Vxland(t)
	o.Configs = []Config{VxlandPoll}
	o.PollFlags = []string{"--idle-sched=sometimes"}
	o.LabPrefix = "vxbp"
	o.WorkDir = t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := Run(ctx, o, nil)
	if err == nil || !strings.Contains(err.Error(), "idle-sched") {
		t.Errorf("Run with vxland-poll flags vxland refuses: %v, want an error about --idle-sched", err)
	}
}

// skipWithoutPrerequisites skips a test that runs the bench where it
// cannot run.
func skipWithoutPrerequisites(t *testing.T) {
	t.Helper()
	if err := netlab.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	if err := CheckIperf3(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}
