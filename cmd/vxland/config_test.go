package main

import (
	"errors"
	"io"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
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
	if c, err = parse([]string{"--queues=3"}, nil); err != nil || c.Queues != 3 {
		t.Fatalf("--queues=3: %+v, %v", c, err)
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
		{args: []string{"--tap", "a-name-much-too-long"}, want: "--tap"},
		{args: []string{"--bridge", "br/0"}, want: "--bridge"},
		{args: []string{"--log-level", "loud"}, want: "--log-level"},
		{args: []string{"--fdb-ageing", "-5s"}, want: "--fdb-ageing"},
		{args: []string{"--queues", "-1"}, want: "--queues"},
		{args: []string{"--queues", "65"}, want: "--queues"},
		{args: []string{"--idle-sched", "fifo"}, want: "--idle-sched"},
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
