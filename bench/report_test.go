package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeResults returns results as Run would make them, with made-up
// measurements for configs (default AllConfigs) over rounds rounds.
func fakeResults(rounds int, configs ...Config) *Results {
	if len(configs) == 0 {
		configs = AllConfigs
	}
	o, _ := Quick.withDefaults()
	o.Rounds = rounds
	o.Configs = configs
	res := &Results{
		Command: []string{"vxbench", "--quick"},
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Machine: Machine{Kernel: "6.18.0", CPUModel: "Test CPU <&>", Cores: 2, GoVersion: "go1.26", Iperf3Version: "iperf 3.12",
			Offloads: map[string]string{"tcp-segmentation-offload": "on", "generic-receive-offload": "off [fixed]"}},
		Options: recordOptions(o),
	}
	speed := map[Config]float64{Underlay: 12, NativeRouting: 11, KernelVXLAN: 10, Vxland: 1, VxlandBase: 1.25}
	for r := range rounds {
		f := 1 + 0.1*float64(r)
		for pos, c := range RoundOrder(configs, r) {
			v := speed[c] * f
			base := Measurement{Round: r, Position: pos, Config: c}
			cpu := &CPUUsage{MachineSeconds: 2 / v, WallSeconds: 1}
			if c.runsVxland() {
				cpu.VxlandSeconds = 1 / v
			}
			for _, m := range []Measurement{
				{Test: TestTCP1, TCP: &TCPRun{Streams: 1, Seconds: 1, Bytes: int64(v * 1e9 / 8), BitsPerSecond: v * 1e9}, CPU: cpu},
				{Test: TestTCP4, TCP: &TCPRun{Streams: 4, Seconds: 1, Bytes: int64(v * 1.1e9 / 8), BitsPerSecond: v * 1.1e9}, CPU: cpu},
				{Test: TestUDP64, UDP: &UDPRun{PayloadBytes: 64, Seconds: 1, Packets: 1000, Lost: 100, DeliveredPPS: v * 1e4, LossPercent: 10, SocketDrops: 80}},
				{Test: TestUDP64Paced, UDP: &UDPRun{PayloadBytes: 64, Seconds: 1, Packets: 1000, Lost: 1, DeliveredPPS: v * 9e3, LossPercent: 0.1}},
				{Test: TestUDP1400, UDP: &UDPRun{PayloadBytes: 1400, Seconds: 1, Packets: 1000, Lost: 0, DeliveredPPS: v * 9e3}},
				{Test: TestRTT, RTT: &RTTRun{Micros: []float64{100 / v, 200 / v}, P50: 100 / v, P99: 200 / v}},
				{Test: TestRTTFast, RTT: &RTTRun{Micros: []float64{50 / v, 400 / v}, P50: 50 / v, P99: 400 / v}},
				{Test: TestRTTLoaded, RTT: &RTTRun{Micros: []float64{500 / v, 2000 / v}, P50: 500 / v, P99: 2000 / v, LoadGbit: v}},
				{Test: TestRR, RR: &RRRun{Seconds: 1, Transactions: int(v * 1e3), PerSecond: v * 1e3, P50: 60 / v, P99: 300 / v, ClientCPUPercent: 40}},
			} {
				m.Round, m.Position, m.Config = base.Round, base.Position, base.Config
				res.Runs = append(res.Runs, m)
			}
		}
	}
	res.Summary = Aggregate(configs, Samples(res.Runs))
	res.Overhead = overheads(configs)
	res.UDP64PacedKPPS = 100
	res.Finished = res.Started.Add(time.Minute)
	return res
}

func TestMarkdownHasEveryConfiguration(t *testing.T) {
	md := Markdown(fakeResults(3))
	for _, c := range AllConfigs {
		// One row in each of the six tables.
		if n := strings.Count(md, "| "+c.Label()+" |"); n != 6 {
			t.Errorf("%d rows for %s, want 6:\n%s", n, c.Label(), md)
		}
	}
	for _, want := range []string{
		"| kernel VXLAN | 11.0 (10.0–12.0) |", // TCP ×1: median and range of 10, 11, 12
		"| vxland | 0.100× |",                 // per-round ratio to kernel VXLAN
		"96.5 %", "99.4 %",                    // efficiency at 1500 and 9000
		"Command: `vxbench --quick`",
		"UDP 64 B paced: 100 kpps offered",
		"| vxland | 8.00 | 0 | 0 |", // socket drops: 80 of 1000 sent, the same every round
		"Test CPU <&>",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}

// The build under test against the base build: a table of its own, one row
// per measure, with both builds' medians and the per-round ratio.
func TestMarkdownComparesVxlandWithBase(t *testing.T) {
	const heading = "## vxland relative to vxland base\n"
	if md := Markdown(fakeResults(3)); strings.Contains(md, heading) {
		t.Errorf("a comparison with vxland base that was not measured:\n%s", md)
	}
	res := fakeResults(3, KernelVXLAN, Vxland, VxlandBase)
	res.Machine.Vxland, res.Machine.VxlandBase = "new123 sha256:aa", "old456 sha256:bb"
	md := Markdown(res)
	_, section, ok := strings.Cut(md, heading)
	if !ok {
		t.Fatalf("Markdown lacks %q:\n%s", heading, md)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	// vxland is 1 and vxland base 1.25 times a round's factor (1, 1.1, 1.2):
	// new ÷ old is 0.8 for throughput and 1.25 for latency and CPU in
	// every round.
	for _, want := range []string{
		"| measure | vxland | vxland base | vxland ÷ vxland base |",
		"| TCP, 1 stream (Gbit/s) | 1.10 (1.00–1.20) | 1.38 (1.25–1.50) | 0.800× |",
		"| UDP 64 B delivered (kpps) | 11.0 (10.0–12.0) | 13.8 (12.5–15.0) | 0.800× |",
		"| RTT p99 (µs) | 182 (167–200) | 145 (133–160) | 1.25× |",
		"| CPU, vxland processes (CPU-s/Gbit) | ",
	} {
		if !strings.Contains(section, want) {
			t.Errorf("comparison with vxland base lacks %q:\n%s", want, section)
		}
	}
	if n := strings.Count(section, "\n| "); n != 1+len(vsBaseMetrics) {
		t.Errorf("%d table lines, want a head and %d measures:\n%s", n, len(vsBaseMetrics), section)
	}
	if !strings.Contains(md, "vxland base build: old456 sha256:bb.") {
		t.Error("the report does not name the base build")
	}
	// The five other tables of these configurations gain a row for it.
	if n := strings.Count(md, "\n| vxland base |"); n != 5 {
		t.Errorf("%d rows for vxland base in the other tables, want 5:\n%s", n, md)
	}
}

func TestWriteProducesWellFormedFiles(t *testing.T) {
	for _, configs := range [][]Config{AllConfigs, append(slices.Clip(AllConfigs), VxlandBase)} {
		res := fakeResults(3, configs...)
		dir := filepath.Join(t.TempDir(), "results", "x")
		if err := Write(dir, res); err != nil {
			t.Fatal(err)
		}
		checkResultFiles(t, dir, configs)

		// The JSON holds everything: decoding gives back what was written.
		data, err := os.ReadFile(filepath.Join(dir, JSONFile))
		if err != nil {
			t.Fatal(err)
		}
		var back Results
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Runs, res.Runs) || !reflect.DeepEqual(back.Summary, res.Summary) {
			t.Errorf("%v: JSON does not round-trip the runs and summary", configs)
		}
	}
}

// checkResultFiles checks that the files in dir are well-formed and that
// every configuration has numbers in each.
func checkResultFiles(t *testing.T, dir string, configs []Config) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("%s is not valid JSON: %v", JSONFile, err)
	}
	if res.Machine.Kernel == "" || res.Machine.Cores == 0 || res.Machine.GoVersion == "" {
		t.Errorf("machine description incomplete: %+v", res.Machine)
	}
	if len(res.Summary) != len(configs) {
		t.Fatalf("%d summaries, want %d", len(res.Summary), len(configs))
	}
	for i, s := range res.Summary {
		if s.Config != configs[i] {
			t.Errorf("summary %d is %s, want %s", i, s.Config, configs[i])
		}
		for _, m := range AllMetrics {
			if m == MetricCPUVxland && !s.Config.runsVxland() {
				continue
			}
			if (m == MetricVxlandCPUsBusyIdle || m == MetricVxlandCPUsBusyTCP1) && len(res.Options.VxlandCPUs) == 0 {
				continue // measured only when vxland has CPUs of its own
			}
			v, ok := s.Metrics[m]
			if !ok || v.N == 0 || math.IsNaN(v.Median) || v.Median < 0 {
				t.Errorf("%s: no number for %s: %+v", s.Config, m, v)
			}
		}
		if base := slices.Contains(configs, VxlandBase); s.Config == Vxland && base != (len(s.VsVxlandBase) > 0) {
			t.Errorf("vxland vs vxland base: %v, want ratios only when vxland base was measured", s.VsVxlandBase)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range configs {
		if !bytes.Contains(md, []byte("| "+c.Label()+" |")) {
			t.Errorf("%s has no row for %s", MarkdownFile, c)
		}
	}
	svg, err := os.ReadFile(filepath.Join(dir, SVGFile))
	if err != nil {
		t.Fatal(err)
	}
	checkSVG(t, svg, configs)
}

// checkSVG parses svg as XML and checks it has a root <svg>, a bar per
// configuration and metric that has a value, and the legend.
func checkSVG(t *testing.T, svg []byte, configs []Config) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	var root string
	rects := 0
	var text strings.Builder
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = e.Name.Local
				if e.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", e.Name.Space)
				}
			}
			if e.Name.Local == "rect" {
				rects++
			}
		case xml.CharData:
			text.Write(e)
		}
	}
	if root != "svg" {
		t.Errorf("root element %q, want svg", root)
	}
	// 8 metrics × configs bars, minus vxland CPU for those that run no
	// vxland; plus the background, 4 panel frames and the legend swatches.
	bars := 8 * len(configs)
	for _, c := range configs {
		if !c.runsVxland() {
			bars--
		}
	}
	if want := bars + 1 + len(chartPanels) + len(configs); rects != want {
		t.Errorf("%d rects, want %d", rects, want)
	}
	for _, c := range configs {
		if !strings.Contains(text.String(), c.Label()) {
			t.Errorf("legend lacks %s", c.Label())
		}
	}
	for _, want := range []string{"Gbit/s", "µs", "1 stream", "4 streams", "p50", "higher is better"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("chart text lacks %q", want)
		}
	}
}

func TestNiceAxis(t *testing.T) {
	for _, top := range []float64{0.0123, 0.8, 1, 7.3, 12.9, 99, 117, 1234, 5e6} {
		step, axisMax := NiceAxis(top)
		if axisMax < top || axisMax/step > 6.0001 || axisMax/step < 1 {
			t.Errorf("NiceAxis(%g) = step %g, max %g", top, step, axisMax)
		}
		m := step / math.Pow(10, math.Floor(math.Log10(step)))
		if !slicesContainsApprox([]float64{1, 2, 2.5, 5}, m) {
			t.Errorf("NiceAxis(%g): step %g is not 1, 2, 2.5 or 5 × 10^k", top, step)
		}
	}
	if step, axisMax := NiceAxis(0); step != 1 || axisMax != 1 {
		t.Errorf("NiceAxis(0) = %g, %g", step, axisMax)
	}
	if got := TickLabel(0, 2.5); got != "0.0" {
		t.Errorf("TickLabel(0, 2.5) = %q", got)
	}
	if got := TickLabel(150, 50); got != "150" {
		t.Errorf("TickLabel(150, 50) = %q", got)
	}
	if got := TickLabel(0.25, 0.05); got != "0.25" {
		t.Errorf("TickLabel(0.25, 0.05) = %q", got)
	}
}

func slicesContainsApprox(vs []float64, v float64) bool {
	for _, w := range vs {
		if math.Abs(v-w) < 1e-9 {
			return true
		}
	}
	return false
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{1234.4, "1234"}, {12.34, "12.3"}, {1.234, "1.23"}, {0.1234, "0.123"}, {0, "0"}, {0.0012, "0.0012"},
		{9.9999, "10.0"}, {99.96, "100"}, {0.99999, "1.00"}, {-2.5, "-2.50"}, {math.NaN(), "–"}} {
		if got := FormatValue(tc.v); got != tc.want {
			t.Errorf("FormatValue(%g) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

// The latency table has both echo intervals and the request/response
// test, and the ratios to kernel VXLAN include them.
func TestMarkdownLatencyTable(t *testing.T) {
	md := Markdown(fakeResults(3))
	// The quick preset pings every 5 ms. vxland's speed factor is 1, the
	// kernel's 10, times 1, 1.1 and 1.2 in the three rounds.
	checkSection(t, md, "## Latency\n",
		"| configuration | RTT p50, 5ms (µs) | RTT p99, 5ms (µs) | RTT p50, 1ms (µs) | RTT p99, 1ms (µs) | RTT p50, 1ms, TCP load (µs) | RTT p99, 1ms, TCP load (µs) | request/response (k/s) | RR p50 (µs) | RR p99 (µs) |",
		"| vxland | 90.9 (83.3–100) | 182 (167–200) | 45.5 (41.7–50.0) | 364 (333–400) | 455 (417–500) | 1818 (1667–2000) | 1.10 (1.00–1.20) | 54.5 (50.0–60.0) | 273 (250–300) |",
		"busy 40.0 % of the run")
	checkSection(t, md, "## Relative to kernel VXLAN\n",
		"| RTT p50, 1ms | RTT p99, 1ms | RTT p99, TCP load | request/response | RR p99 |",
		"| 10.0× | 10.0× | 10.0× | 0.100× | 10.0× |")
}

// checkSection checks that the part of md from heading to the next
// heading holds every one of wants.
func checkSection(t *testing.T, md, heading string, wants ...string) {
	t.Helper()
	_, section, ok := strings.Cut(md, heading)
	if !ok {
		t.Fatalf("Markdown lacks %q:\n%s", heading, md)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	for _, want := range wants {
		if !strings.Contains(section, want) {
			t.Errorf("section %q lacks %q:\n%s", heading, want, section)
		}
	}
}

// With CPUs of its own for vxland, the report says how busy they were,
// idle and under TCP ×1; without, it has no such table.
func TestMarkdownVxlandCPUsBusy(t *testing.T) {
	const heading = "Busy time of vxland's CPUs"
	res := fakeResults(2, KernelVXLAN, Vxland)
	if md := Markdown(res); strings.Contains(md, heading) {
		t.Errorf("busy CPUs reported without CPUs for vxland:\n%s", md)
	}
	res.Options.VxlandCPUs = []int{1}
	pct := func(v float64) *float64 { return &v }
	for i := range res.Runs {
		if r := &res.Runs[i]; r.Test == TestTCP1 {
			r.VxlandCPUsBusy = pct(map[Config]float64{KernelVXLAN: 3, Vxland: 90}[r.Config] + float64(r.Round))
		}
	}
	for round := range 2 {
		res.Runs = append(res.Runs,
			Measurement{Round: round, Config: KernelVXLAN, Test: TestIdle, VxlandCPUsBusy: pct(0)},
			Measurement{Round: round, Config: Vxland, Test: TestIdle, VxlandCPUsBusy: pct(2 + 2*float64(round))})
	}
	res.Summary = Aggregate(res.Options.Configs, Samples(res.Runs))
	checkSection(t, Markdown(res), heading,
		"(1, /proc/stat)",
		"| configuration | busy, idle (%) | busy, TCP ×1 (%) |",
		"| kernel VXLAN | 0 | 3.50 (3.00–4.00) |",
		"| vxland | 3.00 (2.00–4.00) | 90.5 (90.0–91.0) |")
}
