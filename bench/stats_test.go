package bench

import (
	"math"
	"slices"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want Summary
	}{
		{"one", []float64{3}, Summary{3, 3, 3, 1}},
		{"odd", []float64{5, 1, 3}, Summary{3, 1, 5, 3}},
		{"even averages the middle two", []float64{4, 1, 3, 10}, Summary{3.5, 1, 10, 4}},
		{"NaN left out", []float64{2, math.NaN(), 4}, Summary{3, 2, 4, 2}},
	} {
		if got := Summarize(tc.in); got != tc.want {
			t.Errorf("%s: Summarize(%v) = %+v, want %+v", tc.name, tc.in, got, tc.want)
		}
	}
	if s := Summarize(nil); s.N != 0 || !math.IsNaN(s.Median) {
		t.Errorf("Summarize(nil) = %+v, want N 0 and NaN median", s)
	}
	in := []float64{3, 1, 2}
	Summarize(in)
	if !slices.Equal(in, []float64{3, 1, 2}) {
		t.Errorf("Summarize reordered its input: %v", in)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100..1, unsorted
	}
	twoHundred := make([]float64, 200)
	for i := range twoHundred {
		twoHundred[i] = float64(i + 1)
	}
	for _, tc := range []struct {
		vs   []float64
		p    float64
		want float64
	}{
		{hundred, 50, 50},
		{hundred, 99, 99},
		{hundred, 100, 100},
		{hundred, 1, 1},
		{twoHundred, 99, 198}, // the second largest of 200
		{[]float64{7}, 99, 7},
		{[]float64{1, 2, 3, 4}, 50, 2},
	} {
		if got := Percentile(tc.vs, tc.p); got != tc.want {
			t.Errorf("Percentile(%d values, %g) = %g, want %g", len(tc.vs), tc.p, got, tc.want)
		}
	}
	for _, p := range []float64{0, -1, 101} {
		if got := Percentile(hundred, p); !math.IsNaN(got) {
			t.Errorf("Percentile(p=%g) = %g, want NaN", p, got)
		}
	}
	if got := Percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("Percentile(nil) = %g, want NaN", got)
	}
}

func TestRoundOrderRotates(t *testing.T) {
	want := [][]Config{
		{Underlay, NativeRouting, KernelVXLAN, Vxland},
		{NativeRouting, KernelVXLAN, Vxland, Underlay},
		{KernelVXLAN, Vxland, Underlay, NativeRouting},
		{Vxland, Underlay, NativeRouting, KernelVXLAN},
		{Underlay, NativeRouting, KernelVXLAN, Vxland},
	}
	place := map[Config]map[int]bool{}
	for r, w := range want {
		got := RoundOrder(AllConfigs, r)
		if !slices.Equal(got, w) {
			t.Errorf("round %d: order %v, want %v", r, got, w)
		}
		for i, c := range got {
			if place[c] == nil {
				place[c] = map[int]bool{}
			}
			place[c][i] = true
		}
	}
	// Over as many rounds as configurations, each takes every place.
	for c, places := range place {
		if len(places) != len(AllConfigs) {
			t.Errorf("%s took places %v, want all %d", c, places, len(AllConfigs))
		}
	}
	if !slices.Equal(AllConfigs, []Config{Underlay, NativeRouting, KernelVXLAN, Vxland}) {
		t.Errorf("RoundOrder changed its input: %v", AllConfigs)
	}
}

// Ratios are taken within a round, then summarised: with a machine that is
// twice as fast in round 1, vxland is still exactly half of kernel VXLAN in
// every round, which the ratio of the medians would not show.
func TestAggregatePerRoundRatios(t *testing.T) {
	var samples []Sample
	add := func(r int, c Config, v float64) {
		samples = append(samples, Sample{Round: r, Config: c, Metric: MetricTCP1, Value: v})
	}
	add(0, KernelVXLAN, 10)
	add(0, Vxland, 5)
	add(0, Underlay, 20)
	add(1, KernelVXLAN, 20)
	add(1, Vxland, 10)
	add(1, Underlay, 20)
	add(2, KernelVXLAN, 8)
	add(2, Vxland, 4)
	// round 2 has no underlay value: no ratio to the underlay that round
	add(2, Vxland, 4)

	sums := Aggregate([]Config{Underlay, KernelVXLAN, Vxland}, samples)
	if len(sums) != 3 || sums[0].Config != Underlay || sums[2].Config != Vxland {
		t.Fatalf("summaries in the wrong order: %+v", sums)
	}
	vx := sums[2]
	if got := vx.VsKernelVXLAN[MetricTCP1]; got.Median != 0.5 || got.Min != 0.5 || got.Max != 0.5 || got.N != 3 {
		t.Errorf("vxland vs kernel VXLAN = %+v, want 0.5 in all 3 rounds", got)
	}
	if got := vx.VsUnderlay[MetricTCP1]; got.N != 2 || got.Min != 0.25 || got.Max != 0.5 {
		t.Errorf("vxland vs underlay = %+v, want rounds 0 and 1: 0.25 and 0.5", got)
	}
	kv := sums[1]
	if got := kv.Metrics[MetricTCP1]; got.Median != 10 || got.Min != 8 || got.Max != 20 {
		t.Errorf("kernel VXLAN TCP1 = %+v, want median 10 of 8, 10, 20", got)
	}
	// Without kernel VXLAN among the configurations there is no such ratio.
	sums = Aggregate([]Config{Underlay, Vxland}, samples)
	if sums[1].VsKernelVXLAN != nil {
		t.Errorf("ratio to an unmeasured kernel VXLAN: %+v", sums[1].VsKernelVXLAN)
	}
	if sums[1].VsVxlandBase != nil {
		t.Errorf("ratio to an unmeasured vxland base: %+v", sums[1].VsVxlandBase)
	}

	// vxland against its base build, round by round: 5/4, 10/10, 4/5.
	add(0, VxlandBase, 4)
	add(1, VxlandBase, 10)
	add(2, VxlandBase, 5)
	sums = Aggregate([]Config{KernelVXLAN, Vxland, VxlandBase}, samples)
	if got, want := sums[1].VsVxlandBase[MetricTCP1], (Summary{Median: 1, Min: 0.8, Max: 1.25, N: 3}); got != want {
		t.Errorf("vxland vs vxland base = %+v, want %+v", got, want)
	}
	// Only vxland is compared with its base build.
	if sums[0].VsVxlandBase != nil || sums[2].VsVxlandBase != nil {
		t.Errorf("kernel VXLAN or vxland base compared with vxland base: %+v, %+v", sums[0].VsVxlandBase, sums[2].VsVxlandBase)
	}
	if got := sums[2].VsKernelVXLAN[MetricTCP1]; got.Median != 0.5 || got.N != 3 {
		t.Errorf("vxland base vs kernel VXLAN = %+v, want 0.5 in all 3 rounds", got)
	}
}

func TestSamplesFromMeasurements(t *testing.T) {
	runs := []Measurement{
		{Round: 0, Config: Vxland, Test: TestTCP1,
			TCP: &TCPRun{Streams: 1, Bytes: 1e9 / 8, BitsPerSecond: 2e9},
			CPU: &CPUUsage{MachineSeconds: 1, VxlandSeconds: 0.5}},
		{Round: 0, Config: Vxland, Test: TestTCP4,
			TCP: &TCPRun{Streams: 4, Bytes: 3e9 / 8, BitsPerSecond: 3e9},
			CPU: &CPUUsage{MachineSeconds: 3, VxlandSeconds: 1.5}},
		{Round: 0, Config: Vxland, Test: TestUDP64, UDP: &UDPRun{DeliveredPPS: 50000, LossPercent: 12}},
		{Round: 0, Config: Vxland, Test: TestRTT, RTT: &RTTRun{Micros: []float64{100, 200}, P50: 100, P99: 200}},
		{Round: 0, Config: Vxland, Test: TestRTTFast, RTT: &RTTRun{Micros: []float64{50, 400}, P50: 50, P99: 400}},
		{Round: 0, Config: Vxland, Test: TestRTTLoaded, RTT: &RTTRun{Micros: []float64{700, 900}, P50: 700, P99: 900, LoadGbit: 2}},
		{Round: 0, Config: Vxland, Test: TestRR, RR: &RRRun{Transactions: 30000, PerSecond: 30000, P50: 30, P99: 90}},
		{Round: 0, Config: Vxland, Test: TestUDP1400, Error: "iperf3: boom", UDP: &UDPRun{DeliveredPPS: 1}},
		{Round: 0, Config: Underlay, Test: TestTCP1,
			TCP: &TCPRun{Streams: 1, Bytes: 1e9 / 8, BitsPerSecond: 9e9}, CPU: &CPUUsage{MachineSeconds: 0.2, VxlandSeconds: 0}},
		{Round: 0, Config: VxlandBase, Test: TestTCP1,
			TCP: &TCPRun{Streams: 1, Bytes: 1e9 / 8, BitsPerSecond: 1e9}, CPU: &CPUUsage{MachineSeconds: 1, VxlandSeconds: 0.25}},
	}
	got := map[Config]map[Metric]float64{}
	for _, s := range Samples(runs) {
		if got[s.Config] == nil {
			got[s.Config] = map[Metric]float64{}
		}
		if _, dup := got[s.Config][s.Metric]; dup {
			t.Errorf("two samples of %s %s", s.Config, s.Metric)
		}
		got[s.Config][s.Metric] = s.Value
	}
	want := map[Metric]float64{
		MetricTCP1: 2, MetricTCP4: 3,
		MetricUDP64Rate: 50, MetricUDP64Loss: 12,
		MetricRTTP50: 100, MetricRTTP99: 200,
		MetricRTTFastP50: 50, MetricRTTFastP99: 400,
		MetricRTTLoadedP50: 700, MetricRTTLoadedP99: 900,
		MetricRRRate: 30, MetricRRP50: 30, MetricRRP99: 90,
		MetricCPUMachine: 1, // (1+3) CPU-s / (1+3) Gbit
		MetricCPUVxland:  0.5,
	}
	for m, w := range want {
		if v, ok := got[Vxland][m]; !ok || math.Abs(v-w) > 1e-9 {
			t.Errorf("vxland %s = %v (present %v), want %v", m, v, ok, w)
		}
	}
	if _, ok := got[Vxland][MetricUDP1400Rate]; ok {
		t.Error("a failed run gave a sample")
	}
	if _, ok := got[Underlay][MetricCPUVxland]; ok {
		t.Error("the underlay has a vxland CPU sample")
	}
	if v := got[VxlandBase][MetricCPUVxland]; math.Abs(v-0.25) > 1e-9 {
		t.Errorf("vxland base: vxland CPU per Gbit = %v, want 0.25", v)
	}
	if v := got[Underlay][MetricCPUMachine]; math.Abs(v-0.2) > 1e-9 {
		t.Errorf("underlay CPU per Gbit = %v, want 0.2", v)
	}
}

func TestComputeOverhead(t *testing.T) {
	for _, tc := range []struct {
		c       Config
		family  string
		bytes   int
		eff1500 float64
	}{
		{KernelVXLAN, "IPv4", 50, 1398.0 / 1448},
		{Vxland, "IPv6", 70, 1378.0 / 1448},
		{Underlay, "IPv4", 0, 1},
		{NativeRouting, "IPv6", 0, 1},
	} {
		o := ComputeOverhead(tc.c, tc.family)
		if o.BytesPerPacket != tc.bytes {
			t.Errorf("%s on %s: %d B per packet, want %d", tc.c, tc.family, o.BytesPerPacket, tc.bytes)
		}
		if len(o.Efficiency) != 2 || o.Efficiency[0].MTU != 1500 || o.Efficiency[1].MTU != 9000 {
			t.Fatalf("%s: efficiencies %+v, want MTU 1500 and 9000", tc.c, o.Efficiency)
		}
		if got := o.Efficiency[0].Efficiency; math.Abs(got-tc.eff1500) > 1e-12 {
			t.Errorf("%s on %s at MTU 1500: efficiency %v, want %v", tc.c, tc.family, got, tc.eff1500)
		}
		if e := o.Efficiency[1]; e.InnerMTU != 9000-tc.bytes || e.Efficiency < o.Efficiency[0].Efficiency {
			t.Errorf("%s on %s at MTU 9000: %+v", tc.c, tc.family, e)
		}
	}
}
