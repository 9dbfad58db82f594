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
	return parseCPUTicks(f)
}

// parseProcStatCPUs reads the per-CPU lines ("cpu0", "cpu1", …) of
// /proc/stat, by CPU number.
func parseProcStatCPUs(s string) (map[int]machineTicks, error) {
	out := map[int]machineTicks{}
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil {
			return nil, fmt.Errorf("/proc/stat: CPU line %q", f[0])
		}
		if out[n], err = parseCPUTicks(f); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, errors.New("/proc/stat: no per-CPU lines")
	}
	return out, nil
}

// parseCPUTicks sums the times of one /proc/stat CPU line, split into
// fields with its name first.
func parseCPUTicks(f []string) (machineTicks, error) {
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

// cpusBusy measures how busy some CPUs are between start and stop.
type cpusBusy struct {
	cpus  []int
	start map[int]machineTicks
}

func startCPUsBusy(cpus []int) (*cpusBusy, error) {
	t, err := readProcStatCPUs()
	if err != nil {
		return nil, err
	}
	return &cpusBusy{cpus: cpus, start: t}, nil
}

// stop returns the share of time, in percent, the CPUs were busy since
// start: their busy ticks over their ticks in all.
func (b *cpusBusy) stop() (float64, error) {
	end, err := readProcStatCPUs()
	if err != nil {
		return 0, err
	}
	return busyPercent(b.start, end, b.cpus)
}

// busyPercent is the share of cpus' ticks between two readings that were
// busy.
func busyPercent(start, end map[int]machineTicks, cpus []int) (float64, error) {
	var busy, total uint64
	for _, c := range cpus {
		s, ok1 := start[c]
		e, ok2 := end[c]
		if !ok1 || !ok2 {
			return 0, fmt.Errorf("/proc/stat: no line for CPU %d", c)
		}
		busy += e.busy - s.busy
		total += e.total - s.total
	}
	if total == 0 {
		return 0, errors.New("/proc/stat: no time passed on the CPUs")
	}
	return 100 * float64(busy) / float64(total), nil
}

func readProcStatCPUs() (map[int]machineTicks, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, fmt.Errorf("cpu time: %w", err)
	}
	return parseProcStatCPUs(string(b))
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
