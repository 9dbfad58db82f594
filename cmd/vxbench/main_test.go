package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad invocations stop before anything is built, with status 2 and a line
// that names the problem.
func TestBadInvocations(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "no-such-vxland")
	// An executable that exists, so that the checks after --vxland's are reached.
	present, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rounds"}, "flag needs an argument"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--underlay", "fibre"}, `--underlay: unknown underlay mode "fibre"`},
		{[]string{"--configs", "underlay,flannel"}, `--configs: unknown configuration "flannel"`},
		{[]string{"--tests", "rtt,ping"}, `--tests: unknown test "ping"`},
		{[]string{"--vxland", exe}, "vxland executable"},
		{[]string{"--app-cpus", "x"}, `--app-cpus: "x" is not a CPU list`},
		{[]string{"--vxland-cpus", "4096"}, "--vxland-cpus: CPU 4096 does not exist"},
		{[]string{"--configs", "vxland,vxland-base"}, "--configs: vxland-base needs --vxland-base"},
		{[]string{"--vxland-base", present, "--configs", "kernel-vxlan,vxland"}, "--vxland-base: --configs does not name vxland-base"},
		{[]string{"--vxland", present, "--vxland-base", exe}, "--vxland-base: stat " + exe},
		{[]string{"--poll-flags", "--idle-sched=normal", "--configs", "vxland"}, "--poll-flags: --configs does not name vxland-poll"},
		{[]string{"--poll-flags", " "}, "--poll-flags: no flags given"},
		{[]string{"--configs", "vxland-poll", "--poll-flags", "--idle-sched normal"}, `--poll-flags: "normal" is not a flag`},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2; stderr: %s", tc.args, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: stderr %q lacks %q", tc.args, stderr.String(), tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: wrote to stdout: %s", tc.args, stdout.String())
		}
	}
}

func TestHelpExitsZero(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--help"}, &stdout, &stderr); code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	for _, flag := range []string{"--quick", "--rounds", "--underlay", "--out", "--no-install", "--vxland-base", "--poll-flags"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("--help does not mention %s:\n%s", flag, stderr.String())
		}
	}
}

func TestStatusLineWithoutTerminal(t *testing.T) {
	var b bytes.Buffer
	s := newStatusLine(&b)
	s.show("one")
	s.show("two")
	s.done()
	if b.String() != "one\ntwo\n" {
		t.Errorf("status output %q, want one line per update", b.String())
	}
}
