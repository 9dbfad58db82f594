package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vxland/vxland/internal/control"

	"github.com/vxland/vxland/internal/netlab"
)

// Progress says where a running bench is.
type Progress struct {
	Step, Steps   int // steps done before this one, and in all
	Round, Rounds int // Round from 0
	Config        Config
	Test          Test
	Elapsed       time.Duration // since the first measurement
}

// String is a one-line status, with an estimate of the time left once
// something has been measured.
func (p Progress) String() string {
	s := fmt.Sprintf("[%3d%%] round %d/%d  %-14s %-8s  elapsed %s",
		100*p.Step/max(p.Steps, 1), p.Round+1, p.Rounds, p.Config.Label(), p.Test, p.Elapsed.Truncate(time.Second))
	if p.Step > 0 {
		left := time.Duration(float64(p.Elapsed) / float64(p.Step) * float64(p.Steps-p.Step))
		s += fmt.Sprintf(", about %s left", left.Truncate(time.Second))
	}
	return s
}

// Run builds every configuration of o, measures them round by round and
// returns the results. progress, if not nil, is called before each test
// and while building. Everything Run creates is removed before it returns,
// also when ctx is cancelled (then it returns ctx's error).
func Run(ctx context.Context, o Options, progress func(string)) (res *Results, err error) {
	if progress == nil {
		progress = func(string) {}
	}
	o, err = o.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := Prerequisites(o); err != nil {
		return nil, err
	}
	lab, err := netlab.New(o.LabPrefix)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := lab.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
	}()
	workDir := o.WorkDir
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", "vxbench-"); err != nil {
			return nil, fmt.Errorf("work directory: %w", err)
		}
		defer os.RemoveAll(workDir)
	}

	res = &Results{Command: os.Args, Started: time.Now(), Machine: DescribeMachine(), Options: recordOptions(o)}
	if o.VxlandPath != "" {
		res.Machine.Vxland = describeBinary(o.VxlandPath)
	}
	if o.VxlandBasePath != "" {
		res.Machine.VxlandBase = describeBinary(o.VxlandBasePath)
	}
	topos := map[Config]*topology{}
	// Stopped daemons would not see the lab's SIGTERM: every one runs
	// again before the lab closes.
	defer func() {
		for _, t := range topos {
			t.run(true)
		}
	}()
	for _, c := range o.Configs {
		progress(fmt.Sprintf("building %s topology", c.Label()))
		t, err := buildTopology(ctx, lab, o, c, workDir)
		if err != nil {
			return nil, err
		}
		topos[c] = t
	}
	first := topos[o.Configs[0]].hosts[0]
	if out, err := first.Run("ethtool", "-k", underlayIf); err == nil {
		res.Machine.Offloads = parseEthtoolFeatures(out)
	}

	tests := AllTests
	if len(o.Tests) > 0 {
		tests = slices.DeleteFunc(slices.Clone(AllTests), func(t Test) bool { return !slices.Contains(o.Tests, t) })
	}
	if kt := topos[KernelVXLAN]; kt != nil && slices.Contains(tests, TestUDP64Paced) {
		for c, t := range topos {
			t.run(c == KernelVXLAN)
		}
		progress("measuring kernel VXLAN's UDP 64 B rate, which the paced runs offer")
		r := measure(ctx, kt, TestUDP64, o, 0)
		if r.UDP != nil {
			res.UDP64PacedKPPS = r.UDP.DeliveredPPS / 1e3
		}
	}
	if res.UDP64PacedKPPS <= 0 {
		tests = slices.DeleteFunc(slices.Clone(tests), func(t Test) bool { return t == TestUDP64Paced })
	}
	if len(o.VxlandCPUs) == 0 {
		tests = slices.DeleteFunc(slices.Clone(tests), func(t Test) bool { return t == TestIdle })
	}

	start := time.Now()
	steps := o.Rounds * len(o.Configs) * len(tests)
	step := 0
	for round := range o.Rounds {
		for pos, c := range RoundOrder(o.Configs, round) {
			for other, t := range topos {
				t.run(other == c)
			}
			for _, test := range tests {
				progress(Progress{Step: step, Steps: steps, Round: round, Rounds: o.Rounds,
					Config: c, Test: test, Elapsed: time.Since(start)}.String())
				r := measure(ctx, topos[c], test, o, res.UDP64PacedKPPS)
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("bench interrupted: %w", err)
				}
				r.Round, r.Position = round, pos
				res.Runs = append(res.Runs, r)
				step++
			}
		}
	}
	res.Summary = Aggregate(o.Configs, Samples(res.Runs))
	res.Overhead = overheads(o.Configs)
	res.Finished = time.Now()
	return res, nil
}

// Prerequisites returns an error saying what is missing to run o here.
func Prerequisites(o Options) error {
	if err := netlab.Check(); err != nil {
		return err
	}
	if err := CheckIperf3(); err != nil {
		return err
	}
	if _, err := exec.LookPath("ss"); err != nil {
		return fmt.Errorf("ss (iproute2) is needed: %w", err)
	}
	if len(o.AppCPUs)+len(o.VxlandCPUs) > 0 {
		if _, err := exec.LookPath("taskset"); err != nil {
			return fmt.Errorf("confining to CPUs needs taskset: install it with 'apt-get install util-linux': %w", err)
		}
	}
	if o.Mode == WireLike {
		if _, err := exec.LookPath("ethtool"); err != nil {
			return fmt.Errorf("the %s underlay needs ethtool: install it with 'apt-get install ethtool': %w", WireLike, err)
		}
	}
	for _, c := range o.Configs {
		if c == NativeRouting {
			if _, err := exec.LookPath("sysctl"); err != nil {
				return fmt.Errorf("%s needs sysctl: install it with 'apt-get install procps': %w", c, err)
			}
		}
	}
	return nil
}

// loadAvg returns the 1-minute load average, or 0 if it cannot be read.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// measure runs one test through t. Failures are recorded in the run, so
// that one bad run does not lose a whole bench. pacedKPPS is the rate of
// TestUDP64Paced.
func measure(ctx context.Context, t *topology, test Test, o Options, pacedKPPS float64) Measurement {
	r := Measurement{Config: t.config, Test: test, Start: time.Now(), LoadAvg: loadAvg()}
	var err error
	switch test {
	case TestTCP1, TestTCP4:
		streams := 1
		if test == TestTCP4 {
			streams = 4
		}
		var out []byte
		before := t.heapAlloc(ctx)
		var busy *cpusBusy
		if test == TestTCP1 && len(o.VxlandCPUs) > 0 {
			busy, err = startCPUsBusy(o.VxlandCPUs)
		}
		if err == nil {
			out, r.CPU, err = iperfClient(ctx, t.src, t.dstIP, o.Duration, o.AppCPUs, []string{"--parallel", fmt.Sprint(streams)}, t.vxlandPIDs())
		}
		if err == nil && busy != nil {
			r.VxlandCPUsBusy, err = busyPointer(busy.stop())
		}
		if err == nil {
			r.TCP, err = parseTCP(out, streams)
		}
		if after := t.heapAlloc(ctx); len(before) == len(after) {
			for i := range after {
				r.VxlandHeapAlloc = append(r.VxlandHeapAlloc, after[i]-before[i])
			}
		}
	case TestUDP64, TestUDP64Paced, TestUDP1400:
		payload := 64
		if test == TestUDP1400 {
			payload = 1400
		}
		// iperf3's --bitrate counts payload bits.
		bitrate := "0"
		if test == TestUDP64Paced {
			bitrate = fmt.Sprint(int64(pacedKPPS * 1e3 * float64(payload) * 8))
		}
		var out []byte
		before, berr := rcvbufErrors(t.dst)
		out, r.CPU, err = iperfClient(ctx, t.src, t.dstIP, o.Duration, o.AppCPUs,
			[]string{"--udp", "--length", fmt.Sprint(payload), "--bitrate", bitrate}, t.vxlandPIDs())
		if err == nil {
			r.UDP, err = parseUDP(out, payload)
		}
		if r.UDP != nil {
			r.UDP.SocketDrops = -1
			if after, aerr := rcvbufErrors(t.dst); berr == nil && aerr == nil {
				r.UDP.SocketDrops = after - before
			}
		}
	case TestRTT:
		r.RTT, err = measureRTT(ctx, t.src, t.dstIP, o.RTTSamples, o.RTTInterval, o.AppCPUs)
	case TestRTTFast:
		r.RTT, err = measureRTT(ctx, t.src, t.dstIP, fastRTTFactor*o.RTTSamples, FastRTTInterval, o.AppCPUs)
	case TestRTTLoaded:
		r.RTT, err = rttUnderLoad(ctx, t, o)
	case TestIdle:
		var busy *cpusBusy
		if busy, err = startCPUsBusy(o.VxlandCPUs); err == nil {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			r.VxlandCPUsBusy, err = busyPointer(busy.stop())
		}
	case TestRR:
		r.RR, err = requestResponse(ctx, t.src, t.dst, t.dstIP, o.Duration, o.AppCPUs)
	default:
		err = fmt.Errorf("unknown test %q", test)
	}
	if err != nil {
		r.Error = err.Error()
		for _, p := range t.vxland {
			select {
			case <-p.Done():
				r.Error += fmt.Sprintf("; vxland in %s has exited: %v\n%s", p.NS, p.Wait(), p.Output())
			default:
			}
		}
	}
	return r
}

func busyPointer(pct float64, err error) (*float64, error) {
	if err != nil {
		return nil, err
	}
	return &pct, nil
}

// rcvbufErrors reads the UDP RcvbufErrors counter of ns: datagrams its
// sockets dropped because their receive buffer was full.
func rcvbufErrors(ns *netlab.NS) (int64, error) {
	out, err := ns.Run("cat", "/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	return parseRcvbufErrors(out)
}

// parseRcvbufErrors finds RcvbufErrors in the Udp lines of /proc/net/snmp.
func parseRcvbufErrors(snmp string) (int64, error) {
	var names []string
	for line := range strings.Lines(snmp) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				return strconv.ParseInt(f[i], 10, 64)
			}
		}
	}
	return 0, errors.New("no Udp RcvbufErrors in /proc/net/snmp")
}

// heapAlloc reads each vxland's cumulative heap allocation; nil when one
// does not answer.
func (t *topology) heapAlloc(ctx context.Context) []uint64 {
	var out []uint64
	for _, sock := range t.vxlandSocks {
		var rt control.Runtime
		getCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := control.Get(getCtx, sock, "/runtime", &rt)
		cancel()
		if err != nil {
			return nil
		}
		out = append(out, rt.HeapAllocBytes)
	}
	return out
}
