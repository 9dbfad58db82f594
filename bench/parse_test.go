package bench

import (
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseIperf3(t *testing.T) {
	tcpJSON, err := os.ReadFile("testdata/iperf3-tcp.json")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := parseTCP(tcpJSON, 2)
	if err != nil {
		t.Fatal(err)
	}
	// The receiver's numbers, not the sender's.
	if tcp.Bytes != 2313485960 || tcp.Retransmits != 7587 || tcp.Streams != 2 || math.Abs(tcp.BitsPerSecond-18497917302.57391) > 1 {
		t.Errorf("TCP result %+v", tcp)
	}

	udpJSON, err := os.ReadFile("testdata/iperf3-udp.json")
	if err != nil {
		t.Fatal(err)
	}
	udp, err := parseUDP(udpJSON, 64)
	if err != nil {
		t.Fatal(err)
	}
	if udp.Packets != 523013 || udp.Lost != 4581 || udp.PayloadBytes != 64 {
		t.Errorf("UDP result %+v", udp)
	}
	if want := float64(523013-4581) / 1.000124; math.Abs(udp.DeliveredPPS-want) > 1e-6 {
		t.Errorf("delivered %v pps, want %v", udp.DeliveredPPS, want)
	}

	errJSON, err := os.ReadFile("testdata/iperf3-error.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseTCP(errJSON, 1); err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("iperf3's error was not reported: %v", err)
	}
	if _, err := parseUDP([]byte("iperf3: error - unable to connect"), 64); err == nil {
		t.Error("non-JSON output accepted")
	}
	// A TCP result has no packet counts: read as UDP it must fail, not give 0 pps.
	if _, err := parseUDP(tcpJSON, 64); err == nil {
		t.Error("TCP output accepted as a UDP result")
	}
}

func TestParseProcStat(t *testing.T) {
	got, err := parseProcStat("cpu  100 5 50 1000 20 3 7 2 40 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if err != nil {
		t.Fatal(err)
	}
	// busy: user+nice+system+irq+softirq+steal; guest is inside user.
	if want := (machineTicks{busy: 100 + 5 + 50 + 3 + 7 + 2, total: 100 + 5 + 50 + 1000 + 20 + 3 + 7 + 2}); got != want {
		t.Errorf("parseProcStat = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 x 3 4 5"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q) succeeded", bad)
		}
	}
}

func TestParsePIDStat(t *testing.T) {
	// A command name with spaces and a parenthesis; utime 250, stime 70.
	line := "4242 (vx land) R) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 70 0 0 20 0 9 0 123 456 789"
	got, err := parsePIDStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if got != 320 {
		t.Errorf("parsePIDStat = %d, want 320", got)
	}
	if _, err := parsePIDStat("4242 (x) S 1 2"); err == nil {
		t.Error("short stat line accepted")
	}
	if _, err := parsePIDStat("no name"); err == nil {
		t.Error("stat line without a command name accepted")
	}
	// The running test process has a readable, growing CPU time.
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc here")
	}
	if _, err := parsePIDStat(string(b)); err != nil {
		t.Errorf("/proc/self/stat: %v", err)
	}
}

func TestEchoPacket(t *testing.T) {
	req := echoRequest(0x1234, 7)
	if len(req) != 8+echoPayloadLen || req[0] != icmpEchoRequest {
		t.Fatalf("echo request % x", req)
	}
	if internetChecksum(req) != 0 {
		t.Errorf("checksum of a request with its checksum filled in is %#x, want 0", internetChecksum(req))
	}
	// RFC 1071's example: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d.
	if got := internetChecksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0x220d {
		t.Errorf("RFC 1071 example checksum %#x, want 0x220d", got)
	}
	if got := internetChecksum([]byte{0xff}); got != 0x00ff {
		t.Errorf("odd-length checksum %#x, want 0x00ff", got)
	}

	reply := func(id, seq uint16, typ byte, ihl int) []byte {
		ip := make([]byte, ihl*4)
		ip[0] = 0x40 | byte(ihl)
		icmp := echoRequest(id, seq)
		icmp[0] = typ
		return append(ip, icmp...)
	}
	if !parseEchoReply(reply(0x1234, 7, icmpEchoReply, 5), 0x1234, 7) {
		t.Error("matching reply not recognised")
	}
	if !parseEchoReply(reply(0x1234, 7, icmpEchoReply, 6), 0x1234, 7) {
		t.Error("reply after IP options not recognised")
	}
	for name, pkt := range map[string][]byte{
		"other id":      reply(0x1235, 7, icmpEchoReply, 5),
		"other seq":     reply(0x1234, 8, icmpEchoReply, 5),
		"request":       reply(0x1234, 7, icmpEchoRequest, 5),
		"truncated":     reply(0x1234, 7, icmpEchoReply, 5)[:25],
		"bad IHL":       reply(0x1234, 7, icmpEchoReply, 4),
		"not IPv4":      append([]byte{0x65}, make([]byte, 40)...),
		"empty":         nil,
		"header beyond": {0x4f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		if parseEchoReply(pkt, 0x1234, 7) {
			t.Errorf("%s accepted as the reply", name)
		}
	}
}

func TestParseEthtoolFeatures(t *testing.T) {
	out := "Features for eth0:\nrx-checksumming: on\ntcp-segmentation-offload: off\n\ttx-tcp-segmentation: off\ngeneric-receive-offload: on\nhw-tc-offload: off [fixed]\n"
	f := parseEthtoolFeatures(out)
	if f["tcp-segmentation-offload"] != "off" || f["hw-tc-offload"] != "off [fixed]" || f["tx-tcp-segmentation"] != "off" || len(f) != 5 {
		t.Errorf("features %v", f)
	}
	m := Machine{Offloads: f}
	if got := m.OffloadSummary(); got != "tso off, gro on" {
		t.Errorf("OffloadSummary = %q", got)
	}
}

func TestOptionsDefaultsAndChecks(t *testing.T) {
	o, err := Options{VxlandPath: "/x/vxland"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Rounds != Full.Rounds || o.MTU != 1500 || o.Mode != DefaultOffloads || len(o.Configs) != 4 {
		t.Errorf("defaults %+v", o)
	}
	for name, bad := range map[string]Options{
		"no vxland":                   {},
		"fractional seconds":          {VxlandPath: "v", Duration: 1500 * 1e6},
		"tiny MTU":                    {VxlandPath: "v", MTU: 500},
		"negative rounds":             {VxlandPath: "v", Rounds: -1},
		"vxland-base without its exe": {VxlandPath: "v", Configs: []Config{Vxland, VxlandBase}},
		"base exe, vxland-base not measured": {VxlandPath: "v", VxlandBasePath: "b",
			Configs: []Config{KernelVXLAN, Vxland}},
		"vxland-poll without flags": {VxlandPath: "v", Configs: []Config{Vxland, VxlandPoll}},
		"poll flags, vxland-poll not measured": {VxlandPath: "v", PollFlags: []string{"--poll=always"},
			Configs: []Config{Vxland}},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := (Options{Configs: []Config{Underlay, KernelVXLAN}}).withDefaults(); err != nil {
		t.Errorf("without vxland among the configurations no executable is needed: %v", err)
	}
	if _, err := ParseConfig("flannel"); err == nil {
		t.Error("unknown configuration accepted")
	}

	// A base executable adds vxland-base after the default configurations,
	// which it runs from that executable.
	o, err = Options{VxlandPath: "/x/vxland", VxlandBasePath: "/y/vxland"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Config{Underlay, NativeRouting, KernelVXLAN, Vxland, VxlandBase}; !slices.Equal(o.Configs, want) {
		t.Errorf("configurations with a base executable: %v, want %v", o.Configs, want)
	}
	if len(AllConfigs) != 4 {
		t.Errorf("the defaults changed AllConfigs: %v", AllConfigs)
	}
	if o.executable(Vxland) != "/x/vxland" || o.executable(VxlandBase) != "/y/vxland" {
		t.Errorf("executables: vxland %q, vxland-base %q", o.executable(Vxland), o.executable(VxlandBase))
	}
	if c, err := ParseConfig("vxland-base"); err != nil || c != VxlandBase {
		t.Errorf("ParseConfig(vxland-base) = %v, %v", c, err)
	}
	// Poll flags add vxland-poll, which runs vxland with them after the
	// flags every vxland gets; the others do not get them.
	o, err = Options{VxlandPath: "/x/vxland", VxlandBasePath: "/y/vxland", VxlandFlags: []string{"--queues=1"},
		PollFlags: []string{"--idle-sched=normal", "--offload=none"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Config{Underlay, NativeRouting, KernelVXLAN, Vxland, VxlandBase, VxlandPoll}; !slices.Equal(o.Configs, want) {
		t.Errorf("configurations with poll flags: %v, want %v", o.Configs, want)
	}
	for c, want := range map[Config][]string{
		Vxland:     {"--queues=1"},
		VxlandBase: {"--queues=1"},
		VxlandPoll: {"--queues=1", "--idle-sched=normal", "--offload=none"},
	} {
		if got := o.vxlandFlags(c); !slices.Equal(got, want) {
			t.Errorf("%s gets flags %q, want %q", c, got, want)
		}
	}
	if o.executable(VxlandPoll) != "/x/vxland" {
		t.Errorf("vxland-poll runs %q, want vxland's executable", o.executable(VxlandPoll))
	}
	if len(o.VxlandFlags) != 1 {
		t.Errorf("vxland-poll's flags leaked into VxlandFlags: %q", o.VxlandFlags)
	}
	if m, err := ParseUnderlayMode("wire-like"); err != nil || m != WireLike {
		t.Errorf("ParseUnderlayMode(wire-like) = %v, %v", m, err)
	}
}

func TestParseRcvbufErrors(t *testing.T) {
	snmp := `Ip: Forwarding DefaultTTL
Ip: 1 64
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 2134573 11 3366465 2 3366465 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 7 0 0 0 0
`
	if n, err := parseRcvbufErrors(snmp); err != nil || n != 3366465 {
		t.Fatalf("parseRcvbufErrors = %d, %v; want 3366465", n, err)
	}
	if _, err := parseRcvbufErrors("Ip: a\nIp: 1\n"); err == nil {
		t.Fatal("no error without a Udp line")
	}
}

func TestParseExtraFlags(t *testing.T) {
	got, err := ParseExtraFlags("  --poll=always\t--queues=1 -v ")
	if want := []string{"--poll=always", "--queues=1", "-v"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("ParseExtraFlags = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"", "   ", "--poll always", "poll=always", "--", "-"} {
		if got, err := ParseExtraFlags(bad); err == nil {
			t.Errorf("ParseExtraFlags(%q) = %q, want an error", bad, got)
		}
	}
}

func TestVxlandCPUsBusyFromProcStat(t *testing.T) {
	const before = "cpu  300 0 300 800 0 0 0 0 0 0\n" +
		"cpu0 100 0 100 400 0 0 0 0 0 0\n" +
		"cpu1 200 0 200 400 0 0 0 0 0 0\n" +
		"intr 12345\nctxt 999\n"
	const after = "cpu  500 0 500 1100 0 0 0 0 0 0\n" +
		"cpu0 110 0 110 480 0 0 0 0 0 0\n" + // 20 of 100 ticks busy
		"cpu1 390 0 390 420 100 0 0 0 0 0\n" + // 380 of 500 (iowait is idle)
		"intr 12399\n"
	s, err := parseProcStatCPUs(before)
	if err != nil {
		t.Fatal(err)
	}
	e, err := parseProcStatCPUs(after)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cpus []int
		want float64
	}{{[]int{0}, 20}, {[]int{1}, 76}, {[]int{0, 1}, 400.0 / 600 * 100}} {
		if got, err := busyPercent(s, e, c.cpus); err != nil || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("CPUs %v busy %v %%, %v; want %v", c.cpus, got, err, c.want)
		}
	}
	if _, err := busyPercent(s, e, []int{2}); err == nil {
		t.Error("a CPU without a line gave a number")
	}
	if _, err := busyPercent(s, s, []int{0}); err == nil {
		t.Error("no time passing gave a number")
	}
	for _, bad := range []string{"cpu 1 2 3 4 5\n", "cpux 1 2 3 4 5\n", "cpu0 1 2 x 4 5\n"} {
		if _, err := parseProcStatCPUs(bad); err == nil {
			t.Errorf("parseProcStatCPUs(%q) accepted", bad)
		}
	}
}
