//go:build linux

package bench

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
)

// A command started through pinned runs confined to its CPUs, as the
// bench's iperf3 and vxland are.
func TestPinnedCommandRunsOnItsCPUs(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs to tell confinement from the default")
	}
	if err := netlab.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	lab := netlab.NewForTest(t)
	ns, err := lab.Namespace("pin")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ns.Start(pinned([]int{1}, "sleep", "30")...)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	pid := p.Cmd.Process.Pid
	// ip netns exec and taskset exec in turn; sleep ends the chain.
	deadline := time.Now().Add(5 * time.Second)
	for {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command did not get to sleep: comm %q", comm)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &set); err != nil {
		t.Fatal(err)
	}
	if set.Count() != 1 || !set.IsSet(1) {
		t.Errorf("the command may run on %d CPUs (CPU 1: %v), want CPU 1 only", set.Count(), set.IsSet(1))
	}
}

// The echo sender's thread is confined while it measures and gets its
// CPUs back afterwards.
func TestConfineThreadRestores(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var before, during, after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &before); err != nil {
		t.Fatal(err)
	}
	restore, err := confineThread([]int{0})
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SchedGetaffinity(0, &during); err != nil {
		t.Fatal(err)
	}
	restore()
	if err := unix.SchedGetaffinity(0, &after); err != nil {
		t.Fatal(err)
	}
	if during.Count() != 1 || !during.IsSet(0) {
		t.Errorf("confined to %d CPUs (CPU 0: %v), want CPU 0 only", during.Count(), during.IsSet(0))
	}
	if after != before {
		t.Errorf("CPUs after restore differ from before (%d against %d)", after.Count(), before.Count())
	}
}
