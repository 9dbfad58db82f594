//go:build linux

package hostnet

import (
	"strings"
	"testing"

	"github.com/vxland/vxland/internal/netlab"
)

// CheckTAP, the readiness check of the TAP, says what is wrong: missing,
// down, or off its bridge.
func TestCheckTAP(t *testing.T) {
	ns, err := netlab.NewForTest(t).Namespace("chk")
	if err != nil {
		t.Skipf("no network namespaces here: %v", err)
	}
	check := func(bridge string) error {
		var cerr error
		if err := ns.Do(func() error { cerr = CheckTAP("t0", bridge); return nil }); err != nil {
			t.Fatal(err)
		}
		return cerr
	}
	expect := func(when, bridge, want string) {
		t.Helper()
		err := check(bridge)
		switch {
		case want == "" && err != nil:
			t.Fatalf("%s: CheckTAP = %v, want ready", when, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Fatalf("%s: CheckTAP = %v, want an error saying %q", when, err, want)
		}
	}
	expect("no TAP", "br0", "TAP t0")
	ns.MustRun(t, "ip", "tuntap", "add", "dev", "t0", "mode", "tap")
	ns.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	expect("TAP down", "br0", "is down")
	ns.MustRun(t, "ip", "link", "set", "t0", "up")
	expect("TAP up, no bridge asked", "", "")
	expect("TAP up, off its bridge", "br0", "not attached to bridge br0")
	ns.MustRun(t, "ip", "link", "set", "t0", "master", "br0")
	expect("TAP up, on its bridge", "br0", "")
	ns.MustRun(t, "ip", "link", "del", "br0")
	expect("bridge deleted", "br0", "bridge br0")
}
