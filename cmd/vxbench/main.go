// Command vxbench measures the overhead of encapsulation: it builds the same
// two-host topology in network namespaces for the bare underlay, native
// routing, the kernel's VXLAN and vxland, measures throughput, packet rate,
// latency and CPU cost in interleaved rounds, and writes a Markdown table, a
// JSON file with every run and an SVG chart to a results directory.
//
//	vxbench --vxland bin/vxland            # full run, about 15 minutes
//	vxbench --vxland bin/vxland --quick    # under two minutes
//	vxbench --vxland bin/vxland --vxland-base old/vxland   # also the build to compare with
//
// With --vxland-base, a second vxland executable runs as configuration
// vxland-base, exactly as vxland runs, in the same rounds, and the report
// gives vxland ÷ vxland-base for every measure. Configuration vxland-poll
// is vxland with the flags of --poll-flags added (default --poll=always);
// naming it in --configs, or giving --poll-flags, measures it.
//
// It needs root, iproute2 and iperf3; as root it installs a missing iperf3
// with apt-get unless --no-install is given. Everything it creates is
// removed when it ends, also on Ctrl-C or SIGTERM.
//
// Exit status: 0 on success, 1 when the bench fails, 2 for a bad flag or a
// missing prerequisite, 130 when interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/vxland/vxland/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("vxbench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	quick := fs.Bool("quick", false, fmt.Sprintf("short run: %d rounds of %v per test (under two minutes)", bench.Quick.Rounds, bench.Quick.Duration))
	rounds := fs.Int("rounds", bench.Full.Rounds, "rounds; every configuration runs every test once per round")
	duration := fs.Duration("duration", bench.Full.Duration, "length of each iperf3 run (whole seconds)")
	rttSamples := fs.Int("rtt-samples", bench.Full.RTTSamples, "ICMP echo requests per configuration and round")
	rttInterval := fs.Duration("rtt-interval", bench.Full.RTTInterval, "time between echo requests")
	mtu := fs.Int("mtu", 1500, "MTU of the underlay veth (overlay containers get 50 less)")
	mode := fs.String("underlay", string(bench.DefaultOffloads), `underlay offloads: "default" (veth as created) or "wire-like" (segmentation offloads off, GRO on, as a real NIC)`)
	tests := fs.StringSlice("tests", nil, fmt.Sprintf("tests to run, comma-separated, e.g. rtt,rtt-1ms,rr for latency alone (default all: %v)", bench.AllTests))
	configs := fs.StringSlice("configs", nil, "configurations to measure, comma-separated (default all: underlay,native-routing,kernel-vxlan,vxland, vxland-base with --vxland-base, vxland-poll with --poll-flags)")
	vxland := fs.String("vxland", "", `vxland executable (default: "vxland" beside this program)`)
	vxlandBase := fs.String("vxland-base", "", "a second vxland executable, e.g. the build before a change, measured as configuration vxland-base with the same flags and CPUs")
	vxlandFlags := fs.StringArray("vxland-flag", nil, `flag passed to vxland (and to vxland-base), e.g. --vxland-flag=--queues=1; repeatable`)
	pollFlags := fs.String("poll-flags", "--poll=always", "flags, space-separated, that configuration vxland-poll adds to vxland's; giving them adds vxland-poll to the default configurations")
	out := fs.String("out", "", "results directory (default results/<timestamp>)")
	noInstall := fs.Bool("no-install", false, "do not install a missing iperf3 with apt-get")
	appCPUs := fs.String("app-cpus", "", `CPUs for the applications (iperf3, echo requests), e.g. "0"; with --vxland-cpus, gives vxland cores of its own (default: all)`)
	vxlandCPUs := fs.String("vxland-cpus", "", `CPUs for vxland, e.g. "1" (default: all)`)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vxbench: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vxbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}

	o := bench.Options{Rounds: *rounds, Duration: *duration, RTTSamples: *rttSamples, RTTInterval: *rttInterval, MTU: *mtu}
	if *quick {
		// Explicit flags still win over the preset.
		p := bench.Quick
		set := func(name string) bool { return fs.Changed(name) }
		if !set("rounds") {
			o.Rounds = p.Rounds
		}
		if !set("duration") {
			o.Duration = p.Duration
		}
		if !set("rtt-samples") {
			o.RTTSamples = p.RTTSamples
		}
		if !set("rtt-interval") {
			o.RTTInterval = p.RTTInterval
		}
	}
	var err error
	if o.Mode, err = bench.ParseUnderlayMode(*mode); err != nil {
		fmt.Fprintf(stderr, "vxbench: --underlay: %v\n", err)
		return 2
	}
	for _, s := range *configs {
		c, err := bench.ParseConfig(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintf(stderr, "vxbench: --configs: %v\n", err)
			return 2
		}
		o.Configs = append(o.Configs, c)
	}
	for _, s := range *tests {
		t, err := bench.ParseTest(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintf(stderr, "vxbench: --tests: %v\n", err)
			return 2
		}
		o.Tests = append(o.Tests, t)
	}
	switch named := slices.Contains(o.Configs, bench.VxlandBase); {
	case named && *vxlandBase == "":
		fmt.Fprintf(stderr, "vxbench: --configs: %s needs --vxland-base, the executable to run as it\n", bench.VxlandBase)
		return 2
	case !named && len(o.Configs) > 0 && *vxlandBase != "":
		fmt.Fprintf(stderr, "vxbench: --vxland-base: --configs does not name %s\n", bench.VxlandBase)
		return 2
	}
	switch named := slices.Contains(o.Configs, bench.VxlandPoll); {
	case !named && len(o.Configs) > 0 && fs.Changed("poll-flags"):
		fmt.Fprintf(stderr, "vxbench: --poll-flags: --configs does not name %s\n", bench.VxlandPoll)
		return 2
	case named || fs.Changed("poll-flags"):
		if o.PollFlags, err = bench.ParseExtraFlags(*pollFlags); err != nil {
			fmt.Fprintf(stderr, "vxbench: --poll-flags: %v\n", err)
			return 2
		}
	}
	for _, f := range []struct {
		name string
		val  string
		dst  *[]int
	}{{"app-cpus", *appCPUs, &o.AppCPUs}, {"vxland-cpus", *vxlandCPUs, &o.VxlandCPUs}} {
		if f.val == "" {
			continue
		}
		if *f.dst, err = bench.ParseCPUList(f.val); err == nil {
			err = bench.CheckCPUs(*f.dst)
		}
		if err != nil {
			fmt.Fprintf(stderr, "vxbench: --%s: %v\n", f.name, err)
			return 2
		}
	}
	o.VxlandFlags = *vxlandFlags
	if *vxland == "" {
		if exe, err := os.Executable(); err == nil {
			*vxland = filepath.Join(filepath.Dir(exe), "vxland")
		}
	}
	if o.VxlandPath, err = executable(*vxland); err != nil {
		fmt.Fprintf(stderr, "vxbench: vxland executable: %v (build it with 'make build', or name it with --vxland)\n", err)
		return 2
	}
	if *vxlandBase != "" {
		if o.VxlandBasePath, err = executable(*vxlandBase); err != nil {
			fmt.Fprintf(stderr, "vxbench: --vxland-base: %v\n", err)
			return 2
		}
	}
	dir := *out
	if dir == "" {
		dir = filepath.Join("results", time.Now().Format("20060102-150405"))
	}

	if err := bench.CheckIperf3(); err != nil {
		if *noInstall || os.Geteuid() != 0 {
			fmt.Fprintf(stderr, "vxbench: %v\n", err)
			return 2
		}
		if err := installIperf3(stderr); err != nil {
			fmt.Fprintf(stderr, "vxbench: %v\n", err)
			return 2
		}
	}
	if err := bench.Prerequisites(o); err != nil {
		fmt.Fprintf(stderr, "vxbench: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	stopNotice := context.AfterFunc(ctx, func() {
		fmt.Fprintln(stderr, "\nvxbench: interrupted, removing the namespaces and processes it created…")
	})

	status := newStatusLine(stderr)
	res, err := bench.Run(ctx, o, status.show)
	stopNotice()
	status.done()
	if err != nil {
		fmt.Fprintf(stderr, "vxbench: %v\n", err)
		if ctx.Err() != nil {
			return 130
		}
		return 1
	}
	if err := bench.Write(dir, res); err != nil {
		fmt.Fprintf(stderr, "vxbench: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, bench.Markdown(res))
	fmt.Fprintf(stdout, "Results: %s/{%s,%s,%s}\n", dir, bench.MarkdownFile, bench.JSONFile, bench.SVGFile)
	return 0
}

// executable checks that path exists and makes it absolute.
func executable(path string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return "", err
	}
	return filepath.Abs(path)
}

// installIperf3 installs iperf3 with apt-get, telling the user first.
func installIperf3(stderr io.Writer) error {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("iperf3 is missing and there is no apt-get here: install the iperf3 package with your package manager")
	}
	fmt.Fprintln(stderr, "vxbench: iperf3 is missing; installing it: apt-get update && apt-get install -y iperf3")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "iperf3"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w (install iperf3 yourself, or run as root)", strings.Join(args, " "), err)
		}
	}
	return bench.CheckIperf3()
}

// statusLine rewrites one line in place on a terminal and prints one line
// per update elsewhere (logs, CI).
type statusLine struct {
	w    io.Writer
	tty  bool
	last int
}

func newStatusLine(w io.Writer) *statusLine {
	s := &statusLine{w: w}
	if f, ok := w.(*os.File); ok {
		fi, err := f.Stat()
		s.tty = err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	return s
}

func (s *statusLine) show(line string) {
	if !s.tty {
		fmt.Fprintln(s.w, line)
		return
	}
	pad := max(s.last-len(line), 0)
	fmt.Fprintf(s.w, "\r%s%s", line, strings.Repeat(" ", pad))
	s.last = len(line)
}

func (s *statusLine) done() {
	if s.tty && s.last > 0 {
		fmt.Fprintln(s.w)
	}
}
