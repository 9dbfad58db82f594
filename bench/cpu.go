package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the times in /proc/stat and /proc/PID/stat. Linux
// fixes USER_HZ at 100 in its user-space ABI on every architecture Go runs on.
const userHZ = 100

// machineTicks is the first ("cpu") line of /proc/stat, summed.
type machineTicks struct {
	busy, total uint64
}

// parseProcStat reads the aggregate line of /proc/stat. Busy is everything
// but idle and iowait (guest time is already counted in user).
func parseProcStat(s string) (machineTicks, error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return machineTicks{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var t machineTicks
	for i, field := range f[1:] {
		if i >= 8 { // guest and guest_nice are part of user and nice
			break
		}
		v, err := strconv.ParseUint(field, 10, 64)
		if err != nil {
			return machineTicks{}, fmt.Errorf("/proc/stat: field %d: %w", i+1, err)
		}
		t.total += v
		if i != 3 && i != 4 { // idle, iowait
			t.busy += v
		}
	}
	return t, nil
}

// parsePIDStat returns utime+stime from /proc/PID/stat: the process's CPU
// time over all its threads, in ticks.
func parsePIDStat(s string) (uint64, error) {
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses itself: fields resume after the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("/proc/PID/stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/PID/stat: %d fields after the command name, want at least 13", len(f))
	}
	var sum uint64
	for _, field := range f[11:13] {
		v, err := strconv.ParseUint(field, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/PID/stat: %w", err)
		}
		sum += v
	}
	return sum, nil
}

// cpuMeter measures the CPU time the machine and some processes spend
// between start and stop.
type cpuMeter struct {
	pids    []int
	start   time.Time
	machine machineTicks
	procs   uint64
}

func startCPUMeter(pids []int) (*cpuMeter, error) {
	m := &cpuMeter{pids: pids, start: time.Now()}
	var err error
	if m.machine, m.procs, err = readCPU(pids); err != nil {
		return nil, err
	}
	return m, nil
}

// stop returns the usage since start.
func (m *cpuMeter) stop() (*CPUUsage, error) {
	machine, procs, err := readCPU(m.pids)
	if err != nil {
		return nil, err
	}
	return &CPUUsage{
		MachineSeconds: float64(machine.busy-m.machine.busy) / userHZ,
		VxlandSeconds:  float64(procs-m.procs) / userHZ,
		WallSeconds:    time.Since(m.start).Seconds(),
	}, nil
}

func readCPU(pids []int) (machineTicks, uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineTicks{}, 0, fmt.Errorf("cpu time: %w", err)
	}
	machine, err := parseProcStat(string(b))
	if err != nil {
		return machineTicks{}, 0, err
	}
	var procs uint64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return machineTicks{}, 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
		}
		t, err := parsePIDStat(string(b))
		if err != nil {
			return machineTicks{}, 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
		}
		procs += t
	}
	return machine, procs, nil
}
