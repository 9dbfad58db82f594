package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/vxland/vxland/overlay/poller"
)

func parse(args []string, env map[string]string) (*config, error) {
	return parseConfig(args, func(k string) string { return env[k] }, io.Discard)
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.VNI != 1 || c.Port != 4789 || c.Bridge != "vxbr1" || c.TAP != "vxtap1" || c.MTU != 0 ||
		c.FDBAgeing != 300*time.Second || c.ControlSocket != "/run/vxland/vxtap1.sock" || c.LocalIP.IsValid() {
		t.Fatalf("defaults: %+v", c)
	}
	if want := min(runtime.NumCPU(), maxQueues); c.Queues != want {
		t.Fatalf("default queues %d, want one per CPU (%d)", c.Queues, want)
	}
	c, err = parse([]string{"--vni=42"}, nil)
	if err != nil || c.Bridge != "vxbr42" || c.TAP != "vxtap42" {
		t.Fatalf("names follow the VNI: %+v, %v", c, err)
	}
	if !c.BatchWhenIdle {
		t.Fatal("default --idle-sched is not batch")
	}
	if c, err := parse([]string{"--idle-sched=normal"}, nil); err != nil || c.BatchWhenIdle {
		t.Fatalf("--idle-sched=normal: %+v, %v", c, err)
	}
	if c.Poll != 0 {
		t.Fatalf("default --poll %v, want 0 (off)", c.Poll)
	}
	for v, want := range map[string]time.Duration{"50us": 50 * time.Microsecond, "1ms": time.Millisecond, "0": 0, "always": poller.PollAlways} {
		if c, err := parse([]string{"--poll=" + v}, nil); err != nil || c.Poll != want {
			t.Fatalf("--poll=%s: %v, %v; want %v", v, c.Poll, err, want)
		}
	}
	if c, err = parse([]string{"--queues=3"}, nil); err != nil || c.Queues != 3 {
		t.Fatalf("--queues=3: %+v, %v", c, err)
	}
	if !c.Persist {
		t.Fatal("the TAP does not persist by default")
	}
	if c, err = parse([]string{"--persist=false"}, nil); err != nil || c.Persist {
		t.Fatalf("--persist=false: %+v, %v", c, err)
	}
	if c, err = parse(nil, map[string]string{"VXLAND_PERSIST": "false"}); err != nil || c.Persist {
		t.Fatalf("VXLAND_PERSIST=false: %+v, %v", c, err)
	}
}

func TestParseConfigEnvironment(t *testing.T) {
	env := map[string]string{
		"VXLAND_VNI":        "7",
		"VXLAND_PORT":       "8472",
		"VXLAND_LOCAL_IP":   "192.0.2.1",
		"VXLAND_PEER":       "192.0.2.2,192.0.2.3",
		"VXLAND_FDB_AGEING": "1m",
	}
	c, err := parse([]string{"--vni", "9"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.VNI != 9 {
		t.Errorf("VNI = %d: the command line must win over the environment", c.VNI)
	}
	if c.Port != 8472 || c.LocalIP != netip.MustParseAddr("192.0.2.1") || len(c.Peers) != 2 || c.FDBAgeing != time.Minute {
		t.Errorf("environment not applied: %+v", c)
	}
}

func TestParseConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string // the flag or variable the message must name
	}{
		{args: []string{"--vni", "16777216"}, want: "--vni"},
		{args: []string{"--vni", "-1"}, want: "--vni"},
		{args: []string{"--vni", "ten"}, want: "--vni"},
		{args: []string{"--port", "0"}, want: "--port"},
		{args: []string{"--port", "65536"}, want: "--port"},
		{args: []string{"--local-ip", "10.0.0.300"}, want: "--local-ip"},
		{args: []string{"--local-ip", "127.0.0.1"}, want: "--local-ip"},
		{args: []string{"--peer", "not-an-ip"}, want: "--peer"},
		{args: []string{"--peer", "224.0.0.1"}, want: "--peer"},
		{args: []string{"--local-ip", "192.0.2.1", "--peer", "2001:db8::1"}, want: "--peer"},
		{args: []string{"--mtu", "40"}, want: "--mtu"},
		{args: []string{"--tap-mtu", "40"}, want: "--tap-mtu"},
		{args: []string{"--tap-mtu", "65519"}, want: "--tap-mtu"},
		{args: []string{"--tap", "a-name-much-too-long"}, want: "--tap"},
		{args: []string{"--bridge", "br/0"}, want: "--bridge"},
		{args: []string{"--log-level", "loud"}, want: "--log-level"},
		{args: []string{"--fdb-ageing", "-5s"}, want: "--fdb-ageing"},
		{args: []string{"--fdb-max", "-1"}, want: "--fdb-max"},
		{args: []string{"--local-mac-max", "-3"}, want: "--local-mac-max"},
		{args: []string{"--local-mac-rate", "-3"}, want: "--local-mac-rate"},
		{args: []string{"--local-mac-burst", "0"}, want: "--local-mac-burst"},
		{args: []string{"--flood-rate", "-1"}, want: "--flood-rate"},
		{args: []string{"--flood-burst", "0"}, want: "--flood-burst"},
		{args: []string{"--flood-rate-total", "-1"}, want: "--flood-rate-total"},
		{env: map[string]string{"VXLAND_FDB_MAX": "many"}, want: "VXLAND_FDB_MAX"},
		{args: []string{"--queues", "-1"}, want: "--queues"},
		{args: []string{"--queues", "65"}, want: "--queues"},
		{args: []string{"--idle-sched", "fifo"}, want: "--idle-sched"},
		{args: []string{"--poll", "-1ms"}, want: "--poll"},
		{args: []string{"--poll", "never"}, want: "--poll"},
		{args: []string{"--poll", "5"}, want: "--poll"},
		{args: []string{"--metrics-listen", "8473"}, want: "--metrics-listen"},
		{args: []string{"--metrics-listen", "127.0.0.1:metrics"}, want: "--metrics-listen"},
		{args: []string{"--metrics-listen", "127.0.0.1:65536"}, want: "--metrics-listen"},
		{env: map[string]string{"VXLAND_METRICS_LISTEN": "[::1]"}, want: "--metrics-listen"},
		{args: []string{"--persist=maybe"}, want: "--persist"},
		{env: map[string]string{"VXLAND_PERSIST": "sometimes"}, want: "VXLAND_PERSIST"},
		{args: []string{"--ttl", "0"}, want: "--ttl"},
		{args: []string{"--ttl", "256"}, want: "--ttl"},
		{args: []string{"--ttl", "inherited"}, want: "--ttl"},
		{args: []string{"--tos", "256"}, want: "--tos"},
		{args: []string{"--tos", "0x1ff"}, want: "--tos"},
		{args: []string{"--tos", "-1"}, want: "--tos"},
		{args: []string{"--df", "maybe"}, want: "--df"},
		{args: []string{"--udp-csum=perhaps"}, want: "--udp-csum"},
		{args: []string{"--learning=often"}, want: "--learning"},
		{args: []string{"--group", "10.0.0.1", "--iface", "eth0", "--underlay-cidr", "10.0.0.0/24"}, want: "--group"},
		{args: []string{"--group", "239.1.1.300", "--iface", "eth0", "--underlay-cidr", "10.0.0.0/24"}, want: "--group"},
		{args: []string{"--group", "239.1.1.1", "--underlay-cidr", "10.0.0.0/24"}, want: "--iface"},
		{args: []string{"--group", "239.1.1.1", "--iface", "eth0"}, want: "--underlay-cidr"},
		{args: []string{"--group", "ff05::42", "--iface", "eth0", "--underlay-cidr", "10.0.0.0/24", "--local-ip", "10.0.0.1"}, want: "--group"},
		{args: []string{"--group", "239.1.1.1", "--iface", "eth0", "--underlay-cidr", "10.0.0.0/24", "--vni", "1,2"}, want: "--group"},
		{args: []string{"--group", "239.1.1.1", "--iface", "eth0", "--underlay-cidr", "10.0.0.0/24", "--mode", "flannel"}, want: "--group"},
		{args: []string{"--no-such-flag"}, want: "--no-such-flag"},
		{args: []string{"stray"}, want: "stray"},
		{env: map[string]string{"VXLAND_PORT": "99999"}, want: "--port"},
		{env: map[string]string{"VXLAND_VNI": "x"}, want: "VXLAND_VNI"},
	} {
		_, err := parse(tc.args, tc.env)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v %v: err = %v, want a usage error", tc.args, tc.env, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %q does not name %s", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out strings.Builder
	_, err := parseConfig([]string{"--help"}, func(string) string { return "" }, &out)
	if !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	fs, _ := newFlagSet(io.Discard)
	fs.VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(out.String(), "--"+f.Name) {
			t.Errorf("--help does not document --%s", f.Name)
		}
	})
	for _, def := range []string{"(default 1)", "(default 4789)", "(default 5m0s)", `(default "vxbr<VNI>")`} {
		if !strings.Contains(out.String(), def) {
			t.Errorf("--help does not show %s", def)
		}
	}
}

// writeConfig writes a --config file in a test's temporary directory.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vxland.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const testConfigFile = `# every kind of value a flag takes
vni: 42
peer: [192.0.2.2, 192.0.2.3]
offload: gso,gro
fdb-ageing: 1m
log-level: debug
log-format: json
fdb-max: 1000
flood-rate: 0
poll: 200us
`

func TestParseOuterHeader(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want outerHeader
	}{
		{nil, outerHeader{TTL: 64}},
		{[]string{"--ttl=1", "--tos=0xb8", "--df=unset", "--udp-csum=false"}, outerHeader{TTL: 1, TOS: 0xb8, NoDF: true, NoChecksum: true}},
		{[]string{"--ttl=inherit", "--tos=inherit", "--df=set"}, outerHeader{TTL: 64, InheritTTL: true, InheritTOS: true}},
		{[]string{"--df=inherit"}, outerHeader{TTL: 64, InheritDF: true}},
		{[]string{"--ttl=255", "--tos=46"}, outerHeader{TTL: 255, TOS: 46}},
	} {
		c, err := parse(tc.args, nil)
		if err != nil || c.Outer != tc.want {
			t.Errorf("%v: %+v, %v; want %+v", tc.args, c.Outer, err, tc.want)
		}
	}
	c, err := parse(nil, nil)
	if err != nil || !c.Learning {
		t.Fatalf("learning is not on by default: %v", err)
	}
	if c, err = parse([]string{"--learning=false"}, nil); err != nil || c.Learning {
		t.Fatalf("--learning=false: learning %v, %v", c.Learning, err)
	}
	// No UDP checksum is an IPv4 matter: an IPv6 underlay always has one.
	err = outerHeader{NoChecksum: true}.checkFamily(netip.MustParseAddr("2001:db8::1"))
	if !strings.Contains(fmt.Sprint(err), "--udp-csum") {
		t.Errorf("--udp-csum=false on IPv6: %v, want an error naming --udp-csum", err)
	}
	if err := (outerHeader{NoChecksum: true}).checkFamily(netip.MustParseAddr("192.0.2.1")); err != nil {
		t.Errorf("--udp-csum=false on IPv4: %v", err)
	}
}

func TestConfigFile(t *testing.T) {
	path := writeConfig(t, testConfigFile)
	c, err := parse([]string{"--config", path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.VNI != 42 || c.TAP != "vxtap42" || c.FDBAgeing != time.Minute || c.LogLevel != slog.LevelDebug || c.LogFormat != logJSON {
		t.Errorf("file not applied: %+v", c)
	}
	if want := []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}; !slices.Equal(c.Peers, want) {
		t.Errorf("peers %v, want %v", c.Peers, want)
	}
	if c.Limits.FDBMax != 1000 || c.Limits.FloodRate != 0 || c.Limits.FloodRateTotal != 5000 {
		t.Errorf("limits %+v, want fdb-max 1000, flood-rate 0 and the default flood-rate-total", c.Limits)
	}
	if want := (offloads{GSO: true, GRO: true}); c.Offload != want {
		t.Errorf("offload %+v, want %+v", c.Offload, want)
	}
	if c.Poll != 200*time.Microsecond {
		t.Errorf("poll %v, want 200us", c.Poll)
	}
	// An empty list is an empty list, not the default.
	c, err = parse([]string{"--config", writeConfig(t, "offload: []\n")}, nil)
	if err != nil || c.Offload != (offloads{}) {
		t.Errorf("offload: []: %+v, %v", c, err)
	}
	// So is an empty file: the defaults.
	if c, err = parse([]string{"--config", writeConfig(t, "# nothing\n")}, nil); err != nil || c.VNI != 1 {
		t.Errorf("empty file: %+v, %v", c, err)
	}
	// VXLAND_CONFIG names the file as well as --config.
	if c, err = parse(nil, map[string]string{"VXLAND_CONFIG": path}); err != nil || c.VNI != 42 {
		t.Errorf("VXLAND_CONFIG: %+v, %v", c, err)
	}
}

func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, testConfigFile)
	env := map[string]string{"VXLAND_VNI": "7", "VXLAND_PEER": "192.0.2.9"}
	c, err := parse([]string{"--config", path}, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.VNI != 7 || len(c.Peers) != 1 || c.Peers[0] != netip.MustParseAddr("192.0.2.9") {
		t.Errorf("the environment must win over the file: vni %d, peers %v", c.VNI, c.Peers)
	}
	if c.FDBAgeing != time.Minute {
		t.Errorf("the file's fdb-ageing is lost: %s", c.FDBAgeing)
	}
	c, err = parse([]string{"--config", path, "--vni", "9"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.VNI != 9 {
		t.Errorf("VNI = %d: the command line must win over the environment and the file", c.VNI)
	}
}

func TestConfigFileRejects(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want []string // what the message must name, besides the file
	}{
		{yaml: "vni: 1\nvnii: 42\n", want: []string{`"vnii"`, ":2:"}},
		{yaml: "vni: ten\n", want: []string{"vni", `"ten"`, ":1:"}},
		{yaml: "port: 80\nvni: 16777216\n", want: []string{"vni 16777216", ":2:"}},
		{yaml: "peer: [192.0.2.2, not-an-ip]\n", want: []string{"peer", "not-an-ip"}},
		{yaml: "offload: [gso, turbo]\n", want: []string{"offload", "turbo"}},
		{yaml: "log-format: xml\n", want: []string{"log-format", "xml"}},
		{yaml: "vni: 1\npoll: soon\n", want: []string{"poll", "soon", ":2:"}},
		{yaml: "vni: 1\nflood-rate: 10\nflood-burst: 0\n", want: []string{"flood-burst", ":3:"}},
		{yaml: "vni: [1, 2]\n", want: []string{"vni", "not a list"}},
		{yaml: "vni: {a: 1}\n", want: []string{"vni"}},
		{yaml: "vni: 1\nvni: 2\n", want: []string{`"vni"`, ":2:"}},
		{yaml: "config: other.yaml\n", want: []string{`"config"`}},
		{yaml: "version: true\n", want: []string{`"version"`, "not a setting"}},
		{yaml: "- vni\n", want: []string{"mapping"}},
		{yaml: "vni: [1\n", want: []string{"yaml"}},
		{yaml: "vnis:\n  - {vni: 1, group: 10.0.0.1}\n", want: []string{"group", "10.0.0.1", ":2:"}},
	} {
		path := writeConfig(t, tc.yaml)
		_, err := parse([]string{"--config", path}, nil)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: err = %v, want a usage error", tc.yaml, err)
			continue
		}
		for _, w := range append(tc.want, path) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: %q does not name %s", tc.yaml, err, w)
			}
		}
	}
	// A value that a flag overrides is the flag's; a bad one elsewhere
	// is still named with the flag, not the file.
	path := writeConfig(t, "vni: 42\n")
	if _, err := parse([]string{"--config", path, "--vni", "16777216"}, nil); err == nil || strings.Contains(err.Error(), path) {
		t.Errorf("a bad --vni blamed on the file: %v", err)
	}
	if _, err := parse([]string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, nil); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("missing file: %v", err)
	}
}

// --group and the key group of the section vnis set each VNI's
// multicast group.
func TestParseGroup(t *testing.T) {
	c, err := parse([]string{"--group", "239.1.1.1", "--iface", "eth0", "--underlay-cidr", "10.0.0.0/24"}, nil)
	if err != nil || c.VNIs[0].Group != netip.MustParseAddr("239.1.1.1") {
		t.Fatalf("--group: %+v, %v", c, err)
	}
	if c, err := parse(nil, nil); err != nil || c.VNIs[0].Group.IsValid() {
		t.Fatalf("a group without --group: %+v, %v", c, err)
	}
	path := writeConfig(t, "iface: eth0\nunderlay-cidr: [fd77::/64]\nvnis:\n  - {vni: 1, group: ff05::1}\n  - {vni: 2}\n")
	c, err = parse([]string{"--config", path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := []netip.Addr{c.VNIs[0].Group, c.VNIs[1].Group}; got[0] != netip.MustParseAddr("ff05::1") || got[1].IsValid() {
		t.Fatalf("groups of the section vnis: %v", got)
	}
}

func TestParseLogFormat(t *testing.T) {
	if c, err := parse(nil, nil); err != nil || c.LogFormat != logText {
		t.Errorf("default --log-format: %+v, %v", c, err)
	}
	if c, err := parse([]string{"--log-format", "json"}, nil); err != nil || c.LogFormat != logJSON {
		t.Errorf("--log-format json: %+v, %v", c, err)
	}
	if _, err := parse([]string{"--log-format", "xml"}, nil); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("--log-format xml: %v", err)
	}
	var out bytes.Buffer
	newLogger(&out, logJSON, slog.LevelInfo).Info("hello", "vni", 42)
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil || line["msg"] != "hello" || line["vni"] != 42.0 {
		t.Errorf("--log-format json wrote %q (%v)", out.String(), err)
	}
}

// The flags of a trusted control plane: TLS of the embedded etcd, the
// etcd password (never a flag's value) and --underlay-cidr. A bad
// combination is a usage error that names the flag.
func TestParseTrustFlags(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert, key, ca := file("cert.pem", "x"), file("key.pem", "x"), file("ca.pem", "x")
	pw, empty := file("password", "s3cret\n"), file("empty", "\n")
	emb := []string{"--embedded-etcd", dir}
	embTLS := append(slices.Clone(emb), "--embedded-etcd-certfile", cert, "--embedded-etcd-keyfile", key, "--etcd-cafile", ca)

	c, err := parse(append(slices.Clone(embTLS), "--embedded-etcd-client-cafile", ca, "--etcd-certfile", cert, "--etcd-keyfile", key), nil)
	if err != nil || c.EmbeddedEtcdCertFile != cert || c.EmbeddedEtcdKeyFile != key || c.EmbeddedEtcdClientCAFile != ca {
		t.Fatalf("embedded etcd with client certificates: %+v, %v", c, err)
	}
	c, err = parse([]string{"--etcd-endpoints", "https://192.0.2.1:2379", "--etcd-username", "vxland", "--etcd-password-file", pw}, nil)
	if err != nil || c.EtcdUsername != "vxland" || c.EtcdPassword != "s3cret" {
		t.Fatalf("--etcd-password-file: %+v, %v", c, err)
	}
	for _, s := range c.Settings {
		if strings.Contains(s.Value, "s3cret") {
			t.Errorf("the password shows in the setting %+v", s)
		}
	}
	c, err = parse([]string{"--etcd-username", "vxland"}, map[string]string{"VXLAND_ETCD_PASSWORD": "from-env"})
	if err != nil || c.EtcdPassword != "from-env" {
		t.Fatalf("VXLAND_ETCD_PASSWORD: %+v, %v", c, err)
	}
	c, err = parse([]string{"--underlay-cidr", "192.0.2.0/24,2001:db8::/64", "--underlay-cidr", "10.1.2.3/16", "--local-ip", "10.1.0.1", "--peer", "192.0.2.7"}, nil)
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/64"), netip.MustParsePrefix("10.1.0.0/16")}
	if err != nil || !slices.Equal(c.Underlay, want) {
		t.Fatalf("--underlay-cidr: %v, %v; want %v", c.Underlay, err, want)
	}

	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--embedded-etcd-certfile", cert, "--embedded-etcd-keyfile", key}, want: "--embedded-etcd-certfile needs --embedded-etcd"},
		{args: append(slices.Clone(emb), "--embedded-etcd-certfile", cert, "--etcd-cafile", ca), want: "--embedded-etcd-certfile and --embedded-etcd-keyfile"},
		{args: append(slices.Clone(emb), "--embedded-etcd-keyfile", key, "--etcd-cafile", ca), want: "--embedded-etcd-certfile and --embedded-etcd-keyfile"},
		{args: append(slices.Clone(emb), "--embedded-etcd-client-cafile", ca), want: "--embedded-etcd-client-cafile needs --embedded-etcd-certfile"},
		{args: append(slices.Clone(emb), "--embedded-etcd-certfile", cert, "--embedded-etcd-keyfile", key), want: "--embedded-etcd-certfile needs --etcd-cafile"},
		{args: append(slices.Clone(embTLS), "--embedded-etcd-client-cafile", ca), want: "--embedded-etcd-client-cafile needs --etcd-certfile"},
		{args: append(slices.Clone(emb), "--etcd-cafile", ca), want: "--etcd-cafile"},
		{args: append(slices.Clone(embTLS), "--embedded-etcd-keyfile", filepath.Join(dir, "missing")), want: "--embedded-etcd-keyfile"},
		{args: []string{"--etcd-username", "vxland"}, want: "--etcd-username needs a password"},
		{args: []string{"--etcd-password-file", pw}, want: "--etcd-password-file needs --etcd-username"},
		{env: map[string]string{"VXLAND_ETCD_PASSWORD": "x"}, want: "VXLAND_ETCD_PASSWORD needs --etcd-username"},
		{args: []string{"--etcd-username", "vxland", "--etcd-password-file", pw}, env: map[string]string{"VXLAND_ETCD_PASSWORD": "x"}, want: "--etcd-password-file and VXLAND_ETCD_PASSWORD"},
		{args: []string{"--etcd-username", "vxland", "--etcd-password-file", empty}, want: "--etcd-password-file " + empty + " is empty"},
		{args: []string{"--etcd-username", "vxland", "--etcd-password-file", filepath.Join(dir, "missing")}, want: "--etcd-password-file"},
		{args: []string{"--underlay-cidr", "192.0.2.1"}, want: "--underlay-cidr"},
		{args: []string{"--underlay-cidr", "::ffff:192.0.2.0/120"}, want: "--underlay-cidr"},
		{args: []string{"--underlay-cidr", "192.0.2.0/24", "--local-ip", "198.51.100.1"}, want: "--local-ip 198.51.100.1 is outside --underlay-cidr"},
		{args: []string{"--underlay-cidr", "192.0.2.0/24", "--peer", "198.51.100.2"}, want: "--peer 198.51.100.2 is outside --underlay-cidr"},
	} {
		_, err := parse(tc.args, tc.env)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: err = %v, want a usage error with %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// A usage error keeps the error it wraps: the etcd agent tells a refused
// login (logged as an error) from an etcd that does not answer by it.
func TestUsageErrorUnwraps(t *testing.T) {
	err := usagef("--etcd-username: %w", rpctypes.ErrAuthFailed)
	var ue *usageError
	if !errors.As(err, &ue) || !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Fatalf("%v: usage error %v, wraps ErrAuthFailed %v; want both", err, errors.As(err, &ue), errors.Is(err, rpctypes.ErrAuthFailed))
	}
	if want := "--etcd-username: " + rpctypes.ErrAuthFailed.Error(); err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	if errors.Unwrap(usagef("--x %d", 1)) != nil {
		t.Fatal("a usage error without %w wraps something")
	}
}
