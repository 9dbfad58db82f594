package bench

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// ParseCPUList parses a CPU list as taskset(1) and cpuset(7) write it:
// numbers and ranges separated by commas, such as "0", "1,3" or "0-2,5".
// It returns the CPUs sorted, without repeats. CPU numbers stop at
// maxCPU, as the kernel's do (CONFIG_NR_CPUS).
func ParseCPUList(s string) ([]int, error) {
	var cpus []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("%q is not a CPU list (e.g. 0, 1,3 or 0-2)", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("%q is not a CPU list (e.g. 0, 1,3 or 0-2)", s)
			}
		}
		if b > maxCPU {
			return nil, fmt.Errorf("%q: CPU %d is above the kernel's %d", s, b, maxCPU)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	slices.Sort(cpus)
	return slices.Compact(cpus), nil
}

// maxCPU is the highest CPU number Linux can have (CONFIG_NR_CPUS 8192).
const maxCPU = 8191

// formatCPUList writes cpus as a list ParseCPUList and taskset read.
func formatCPUList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// CheckCPUs says which of cpus this machine lacks.
func CheckCPUs(cpus []int) error {
	for _, c := range cpus {
		if c >= runtime.NumCPU() {
			return fmt.Errorf("CPU %d does not exist here (CPUs 0-%d)", c, runtime.NumCPU()-1)
		}
	}
	return nil
}

// pinned returns the command args confined to cpus with taskset, or args
// as they are when cpus is empty.
func pinned(cpus []int, args ...string) []string {
	if len(cpus) == 0 {
		return args
	}
	return append([]string{"taskset", "--cpu-list", formatCPUList(cpus)}, args...)
}

// cpuListOrAll is formatCPUList, or "all" for no confinement.
func cpuListOrAll(cpus []int) string {
	if len(cpus) == 0 {
		return "all"
	}
	return formatCPUList(cpus)
}
