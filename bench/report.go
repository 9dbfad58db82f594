package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Markdown renders res as the tables people read: medians with min–max,
// ratios, CPU cost and the computed overhead.
func Markdown(res *Results) string {
	var b strings.Builder
	o := res.Options
	m := res.Machine
	fmt.Fprintf(&b, "# vxland bench: %s underlay, MTU %d\n\n", o.Mode, o.MTU)
	fmt.Fprintf(&b, "%s; %d round(s), configurations interleaved with the order rotated each round; "+
		"iperf3 runs of %gs; %d ICMP echo requests per round every %gms; UDP offered load %s.\n\n",
		res.Started.UTC().Format("2006-01-02 15:04 UTC"), o.Rounds, o.DurationS, o.RTTSamples, o.RTTIntervalMS, o.UDPOffered)
	fmt.Fprintf(&b, "Machine: %d × %s (%s); Linux %s; %s; %s; underlay veth offloads: %s.\n\n",
		m.Cores, m.CPUModel, m.Arch, m.Kernel, m.GoVersion, m.Iperf3Version, m.OffloadSummary())
	if m.Vxland != "" {
		fmt.Fprintf(&b, "vxland build: %s.\n\n", m.Vxland)
	}
	if m.VxlandBase != "" {
		fmt.Fprintf(&b, "vxland base build: %s.\n\n", m.VxlandBase)
	}
	if len(o.PollFlags) > 0 {
		fmt.Fprintf(&b, "%s: vxland with `%s` added to its flags.\n\n", VxlandPoll.Label(), strings.Join(o.PollFlags, " "))
	}
	if len(o.AppCPUs)+len(o.VxlandCPUs) > 0 {
		fmt.Fprintf(&b, "CPUs: applications (iperf3, echo requests) on %s, vxland on %s; "+
			"the kernel's VXLAN runs in the applications' context.\n\n", cpuListOrAll(o.AppCPUs), cpuListOrAll(o.VxlandCPUs))
	}
	if len(res.Command) > 0 {
		fmt.Fprintf(&b, "Command: `%s`\n\n", strings.Join(res.Command, " "))
	}
	var loads []float64
	for _, r := range res.Runs {
		loads = append(loads, r.LoadAvg)
	}
	if l := Summarize(loads); l.N > 0 {
		fmt.Fprintf(&b, "Load average (1 min) as runs started: median %s, max %s on %d cores; "+
			"the bench alone keeps it near 2, more means other work shared the machine.\n\n",
			FormatValue(l.Median), FormatValue(l.Max), m.Cores)
	}
	if n := failedRuns(res.Runs); n > 0 {
		fmt.Fprintf(&b, "**%d run(s) failed**; their errors are in %s.\n\n", n, JSONFile)
	}

	if res.UDP64PacedKPPS > 0 {
		fmt.Fprintf(&b, "UDP 64 B paced: %s kpps offered by one sender, the rate kernel VXLAN delivered "+
			"of unlimited 64 B datagrams in a run before the rounds.\n\n", FormatValue(res.UDP64PacedKPPS))
	}
	b.WriteString("Median over rounds, (min–max) when there were several.\n\n")
	b.WriteString("## Throughput and latency\n\n")
	table(&b, res.Summary, []column{
		{"TCP ×1 (Gbit/s)", metricCell(MetricTCP1)},
		{"TCP ×4 (Gbit/s)", metricCell(MetricTCP4)},
		{"UDP 64 B (kpps)", metricCell(MetricUDP64Rate)},
		{"loss %", metricCell(MetricUDP64Loss)},
		{"UDP 64 B paced (kpps)", metricCell(MetricUDP64PacedRate)},
		{"loss %", metricCell(MetricUDP64PacedLoss)},
		{"UDP 1400 B (kpps)", metricCell(MetricUDP1400Rate)},
		{"loss %", metricCell(MetricUDP1400Loss)},
		{"RTT p50 (µs)", metricCell(MetricRTTP50)},
		{"RTT p99 (µs)", metricCell(MetricRTTP99)},
	})

	fmt.Fprintf(&b, "## Latency\n\n"+
		"ICMP echo round trips every %gms (as above) and every %gms, the latter also while one TCP stream "+
		"runs through the same path (TCP load); TCP request/response: a 1-byte request "+
		"answered by a 1-byte response, one at a time, for %gs (TCP_NODELAY), in thousands of transactions/s "+
		"and the time of one.\n\n", o.RTTIntervalMS, float64(FastRTTInterval)/float64(time.Millisecond), o.DurationS)
	table(&b, res.Summary, []column{
		{fmt.Sprintf("RTT p50, %gms (µs)", o.RTTIntervalMS), metricCell(MetricRTTP50)},
		{fmt.Sprintf("RTT p99, %gms (µs)", o.RTTIntervalMS), metricCell(MetricRTTP99)},
		{"RTT p50, 1ms (µs)", metricCell(MetricRTTFastP50)},
		{"RTT p99, 1ms (µs)", metricCell(MetricRTTFastP99)},
		{"RTT p50, 1ms, TCP load (µs)", metricCell(MetricRTTLoadedP50)},
		{"RTT p99, 1ms, TCP load (µs)", metricCell(MetricRTTLoadedP99)},
		{"request/response (k/s)", metricCell(MetricRRRate)},
		{"RR p50 (µs)", metricCell(MetricRRP50)},
		{"RR p99 (µs)", metricCell(MetricRRP99)},
	})
	if cpu := rrClientCPU(res.Runs); cpu.N > 0 {
		fmt.Fprintf(&b, "The request/response client's thread was busy %s %% of the run (median; max %s %%): "+
			"below 100 %% it waited for the path, which then set the rate.\n\n", FormatValue(cpu.Median), FormatValue(cpu.Max))
	}

	ratioMetrics := []struct {
		m    Metric
		head string
	}{
		{MetricTCP1, "TCP ×1"}, {MetricTCP4, "TCP ×4"},
		{MetricUDP64Rate, "UDP 64 B"}, {MetricUDP64PacedRate, "UDP 64 B paced"}, {MetricUDP1400Rate, "UDP 1400 B"},
		{MetricRTTP50, "RTT p50"}, {MetricRTTFastP50, "RTT p50, 1ms"}, {MetricRTTFastP99, "RTT p99, 1ms"},
		{MetricRTTLoadedP99, "RTT p99, TCP load"},
		{MetricRRRate, "request/response"}, {MetricRRP99, "RR p99"}, {MetricCPUMachine, "CPU/Gbit"},
	}
	for _, ref := range []struct {
		c     Config
		title string
		get   func(ConfigSummary) map[Metric]Summary
	}{
		{KernelVXLAN, "Relative to kernel VXLAN", func(s ConfigSummary) map[Metric]Summary { return s.VsKernelVXLAN }},
		{Underlay, "Relative to the underlay", func(s ConfigSummary) map[Metric]Summary { return s.VsUnderlay }},
	} {
		if !hasConfig(res.Summary, ref.c) {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\nRatio within each round, then the median over rounds (min–max); "+
			"above 1 means more throughput, or more latency or CPU, than %s.\n\n", ref.title, ref.c.Label())
		var cols []column
		for _, rm := range ratioMetrics {
			cols = append(cols, column{rm.head, func(s ConfigSummary) string {
				if s.Config == ref.c {
					return "1"
				}
				return ratioCell(ref.get(s)[rm.m], ref.get(s) != nil)
			}})
		}
		table(&b, res.Summary, cols)
	}
	writeVsBase(&b, res.Summary)

	b.WriteString("## Where UDP datagrams were lost\n\n")
	b.WriteString("Of the datagrams sent, the share that crossed the path but was dropped by the receiving " +
		"iperf3's full socket buffer (UDP RcvbufErrors in its namespace): the receiving application " +
		"lacked CPU. The rest of the loss in the tables above happened on the way.\n\n")
	table(&b, res.Summary, []column{
		{"UDP 64 B (%)", metricCell(MetricUDP64SocketLoss)},
		{"UDP 64 B paced (%)", metricCell(MetricUDP64PacedSocketLoss)},
		{"UDP 1400 B (%)", metricCell(MetricUDP1400SocketLoss)},
	})

	b.WriteString("## CPU cost and encapsulation overhead\n\n")
	b.WriteString("CPU time during the TCP tests per gigabit delivered. The whole-machine figure includes " +
		"iperf3 at both ends. Overhead and goodput efficiency are computed: TCP payload per full-size " +
		"packet through the configuration ÷ over the bare underlay at the same MTU (inner TCP/IPv4 with " +
		"timestamps, 52 B of headers).\n\n")
	eff := map[Config]Overhead{}
	for _, ov := range res.Overhead {
		if ov.Family == "IPv4" {
			eff[ov.Config] = ov
		}
	}
	cols := []column{
		{"CPU-s/Gbit, machine", metricCell(MetricCPUMachine)},
		{"CPU-s/Gbit, vxland", metricCell(MetricCPUVxland)},
		{"overhead (B/packet)", func(s ConfigSummary) string { return fmt.Sprint(eff[s.Config].BytesPerPacket) }},
	}
	for i, mtu := range EfficiencyMTUs {
		cols = append(cols, column{fmt.Sprintf("efficiency, MTU %d", mtu), func(s ConfigSummary) string {
			e := eff[s.Config].Efficiency
			if i >= len(e) {
				return "–"
			}
			return fmt.Sprintf("%.1f %%", 100*e[i].Efficiency)
		}})
	}
	table(&b, res.Summary, cols)
	if len(o.VxlandCPUs) > 0 {
		fmt.Fprintf(&b, "Busy time of vxland's CPUs (%s, /proc/stat), in percent of their time: during a quiet "+
			"second with no traffic, and during TCP ×1. Configurations without vxland show what the others "+
			"leave on those CPUs.\n\n", formatCPUList(o.VxlandCPUs))
		table(&b, res.Summary, []column{
			{"busy, idle (%)", metricCell(MetricVxlandCPUsBusyIdle)},
			{"busy, TCP ×1 (%)", metricCell(MetricVxlandCPUsBusyTCP1)},
		})
	}
	if n, max := heapGrowth(res); n > 0 {
		fmt.Fprintf(&b, "vxland's heap allocation during each TCP run (cumulative, from runtime/metrics, "+
			"per daemon): at most %s over %d daemon-runs of %s; the target is under 1 MB per 10 s.\n\n",
			FormatBytes(max), n, fmt.Sprintf("%gs", res.Options.DurationS))
	}
	for _, ov := range res.Overhead {
		if ov.Family != "IPv6" || ov.Config != KernelVXLAN {
			continue
		}
		fmt.Fprintf(&b, "On an IPv6 underlay VXLAN costs %d B per packet:", ov.BytesPerPacket)
		for _, e := range ov.Efficiency {
			fmt.Fprintf(&b, " %.1f %% at MTU %d;", 100*e.Efficiency, e.MTU)
		}
		b.WriteString(" the same for kernel VXLAN and vxland.\n\n")
	}
	return b.String()
}

// vsBaseMetrics are the rows of the comparison of vxland with vxland base.
var vsBaseMetrics = []Metric{
	MetricTCP1, MetricTCP4, MetricUDP64Rate, MetricUDP64PacedRate, MetricUDP1400Rate,
	MetricRTTP50, MetricRTTP99, MetricRTTFastP50, MetricRTTFastP99, MetricRTTLoadedP50, MetricRTTLoadedP99, MetricRRRate, MetricRRP50, MetricRRP99,
	MetricCPUMachine, MetricCPUVxland,
}

// writeVsBase renders the build under test against the base build, one
// row per measure, when both were measured.
func writeVsBase(b *strings.Builder, rows []ConfigSummary) {
	var vx, base *ConfigSummary
	for i := range rows {
		switch rows[i].Config {
		case Vxland:
			vx = &rows[i]
		case VxlandBase:
			base = &rows[i]
		}
	}
	if vx == nil || base == nil {
		return
	}
	fmt.Fprintf(b, "## %s relative to %s\n\n", Vxland.Label(), VxlandBase.Label())
	fmt.Fprintf(b, "The build under test ÷ the base build, within each round, then the median over rounds (min–max); "+
		"above 1 means more throughput, or more latency or CPU, than %s.\n\n", VxlandBase.Label())
	fmt.Fprintf(b, "| measure | %s | %s | %s ÷ %s |\n|---|---:|---:|---:|\n",
		Vxland.Label(), VxlandBase.Label(), Vxland.Label(), VxlandBase.Label())
	for _, m := range vsBaseMetrics {
		if _, ok := vx.Metrics[m]; !ok {
			continue
		}
		ratio, ok := vx.VsVxlandBase[m]
		info := m.Info()
		fmt.Fprintf(b, "| %s (%s) | %s | %s | %s |\n", info.Name, info.Unit,
			metricCell(m)(*vx), metricCell(m)(*base), ratioCell(ratio, ok))
	}
	b.WriteString("\n")
}

type column struct {
	head string
	cell func(ConfigSummary) string
}

func table(b *strings.Builder, rows []ConfigSummary, cols []column) {
	b.WriteString("| configuration |")
	for _, c := range cols {
		fmt.Fprintf(b, " %s |", c.head)
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s |", r.Config.Label())
		for _, c := range cols {
			fmt.Fprintf(b, " %s |", c.cell(r))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func metricCell(m Metric) func(ConfigSummary) string {
	return func(s ConfigSummary) string {
		sum, ok := s.Metrics[m]
		if !ok || sum.N == 0 {
			return "–"
		}
		return summaryText(sum, "")
	}
}

func ratioCell(s Summary, ok bool) string {
	if !ok || s.N == 0 {
		return "–"
	}
	return summaryText(s, "×")
}

func summaryText(s Summary, suffix string) string {
	if s.N == 1 || FormatValue(s.Min) == FormatValue(s.Max) {
		return FormatValue(s.Median) + suffix
	}
	return fmt.Sprintf("%s%s (%s–%s)", FormatValue(s.Median), suffix, FormatValue(s.Min), FormatValue(s.Max))
}

// FormatValue prints v with three significant digits, or as an integer
// from 100 on, never in exponent form: 1234, 12.3, 1.23, 0.123, 0.0012.
func FormatValue(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	if v == 0 {
		return "0"
	}
	if math.Abs(v) >= 99.95 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	// Round first, so that 9.9999 is "10.0" and not "10.00".
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 3, 64), 64)
	decimals := max(0, 2-int(math.Floor(math.Log10(math.Abs(r)))))
	if math.Abs(r) < 0.01 {
		decimals = max(0, 1-int(math.Floor(math.Log10(math.Abs(r)))))
	}
	return strconv.FormatFloat(r, 'f', decimals, 64)
}

func hasConfig(rows []ConfigSummary, c Config) bool {
	for _, r := range rows {
		if r.Config == c {
			return true
		}
	}
	return false
}

// rrClientCPU summarises how busy the request/response client was.
func rrClientCPU(runs []Measurement) Summary {
	var vs []float64
	for _, r := range runs {
		if r.RR != nil && r.Error == "" {
			vs = append(vs, r.RR.ClientCPUPercent)
		}
	}
	return Summarize(vs)
}

func failedRuns(runs []Measurement) int {
	n := 0
	for _, r := range runs {
		if r.Error != "" {
			n++
		}
	}
	return n
}

// heapGrowth returns how many vxland daemon-runs reported their heap
// allocation during TCP tests, and the largest growth.
func heapGrowth(res *Results) (n int, max uint64) {
	for _, m := range res.Runs {
		for _, g := range m.VxlandHeapAlloc {
			n++
			if g > max {
				max = g
			}
		}
	}
	return n, max
}

// FormatBytes prints a byte count in B, KB or MB (of 1024).
func FormatBytes(n uint64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
