package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSeveralVNIs(t *testing.T) {
	for _, args := range [][]string{{"--vni", "42", "--vni", "43"}, {"--vni", "42,43"}} {
		c, err := parse(args, nil)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		want := []vniPlane{
			{VNI: 42, Bridge: "vxbr42", TAP: "vxtap42", ControlSocket: "/run/vxland/vxtap42.sock"},
			{VNI: 43, Bridge: "vxbr43", TAP: "vxtap43", ControlSocket: "/run/vxland/vxtap43.sock"},
		}
		if !slices.Equal(c.VNIs, want) || c.VNI != 42 {
			t.Errorf("%v: VNIs %+v, VNI %d; want %+v", args, c.VNIs, c.VNI, want)
		}
	}
	c, err := parse([]string{"--control-socket", "/tmp/x.sock"}, map[string]string{"VXLAND_VNI": "7,8"})
	if err != nil || len(c.VNIs) != 2 || c.VNIs[0].ControlSocket != "/tmp/x.sock" || c.VNIs[1].ControlSocket != "/tmp/x.sock" {
		t.Errorf("VXLAND_VNI=7,8 with --control-socket: %+v, %v; want both VNIs on the one socket", c, err)
	}
	// With etcd, each VNI has its own agent (one registration, MAC
	// publication and watch per VNI).
	c, err = parse([]string{"--vni", "42,43", "--etcd-endpoints", "http://127.0.0.1:2379"}, nil)
	if err != nil || len(c.VNIs) != 2 || !c.UseEtcd() {
		t.Errorf("two VNIs with etcd: %+v, %v", c, err)
	}
	c, err = parse([]string{"--vni", "42"}, nil)
	if err != nil || !slices.Equal(c.VNIs, []vniPlane{{VNI: 42, Bridge: "vxbr42", TAP: "vxtap42", ControlSocket: "/run/vxland/vxtap42.sock"}}) {
		t.Errorf("one VNI: %+v, %v", c, err)
	}
}

func TestVNISection(t *testing.T) {
	path := writeConfig(t, "vnis:\n  - {vni: 42, bridge: br-blue, tap: tap-blue, mtu: 1400}\n  - vni: 43\n")
	c, err := parse([]string{"--config", path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []vniPlane{
		{VNI: 42, Bridge: "br-blue", TAP: "tap-blue", MTU: 1400, ControlSocket: "/run/vxland/tap-blue.sock"},
		{VNI: 43, Bridge: "vxbr43", TAP: "vxtap43", ControlSocket: "/run/vxland/vxtap43.sock"},
	}
	if !slices.Equal(c.VNIs, want) {
		t.Errorf("VNIs %+v, want %+v", c.VNIs, want)
	}
	// --vni picks from the section; a lone VNI takes its names.
	c, err = parse([]string{"--config", path, "--vni", "42"}, nil)
	if err != nil || c.Bridge != "br-blue" || c.TAP != "tap-blue" || c.MTU != 1400 || c.ControlSocket != "/run/vxland/tap-blue.sock" {
		t.Errorf("--vni 42 with the section: %+v, %v", c, err)
	}
}

func TestSeveralVNIsRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		yaml string
		want []string
	}{
		{args: []string{"--vni", "42", "--vni", "42"}, want: []string{"--vni", "42 given twice"}},
		{args: []string{"--vni", "42,16777216"}, want: []string{"--vni", "16777216"}},
		{args: []string{"--vni", "42,x"}, want: []string{"vni", `"x"`}},
		{args: []string{"--vni", "42,43", "--bridge", "br0"}, want: []string{"--bridge", "several --vni"}},
		{args: []string{"--vni", "42,43", "--tap", "t0"}, want: []string{"--tap", "several --vni"}},
		{args: []string{"--vni", "42,43", "--mode", "flannel", "--etcd-endpoints", "http://127.0.0.1:2379"}, want: []string{"--vni", "flannel"}},
		{yaml: "vnis: [{vni: 42, tap: same}, {vni: 43, tap: same}]\n", want: []string{"same", "VNI 42"}},
		{yaml: "vnis: [{vni: 42, colour: blue}]\n", want: []string{"vnis", `"colour"`, ":1:"}},
		{yaml: "vnis: [{bridge: b}]\n", want: []string{"without vni"}},
		{yaml: "vnis: [{vni: 42, mtu: 20}]\n", want: []string{"mtu", `"20"`}},
		{yaml: "vnis: [{vni: 42, bridge: a-name-too-long-for-linux}, {vni: 43}]\n", want: []string{"a-name-too-long-for-linux"}},
		{yaml: "vni: 42\nvnis: [{vni: 43}]\n", want: []string{"vnis", "keep one"}},
		{yaml: "vnis: 42\n", want: []string{"vnis", "list"}},
	} {
		args := tc.args
		if tc.yaml != "" {
			args = []string{"--config", writeConfig(t, tc.yaml)}
		}
		_, err := parse(args, nil)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v %q: err = %v, want a usage error", tc.args, tc.yaml, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %q: %q does not name %s", tc.args, tc.yaml, err, w)
			}
		}
	}
}
