// Command vxctlbench measures vxland's etcd control plane at scale: a real
// three-member etcd cluster on loopback and many simulated hosts, each a
// real discovery agent with its own etcd client (package bench/control).
// It prints a Markdown table and writes it with an SVG chart to a results
// directory.
//
//	vxctlbench                      # 50 hosts × 10 MACs, under three minutes
//	vxctlbench --full               # 100, 300 and 1000 hosts
//	vxctlbench --hosts 300 --macs 10
//	vxctlbench --hosts 100 --macs 100 --real-host bin/vxland   # as root
//
// Exit status: 0 on success, 1 when the bench fails, 2 for a bad flag,
// 130 when interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/vxland/vxland/bench"
	"github.com/vxland/vxland/bench/control"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// fullSizes are the host counts of --full.
var fullSizes = []int{100, 300, 1000}

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("vxctlbench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	hosts := fs.IntSlice("hosts", []int{50}, "simulated hosts; a list measures each size in turn")
	full := fs.Bool("full", false, fmt.Sprintf("measure %v hosts (unless --hosts is given) and churn for --churn 30s", fullSizes))
	macs := fs.Int("macs", 10, "MACs each host publishes")
	publishRate := fs.Int("publish-rate", 500, "MACs per second all hosts together publish in the publication phase")
	churnRate := fs.Float64("churn-rate", 0.01, "share of all MACs that move to another host each second in the churn phase")
	churn := fs.Duration("churn", 10*time.Second, "length of the churn phase")
	wait := fs.Duration("wait", 60*time.Second, "longest wait for any one convergence")
	out := fs.String("out", "", "results directory (default results/control-<timestamp>)")
	realHost := fs.String("real-host", "", "path of a vxland binary: after the publication, a real vxland joins from a network-namespace host (needs root)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (etcd members, agents and bench) to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vxctlbench: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vxctlbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *full {
		if !fs.Changed("hosts") {
			*hosts = fullSizes
		}
		if !fs.Changed("churn") {
			*churn = 30 * time.Second
		}
	}
	for _, check := range []struct {
		flag string
		bad  bool
		want string
	}{
		{"hosts", len(*hosts) == 0 || slices.Min(*hosts) < 2 || slices.Max(*hosts) > 60000, "between 2 and 60000"},
		{"macs", *macs < 1 || slices.Max(*hosts)**macs > 1_000_000, "at least 1, and at most 1,000,000 MACs in all"},
		{"publish-rate", *publishRate < 1, "at least 1"},
		{"churn-rate", !(*churnRate > 0 && *churnRate <= 1), "above 0 and at most 1"},
		{"churn", *churn <= 0, "positive"},
		{"wait", *wait <= 0, "positive"},
	} {
		if check.bad {
			fmt.Fprintf(stderr, "vxctlbench: --%s must be %s\n", check.flag, check.want)
			return 2
		}
	}
	if *realHost != "" {
		if fi, err := os.Stat(*realHost); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			fmt.Fprintf(stderr, "vxctlbench: --real-host %q is not an executable file\n", *realHost)
			return 2
		}
	}
	if *out == "" {
		*out = filepath.Join("results", "control-"+time.Now().UTC().Format("20060102-150405"))
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "vxctlbench: --cpuprofile: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "vxctlbench: --cpuprofile: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "vxctlbench-")
	if err != nil {
		fmt.Fprintf(stderr, "vxctlbench: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)

	var results []*control.Result
	failed := false
	for _, n := range *hosts {
		res, err := control.Run(ctx, control.Options{
			Hosts: n, MACs: *macs, PublishRate: *publishRate,
			ChurnRate: *churnRate, Churn: *churn, Wait: *wait, Vxland: *realHost,
			Dir:      filepath.Join(dir, fmt.Sprint(n)),
			Progress: func(format string, args ...any) { fmt.Fprintf(stderr, "vxctlbench: "+format+"\n", args...) },
		})
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "vxctlbench: interrupted")
			return 130
		}
		if err != nil {
			// The next size may still tell something, and so may this
			// one's phases before the failure; the exit status says
			// that one failed.
			fmt.Fprintf(stderr, "vxctlbench: %d hosts: %v\n", n, err)
			failed = true
		}
		if res != nil {
			results = append(results, res)
		}
	}
	if len(results) == 0 {
		return 1
	}
	m := bench.DescribeMachine()
	report := fmt.Sprintf("Machine: %s × %d cores (%s), Linux %s, %s.\n\n%s", m.CPUModel, m.Cores, m.Arch, m.Kernel, m.GoVersion, control.Markdown(results))
	fmt.Fprint(stdout, report)
	if err := writeResults(*out, report, results, m); err != nil {
		fmt.Fprintf(stderr, "vxctlbench: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "vxctlbench: wrote %s\n", *out)
	if failed {
		return 1
	}
	return 0
}

func writeResults(dir, report string, results []*control.Result, m bench.Machine) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(report), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "control.svg"))
	if err != nil {
		return err
	}
	if err := control.WriteSVG(f, results, m); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
