package bench

import (
	"math"
	"slices"
)

// Metric names one number reported per configuration and round.
type Metric string

// The reported metrics.
const (
	MetricTCP1      Metric = "tcp1_gbit_s"
	MetricTCP4      Metric = "tcp4_gbit_s"
	MetricUDP64Rate Metric = "udp64_kpps"
	MetricUDP64Loss Metric = "udp64_loss_pct"
	// At the kernel's rate (TestUDP64Paced).
	MetricUDP64PacedRate Metric = "udp64_paced_kpps"
	MetricUDP64PacedLoss Metric = "udp64_paced_loss_pct"
	MetricUDP1400Rate    Metric = "udp1400_kpps"
	MetricUDP1400Loss    Metric = "udp1400_loss_pct"
	// Of the datagrams sent, the share the receiving socket dropped.
	MetricUDP64SocketLoss      Metric = "udp64_socket_loss_pct"
	MetricUDP64PacedSocketLoss Metric = "udp64_paced_socket_loss_pct"
	MetricUDP1400SocketLoss    Metric = "udp1400_socket_loss_pct"
	MetricRTTP50               Metric = "rtt_p50_us"
	MetricRTTP99               Metric = "rtt_p99_us"
	// Echo requests every FastRTTInterval (TestRTTFast).
	MetricRTTFastP50 Metric = "rtt_1ms_p50_us"
	MetricRTTFastP99 Metric = "rtt_1ms_p99_us"
	// Echo requests every FastRTTInterval under a TCP stream (TestRTTLoaded).
	MetricRTTLoadedP50 Metric = "rtt_1ms_loaded_p50_us"
	MetricRTTLoadedP99 Metric = "rtt_1ms_loaded_p99_us"
	// Request/response (TestRR): thousands of transactions per second
	// and the time of one.
	MetricRRRate     Metric = "rr_ktps"
	MetricRRP50      Metric = "rr_p50_us"
	MetricRRP99      Metric = "rr_p99_us"
	MetricCPUMachine Metric = "cpu_machine_s_per_gbit"
	MetricCPUVxland  Metric = "cpu_vxland_s_per_gbit"
	// How busy vxland's own CPUs (Options.VxlandCPUs) were, in percent.
	MetricVxlandCPUsBusyIdle Metric = "vxland_cpus_busy_idle_pct"
	MetricVxlandCPUsBusyTCP1 Metric = "vxland_cpus_busy_tcp1_pct"
)

// AllMetrics lists the metrics in table order.
var AllMetrics = []Metric{
	MetricTCP1, MetricTCP4,
	MetricUDP64Rate, MetricUDP64Loss, MetricUDP64PacedRate, MetricUDP64PacedLoss,
	MetricUDP1400Rate, MetricUDP1400Loss,
	MetricUDP64SocketLoss, MetricUDP64PacedSocketLoss, MetricUDP1400SocketLoss,
	MetricRTTP50, MetricRTTP99, MetricRTTFastP50, MetricRTTFastP99,
	MetricRTTLoadedP50, MetricRTTLoadedP99,
	MetricRRRate, MetricRRP50, MetricRRP99,
	MetricCPUMachine, MetricCPUVxland,
	MetricVxlandCPUsBusyIdle, MetricVxlandCPUsBusyTCP1,
}

// socketLossMetric is the socket-drop metric of each UDP test.
var socketLossMetric = map[Test]Metric{
	TestUDP64:      MetricUDP64SocketLoss,
	TestUDP64Paced: MetricUDP64PacedSocketLoss,
	TestUDP1400:    MetricUDP1400SocketLoss,
}

// MetricInfo describes a metric for tables and charts.
type MetricInfo struct {
	Name           string
	Unit           string
	HigherIsBetter bool
}

// Info returns how m is shown.
func (m Metric) Info() MetricInfo {
	switch m {
	case MetricTCP1:
		return MetricInfo{"TCP, 1 stream", "Gbit/s", true}
	case MetricTCP4:
		return MetricInfo{"TCP, 4 streams", "Gbit/s", true}
	case MetricUDP64Rate:
		return MetricInfo{"UDP 64 B delivered", "kpps", true}
	case MetricUDP64Loss:
		return MetricInfo{"UDP 64 B loss", "%", false}
	case MetricUDP64PacedRate:
		return MetricInfo{"UDP 64 B at kernel VXLAN's rate, delivered", "kpps", true}
	case MetricUDP64PacedLoss:
		return MetricInfo{"UDP 64 B at kernel VXLAN's rate, loss", "%", false}
	case MetricUDP1400Rate:
		return MetricInfo{"UDP 1400 B delivered", "kpps", true}
	case MetricUDP1400Loss:
		return MetricInfo{"UDP 1400 B loss", "%", false}
	case MetricUDP64SocketLoss:
		return MetricInfo{"UDP 64 B dropped by the receiving socket", "%", false}
	case MetricUDP64PacedSocketLoss:
		return MetricInfo{"UDP 64 B at kernel VXLAN's rate, dropped by the receiving socket", "%", false}
	case MetricUDP1400SocketLoss:
		return MetricInfo{"UDP 1400 B dropped by the receiving socket", "%", false}
	case MetricRTTP50:
		return MetricInfo{"RTT p50", "µs", false}
	case MetricRTTP99:
		return MetricInfo{"RTT p99", "µs", false}
	case MetricRTTFastP50:
		return MetricInfo{"RTT p50, echo every 1 ms", "µs", false}
	case MetricRTTFastP99:
		return MetricInfo{"RTT p99, echo every 1 ms", "µs", false}
	case MetricRTTLoadedP50:
		return MetricInfo{"RTT p50, echo every 1 ms under a TCP stream", "µs", false}
	case MetricRTTLoadedP99:
		return MetricInfo{"RTT p99, echo every 1 ms under a TCP stream", "µs", false}
	case MetricRRRate:
		return MetricInfo{"TCP request/response, 1 B each way", "thousand transactions/s", true}
	case MetricRRP50:
		return MetricInfo{"TCP request/response p50", "µs", false}
	case MetricRRP99:
		return MetricInfo{"TCP request/response p99", "µs", false}
	case MetricCPUMachine:
		return MetricInfo{"CPU, whole machine", "CPU-s/Gbit", false}
	case MetricVxlandCPUsBusyIdle:
		return MetricInfo{"vxland's CPUs busy, no traffic", "%", false}
	case MetricVxlandCPUsBusyTCP1:
		return MetricInfo{"vxland's CPUs busy, TCP 1 stream", "%", false}
	case MetricCPUVxland:
		return MetricInfo{"CPU, vxland processes", "CPU-s/Gbit", false}
	}
	return MetricInfo{Name: string(m)}
}

// Sample is the value of one metric for one configuration in one round.
type Sample struct {
	Round  int
	Config Config
	Metric Metric
	Value  float64
}

// Summary describes a set of values by median and range.
type Summary struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Summarize returns the median, minimum and maximum of vs; with no values
// N is 0 and the rest NaN, which tables print as "–". NaN values are left
// out.
func Summarize(vs []float64) Summary {
	vs = slices.DeleteFunc(slices.Clone(vs), math.IsNaN)
	if len(vs) == 0 {
		nan := math.NaN()
		return Summary{Median: nan, Min: nan, Max: nan}
	}
	slices.Sort(vs)
	n := len(vs)
	med := vs[n/2]
	if n%2 == 0 {
		med = (vs[n/2-1] + vs[n/2]) / 2
	}
	return Summary{Median: med, Min: vs[0], Max: vs[n-1], N: n}
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of vs by the
// nearest-rank method: the smallest value that at least p % of the values
// do not exceed. It is an observed sample, never an interpolation, so p99 of
// 200 samples is the second largest. NaN when vs is empty.
func Percentile(vs []float64, p float64) float64 {
	if len(vs) == 0 || p <= 0 || p > 100 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// RoundOrder returns the order in which configs run in round (0-based):
// configs rotated left by round, so each configuration takes each place in
// turn and none always runs first, on a cold machine, or last.
func RoundOrder(configs []Config, round int) []Config {
	n := len(configs)
	out := make([]Config, n)
	for i := range n {
		out[i] = configs[(i+round)%n]
	}
	return out
}

// ConfigSummary is what a configuration measured over all rounds.
type ConfigSummary struct {
	Config  Config             `json:"config"`
	Metrics map[Metric]Summary `json:"metrics"`
	// Ratios to the reference configurations, computed within each round
	// (this configuration's value divided by the reference's in the same
	// round) and then summarised over rounds.
	VsKernelVXLAN map[Metric]Summary `json:"vs_kernel_vxlan,omitempty"`
	VsUnderlay    map[Metric]Summary `json:"vs_underlay,omitempty"`
	// VsVxlandBase, of vxland only, is the build under test against the
	// base build: new ÷ old.
	VsVxlandBase map[Metric]Summary `json:"vs_vxland_base,omitempty"`
}

// Aggregate summarises samples per configuration, in the order of configs,
// with per-round ratios to kernel VXLAN and to the underlay where those were
// measured, and of vxland to vxland base.
func Aggregate(configs []Config, samples []Sample) []ConfigSummary {
	type key struct {
		c Config
		m Metric
	}
	type roundKey struct {
		key
		round int
	}
	values := map[key][]float64{}
	byRound := map[roundKey]float64{}
	rounds := map[int]bool{}
	for _, s := range samples {
		k := key{s.Config, s.Metric}
		values[k] = append(values[k], s.Value)
		byRound[roundKey{k, s.Round}] = s.Value
		rounds[s.Round] = true
	}
	roundList := make([]int, 0, len(rounds))
	for r := range rounds {
		roundList = append(roundList, r)
	}
	slices.Sort(roundList)

	ratios := func(c, ref Config, m Metric) []float64 {
		var out []float64
		for _, r := range roundList {
			v, ok1 := byRound[roundKey{key{c, m}, r}]
			w, ok2 := byRound[roundKey{key{ref, m}, r}]
			if ok1 && ok2 && w != 0 && !math.IsNaN(v) && !math.IsNaN(w) {
				out = append(out, v/w)
			}
		}
		return out
	}
	has := func(c Config) bool { return slices.Contains(configs, c) }

	var out []ConfigSummary
	for _, c := range configs {
		cs := ConfigSummary{Config: c, Metrics: map[Metric]Summary{}}
		for _, m := range AllMetrics {
			vs, ok := values[key{c, m}]
			if !ok {
				continue
			}
			sum := Summarize(vs)
			if sum.N == 0 {
				continue // JSON has no NaN; a missing metric is absent
			}
			cs.Metrics[m] = sum
			for _, ref := range []struct {
				c   Config
				dst *map[Metric]Summary
			}{{KernelVXLAN, &cs.VsKernelVXLAN}, {Underlay, &cs.VsUnderlay}, {VxlandBase, &cs.VsVxlandBase}} {
				if !has(ref.c) || ref.c == VxlandBase && c != Vxland {
					continue
				}
				if rs := ratios(c, ref.c, m); len(rs) > 0 {
					if *ref.dst == nil {
						*ref.dst = map[Metric]Summary{}
					}
					(*ref.dst)[m] = Summarize(rs)
				}
			}
		}
		out = append(out, cs)
	}
	return out
}
