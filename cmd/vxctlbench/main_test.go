package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBadFlags: every bad value is refused before anything starts, with
// exit status 2 and a message naming the flag.
func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--hosts", "1"}, "--hosts"},
		{[]string{"--hosts", "50,x"}, "--hosts"},
		{[]string{"--macs", "0"}, "--macs"},
		{[]string{"--hosts", "1000", "--macs", "2000"}, "--macs"},
		{[]string{"--publish-rate", "0"}, "--publish-rate"},
		{[]string{"--churn-rate", "0"}, "--churn-rate"},
		{[]string{"--churn-rate", "1.5"}, "--churn-rate"},
		{[]string{"--churn", "0s"}, "--churn"},
		{[]string{"--wait", "-1s"}, "--wait"},
		{[]string{"--cpuprofile", "/nonexistent/dir/cpu.out"}, "--cpuprofile"},
		{[]string{"--real-host", "/nonexistent/vxland"}, "--real-host"},
		{[]string{"--real-host", "/"}, "--real-host"},
		{[]string{"extra"}, "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit status %d, want 2", tc.args, code)
		}
		if !strings.Contains(stderr.String(), tc.flag) {
			t.Errorf("%q: message %q does not name %s", tc.args, stderr.String(), tc.flag)
		}
	}
}
