package main

import (
	"io"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
)

func TestPrintStatsShowsQueues(t *testing.T) {
	s := control.Stats{Heals: 2, Stats: overlay.Stats{RxPackets: 30, TxPackets: 12, NDAnswered: 5, NDFlooded: 6, Drops: map[string]uint64{"short": 1},
		Queues: []overlay.QueueStats{{RxPackets: 10, TxPackets: 2}, {RxPackets: 20, TxPackets: 10}}}}
	var b strings.Builder
	printStats(&b, s)
	for _, want := range []string{"queue 0", "10 rx packets", "queue 1", "20 rx packets", "10 tx packets", "drop short"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
	if !regexp.MustCompile(`host setup heals +2\n`).MatchString(b.String()) {
		t.Errorf("output lacks the heals:\n%s", b.String())
	}
	if !regexp.MustCompile(`\nnd +5 answered +6 flooded\n`).MatchString(b.String()) {
		t.Errorf("output lacks the neighbour solicitations:\n%s", b.String())
	}
	// One queue says nothing the totals do not.
	s.Queues = s.Queues[:1]
	b.Reset()
	printStats(&b, s)
	if strings.Contains(b.String(), "queue") {
		t.Errorf("a single queue is listed:\n%s", b.String())
	}
}

// show and trace find the daemon's socket as the daemon names it, from
// the same flags and environment.
func TestClientFindsTheDaemonsSocket(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "/run/vxland/vxtap1.sock"},
		{[]string{"--vni", "42"}, nil, "/run/vxland/vxtap42.sock"},
		{nil, map[string]string{"VXLAND_VNI": "42"}, "/run/vxland/vxtap42.sock"},
		{[]string{"--vni=7"}, map[string]string{"VXLAND_VNI": "42"}, "/run/vxland/vxtap7.sock"},
		{[]string{"--tap", "t0", "--vni", "42"}, nil, "/run/vxland/t0.sock"},
		{[]string{"--mode", "flannel"}, nil, "/run/vxland/flannel.sock"},
		{nil, map[string]string{"VXLAND_CONTROL_SOCKET": "/tmp/x.sock"}, "/tmp/x.sock"},
	} {
		c, code := parseClient("vxland show", showUsage, append(tc.args, "stats"), func(k string) string { return tc.env[k] }, io.Discard, io.Discard)
		if c == nil {
			t.Fatalf("%v %v: exit %d", tc.args, tc.env, code)
		}
		// The daemon configured alike listens there.
		dargs := tc.args
		if slices.Contains(tc.args, "flannel") {
			dargs = append(dargs, "--etcd-endpoints", "http://127.0.0.1:2379")
		}
		cfg, err := parseConfig(dargs, func(k string) string { return tc.env[k] }, io.Discard)
		if err != nil || cfg.ControlSocket != c.sock {
			t.Errorf("%v %v: daemon listens on %v (%v), show asks %s", tc.args, tc.env, cfg, err, c.sock)
		}
		if c.sock != tc.want || !slices.Equal(c.args, []string{"stats"}) {
			t.Errorf("%v %v: socket %s, args %v; want %s, [stats]", tc.args, tc.env, c.sock, c.args, tc.want)
		}
	}
}

func TestClientUsage(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"show", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Usage: vxland show") || errb.Len() != 0 {
		t.Fatalf("show --help: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"trace", "-h"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "--control-socket") {
		t.Fatalf("trace -h: exit %d, stdout %q", code, out.String())
	}
	for _, args := range [][]string{
		{"show"}, {"show", "nonsense"}, {"show", "stats", "-o", "yaml"}, {"show", "stats", "--vni", "16777216"},
		{"show", "stats", "--mode", "l3"}, {"show", "stats", "--bogus"}, {"trace"}, {"trace", "02:00"}, {"trace", "fd00::1"},
	} {
		errb.Reset()
		if code := run(args, io.Discard, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a reason", args, code, errb.String())
		}
	}
}

func TestShowWithoutDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	var errb strings.Builder
	code := run([]string{"show", "peers", "--control-socket", sock}, io.Discard, &errb)
	if code != 1 || !strings.Contains(errb.String(), "no vxland answers on "+sock) {
		t.Fatalf("exit %d, stderr %q; want 1 and the path it tried", code, errb.String())
	}
}

func TestPrintFDBLikeBridge(t *testing.T) {
	vtep := netip.MustParseAddrPort("10.0.0.2:4789")
	var b strings.Builder
	printFDB(&b, control.FDBState{
		Entries: []fdb.Entry{
			{VNI: 42, MAC: "02:00:00:00:00:01", VTEP: vtep, Origin: "static"},
			{VNI: 42, MAC: "02:00:00:00:00:02", VTEP: vtep, Origin: "remote"},
			{VNI: 42, MAC: "02:00:00:00:00:03", VTEP: vtep, Origin: "learned", Age: 12 * time.Second},
		},
		Flood: []fdb.FloodList{{VNI: 42, VTEPs: []netip.AddrPort{vtep}}},
	})
	want := `02:00:00:00:00:01 dst 10.0.0.2 vni 42 self permanent
02:00:00:00:00:02 dst 10.0.0.2 vni 42 self extern_learn
02:00:00:00:00:03 dst 10.0.0.2 vni 42 self learned age 12s
00:00:00:00:00:00 dst 10.0.0.2 vni 42 self permanent
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// The effective configuration says what each flag is and where it came
// from, with the values the daemon derives.
func TestConfigSettings(t *testing.T) {
	c, err := parse([]string{"--vni", "42", "--local-ip", "192.0.2.1"}, map[string]string{"VXLAND_PORT": "8472", "VXLAND_VNI": "9"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]setting{}
	for _, s := range c.Settings {
		got[s.Flag] = s
	}
	for _, want := range []setting{
		{"vni", "42", "command line"},
		{"port", "8472", "VXLAND_PORT"},
		{"tap", "vxtap42", "default"},
		{"control-socket", "/run/vxland/vxtap42.sock", "default"},
		{"fdb-ageing", "5m0s", "default"},
	} {
		if got[want.Flag] != want {
			t.Errorf("setting %+v, want %+v", got[want.Flag], want)
		}
	}
}
