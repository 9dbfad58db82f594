package netlab

import (
	"os"
	"strings"
	"testing"
)

func TestSysctlStaysInNamespace(t *testing.T) {
	l := NewForTest(t)
	a, b := mustNS(t, l, "a"), mustNS(t, l, "b")
	const key = "net.ipv4.ip_forward"
	root, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	mustOK(t, err)

	mustOK(t, a.SetSysctl(key, "1"))
	if got, err := a.Sysctl(key); err != nil || got != "1" {
		t.Errorf("%s in a = %q, %v; want 1", key, got, err)
	}
	if got, err := b.Sysctl(key); err != nil || got != "0" {
		t.Errorf("%s in b = %q, %v; want 0 (a fresh namespace)", key, got, err)
	}
	after, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	mustOK(t, err)
	if string(after) != string(root) {
		t.Errorf("root namespace's %s changed from %q to %q", key, root, after)
	}

	for _, bad := range []string{"kernel.panic", "vm.swappiness", "net/ipv4/ip_forward", "net.a b"} {
		if err := a.SetSysctl(bad, "1"); err == nil || !strings.Contains(err.Error(), "net.") {
			t.Errorf("SetSysctl(%q) = %v, want a refusal", bad, err)
		}
	}
	if err := a.SetSysctl(key, "1\n"); err == nil {
		t.Error("SetSysctl accepted a value with a newline")
	}
}
