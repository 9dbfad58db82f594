package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Results is everything a bench run produced: the JSON file holds it whole.
type Results struct {
	Command  []string        `json:"command"`
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished"`
	Machine  Machine         `json:"machine"`
	Options  OptionsRecord   `json:"options"`
	Runs     []Measurement   `json:"runs"`
	Summary  []ConfigSummary `json:"summary"`
	Overhead []Overhead      `json:"overhead"`
	// UDP64PacedKPPS is the rate the paced UDP runs offer: what kernel
	// VXLAN delivered of unlimited 64 B datagrams before the rounds; 0
	// when kernel VXLAN was not measured (no paced runs then).
	UDP64PacedKPPS float64 `json:"udp64_paced_offered_kpps"`
}

// OptionsRecord is Options as recorded in the results.
type OptionsRecord struct {
	Configs       []Config     `json:"configs"`
	Rounds        int          `json:"rounds"`
	DurationS     float64      `json:"iperf3_duration_s"`
	RTTSamples    int          `json:"rtt_samples"`
	RTTIntervalMS float64      `json:"rtt_interval_ms"`
	MTU           int          `json:"underlay_mtu"`
	Mode          UnderlayMode `json:"underlay_mode"`
	UDPOffered    string       `json:"udp_offered_load"`
	AppCPUs       []int        `json:"app_cpus,omitempty"`
	VxlandCPUs    []int        `json:"vxland_cpus,omitempty"`
	VxlandFlags   []string     `json:"vxland_flags,omitempty"`
	PollFlags     []string     `json:"vxland_poll_flags,omitempty"`
}

func recordOptions(o Options) OptionsRecord {
	return OptionsRecord{
		Configs:       o.Configs,
		Rounds:        o.Rounds,
		DurationS:     o.Duration.Seconds(),
		RTTSamples:    o.RTTSamples,
		RTTIntervalMS: float64(o.RTTInterval) / float64(time.Millisecond),
		MTU:           o.MTU,
		Mode:          o.Mode,
		UDPOffered:    "unlimited (iperf3 -b 0), one sender",
		AppCPUs:       o.AppCPUs,
		VxlandCPUs:    o.VxlandCPUs,
		VxlandFlags:   o.VxlandFlags,
		PollFlags:     o.PollFlags,
	}
}

// Measurement is one test of one configuration in one round, as measured.
type Measurement struct {
	Round    int       `json:"round"`    // from 0
	Position int       `json:"position"` // place of Config in the round's order, from 0
	Config   Config    `json:"config"`
	Test     Test      `json:"test"`
	Start    time.Time `json:"start"`
	Error    string    `json:"error,omitempty"`
	// LoadAvg is the machine's 1-minute load average when the run started:
	// the bench itself keeps it near the number of busy iperf3 and vxland
	// threads (about 2); much more means other work shared the machine.
	LoadAvg float64 `json:"loadavg_1m"`

	TCP *TCPRun   `json:"tcp,omitempty"`
	UDP *UDPRun   `json:"udp,omitempty"`
	RTT *RTTRun   `json:"rtt,omitempty"`
	RR  *RRRun    `json:"rr,omitempty"`
	CPU *CPUUsage `json:"cpu,omitempty"`
	// VxlandHeapAlloc is, per vxland process, how much its cumulative heap
	// allocation (runtime/metrics /gc/heap/allocs:bytes) grew during a
	// TCP run: the forwarding path is meant to allocate nothing.
	VxlandHeapAlloc []uint64 `json:"vxland_heap_alloc_bytes,omitempty"`
	// VxlandCPUsBusy is, when vxland has CPUs of its own, the share of
	// their time, in percent, that was busy: during TestTCP1 and during
	// TestIdle's quiet second.
	VxlandCPUsBusy *float64 `json:"vxland_cpus_busy_pct,omitempty"`
}

// TCPRun is an iperf3 TCP result, receiver side.
type TCPRun struct {
	Streams       int     `json:"streams"`
	Seconds       float64 `json:"seconds"`
	Bytes         int64   `json:"bytes_received"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   int64   `json:"retransmits"`
}

// UDPRun is an iperf3 UDP result, receiver side.
type UDPRun struct {
	PayloadBytes int     `json:"payload_bytes"`
	Seconds      float64 `json:"seconds"`
	Packets      int64   `json:"packets_sent"`
	Lost         int64   `json:"packets_lost"`
	DeliveredPPS float64 `json:"delivered_pps"`
	LossPercent  float64 `json:"loss_percent"`
	// SocketDrops is how many datagrams the receiving host's kernel
	// dropped because iperf3's socket buffer was full (UDP
	// RcvbufErrors in its namespace): lost after crossing the path,
	// for want of CPU for the receiving application; -1 if unknown.
	SocketDrops int64 `json:"socket_drops"`
}

// RTTRun is a series of ICMP echo round trips.
type RTTRun struct {
	Micros []float64 `json:"samples_us"` // answered requests, in order
	Lost   int       `json:"lost"`
	P50    float64   `json:"p50_us"`
	P99    float64   `json:"p99_us"`
	// LoadGbit is, for TestRTTLoaded, what the TCP stream that ran
	// meanwhile delivered.
	LoadGbit float64 `json:"load_gbit_s,omitempty"`
}

// CPUUsage is CPU time spent while a test ran.
type CPUUsage struct {
	MachineSeconds float64 `json:"machine_s"` // busy time summed over all cores
	VxlandSeconds  float64 `json:"vxland_s"`  // user+system time of the vxland processes
	WallSeconds    float64 `json:"wall_s"`
}

// Samples turns runs into one value per metric, configuration and round.
// CPU per Gbit is the CPU time of both TCP tests of the round divided by the
// gigabits both delivered. Failed runs give no samples.
func Samples(runs []Measurement) []Sample {
	type rc struct {
		round  int
		config Config
	}
	type cpu struct{ machine, vxland, gbit float64 }
	cpus := map[rc]*cpu{}
	var order []rc
	var out []Sample
	add := func(r Measurement, m Metric, v float64) {
		out = append(out, Sample{Round: r.Round, Config: r.Config, Metric: m, Value: v})
	}
	for _, r := range runs {
		if r.Error != "" {
			continue
		}
		if r.VxlandCPUsBusy != nil {
			m := MetricVxlandCPUsBusyTCP1
			if r.Test == TestIdle {
				m = MetricVxlandCPUsBusyIdle
			}
			add(r, m, *r.VxlandCPUsBusy)
		}
		switch {
		case r.TCP != nil:
			m := MetricTCP1
			if r.Test == TestTCP4 {
				m = MetricTCP4
			}
			add(r, m, r.TCP.BitsPerSecond/1e9)
			if r.CPU != nil {
				k := rc{r.Round, r.Config}
				c := cpus[k]
				if c == nil {
					c = new(cpu)
					cpus[k] = c
					order = append(order, k)
				}
				c.machine += r.CPU.MachineSeconds
				c.vxland += r.CPU.VxlandSeconds
				c.gbit += float64(r.TCP.Bytes) * 8 / 1e9
			}
		case r.UDP != nil:
			rate, loss := MetricUDP64Rate, MetricUDP64Loss
			switch r.Test {
			case TestUDP1400:
				rate, loss = MetricUDP1400Rate, MetricUDP1400Loss
			case TestUDP64Paced:
				rate, loss = MetricUDP64PacedRate, MetricUDP64PacedLoss
			}
			add(r, rate, r.UDP.DeliveredPPS/1e3)
			add(r, loss, r.UDP.LossPercent)
			if r.UDP.SocketDrops >= 0 && r.UDP.Packets > 0 {
				add(r, socketLossMetric[r.Test], 100*float64(r.UDP.SocketDrops)/float64(r.UDP.Packets))
			}
		case r.RTT != nil && len(r.RTT.Micros) > 0:
			p50, p99 := MetricRTTP50, MetricRTTP99
			switch r.Test {
			case TestRTTFast:
				p50, p99 = MetricRTTFastP50, MetricRTTFastP99
			case TestRTTLoaded:
				p50, p99 = MetricRTTLoadedP50, MetricRTTLoadedP99
			}
			add(r, p50, r.RTT.P50)
			add(r, p99, r.RTT.P99)
		case r.RR != nil && r.RR.Transactions > 0:
			add(r, MetricRRRate, r.RR.PerSecond/1e3)
			add(r, MetricRRP50, r.RR.P50)
			add(r, MetricRRP99, r.RR.P99)
		}
	}
	for _, k := range order {
		c := cpus[k]
		if c.gbit <= 0 {
			continue
		}
		out = append(out, Sample{Round: k.round, Config: k.config, Metric: MetricCPUMachine, Value: c.machine / c.gbit})
		if k.config.runsVxland() {
			out = append(out, Sample{Round: k.round, Config: k.config, Metric: MetricCPUVxland, Value: c.vxland / c.gbit})
		}
	}
	return out
}

// Files written by Write, inside the results directory.
const (
	MarkdownFile = "results.md"
	JSONFile     = "results.json"
	SVGFile      = "results.svg"
)

// Write stores res in dir (created if missing) as Markdown, JSON and SVG.
func Write(dir string, res *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	var svg bytes.Buffer
	if err := WriteSVG(&svg, res); err != nil {
		return fmt.Errorf("draw chart: %w", err)
	}
	for name, data := range map[string][]byte{
		MarkdownFile: []byte(Markdown(res)),
		JSONFile:     append(js, '\n'),
		SVGFile:      svg.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	return nil
}
