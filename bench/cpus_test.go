package bench

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{
		"0":        {0},
		"1,0":      {0, 1},
		"0-2,5":    {0, 1, 2, 5},
		" 1 , 1-1": {1},
	} {
		got, err := ParseCPUList(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, err := ParseCPUList(formatCPUList(got)); err != nil || !reflect.DeepEqual(back, want) {
			t.Errorf("%q does not survive formatCPUList: %v, %v", in, back, err)
		}
	}
	for _, in := range []string{"", "x", "2-1", "-1", "1-", "0,,1", "0-999999999"} {
		if got, err := ParseCPUList(in); err == nil {
			t.Errorf("ParseCPUList(%q) = %v, want an error", in, got)
		}
	}
}

func TestOptionsRefuseMissingCPUs(t *testing.T) {
	missing := []int{runtime.NumCPU()}
	for name, o := range map[string]Options{
		"application": {VxlandPath: "v", AppCPUs: missing},
		"vxland":      {VxlandPath: "v", VxlandCPUs: missing},
	} {
		if _, err := o.withDefaults(); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("%s CPUs %v: %v, want an error saying the CPU does not exist", name, missing, err)
		}
	}
}

// The report says where the applications and vxland ran, when confined.
func TestMarkdownSaysWhichCPUs(t *testing.T) {
	res := fakeResults(1)
	if md := Markdown(res); strings.Contains(md, "CPUs: applications") {
		t.Error("an unconfined run reports CPUs")
	}
	res.Options.AppCPUs, res.Options.VxlandCPUs = []int{0}, []int{1, 2}
	if md, want := Markdown(res), "CPUs: applications (iperf3, echo requests) on 0, vxland on 1,2"; !strings.Contains(md, want) {
		t.Errorf("report lacks %q", want)
	}
}
