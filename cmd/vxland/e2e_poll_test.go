package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pinProcess puts every thread of process pid on cpu; threads it starts
// later inherit that from the thread that starts them.
func pinProcess(t *testing.T, pid, cpu int) {
	t.Helper()
	var set unix.CPUSet
	set.Set(cpu)
	// Twice: a thread started during the first pass is caught by the second.
	for range 2 {
		for _, tid := range threads(t, pid) {
			// A thread may end between the listing and the call.
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				t.Fatalf("pinning thread %d of %d to CPU %d: %v", tid, pid, cpu, err)
			}
		}
	}
}

// threads lists the thread IDs of process pid.
func threads(t *testing.T, pid int) []int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	var tids []int
	for _, task := range tasks {
		if tid, err := strconv.Atoi(task.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids
}

// cpuTime returns the time the threads of process pid have run on a CPU
// (the first field of each thread's schedstat, in nanoseconds); with
// forwarding, only its forwarding threads', which run under SCHED_BATCH
// while idle (--idle-sched=batch, the default).
func cpuTime(t *testing.T, pid int, forwarding bool) time.Duration {
	t.Helper()
	var sum time.Duration
	for _, tid := range threads(t, pid) {
		if forwarding {
			if a, err := unix.SchedGetAttr(tid, 0); err != nil || a.Policy != unix.SCHED_BATCH {
				continue
			}
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid) + "/schedstat")
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			t.Fatalf("schedstat of thread %d: %q", tid, b)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Fatalf("schedstat of thread %d: %v", tid, err)
		}
		sum += time.Duration(ns)
	}
	return sum
}

// With --poll=always and no traffic the forwarding threads yield their
// CPU between rounds: a CPU-bound process pinned to the same CPU gets
// most of it, where three threads that held it for a scheduler tick each
// would leave it a third. With --poll=1ms they sleep after a millisecond:
// they run next to nothing of what those of a --poll=always daemon with a
// CPU to spare run.
func TestPollYieldsItsCPU(t *testing.T) {
	tp := newTopo(t, 45)
	always, free, brief := tp.addHost(), tp.addHost(), tp.addHost()
	tp.start(always, nil, "--poll=always", "--queues=2")
	tp.start(free, nil, "--poll=always", "--queues=2")
	tp.start(brief, nil, "--poll=1ms", "--queues=2")
	cpu := 0
	if n := runtime.NumCPU(); n > 1 {
		cpu = n - 1
	}
	pinProcess(t, always.proc.Pid(), cpu)
	spinner, err := always.ns.Start("sh", "-c", "while :; do :; done")
	if err != nil {
		t.Fatal(err)
	}
	pinProcess(t, spinner.Pid(), cpu)
	// ip netns exec runs the shell once it has set up the namespace,
	// which on a busy machine takes a while.
	ctx := testCtx(t, 30*time.Second)
	for comm := ""; comm != "sh\n"; {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(spinner.Pid()) + "/comm")
		if err != nil || ctx.Err() != nil {
			t.Fatalf("the spinner did not start: %q, %v, %v", b, err, ctx.Err())
		}
		comm = string(b)
		time.Sleep(10 * time.Millisecond)
	}

	// Let the daemons finish starting (a worker's raw wait is woken
	// every 10 ms for a second after its last event: poller.Set) and
	// the spinner settle on the CPU, then measure over about a second.
	time.Sleep(2 * time.Second)
	measure := []struct {
		pid        int
		forwarding bool
		used       time.Duration
	}{{always.proc.Pid(), false, 0}, {spinner.Pid(), false, 0}, {free.proc.Pid(), true, 0}, {brief.proc.Pid(), true, 0}}
	for i, m := range measure {
		measure[i].used = -cpuTime(t, m.pid, m.forwarding)
	}
	time.Sleep(time.Second)
	for i, m := range measure {
		measure[i].used += cpuTime(t, m.pid, m.forwarding)
	}
	alwaysCPU, spinnerCPU, freeFwd, briefFwd := measure[0].used, measure[1].used, measure[2].used, measure[3].used
	share := float64(spinnerCPU) / float64(spinnerCPU+alwaysCPU)
	t.Logf("CPU time over the window: pinned --poll=always daemon %v, spinner on its CPU %v (%.0f%% of the pair); forwarding threads of an unpinned --poll=always daemon %v, of a --poll=1ms one %v",
		alwaysCPU, spinnerCPU, 100*share, freeFwd, briefFwd)
	if share < 0.5 {
		t.Errorf("the spinner got %.0f%% of the CPU it shares with a --poll=always daemon, want at least half: the daemon does not yield", 100*share)
	}
	if freeFwd < 100*time.Millisecond {
		t.Fatalf("the --poll=always daemon's forwarding threads ran %v: none measured, the comparison would prove nothing", freeFwd)
	}
	if briefFwd*10 > freeFwd {
		t.Errorf("the forwarding threads of a --poll=1ms daemon without traffic ran %v, a --poll=always one's %v: want less than a tenth", briefFwd, freeFwd)
	}
}
