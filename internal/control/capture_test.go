package control

import (
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/overlay/capture"
	"github.com/vxland/vxland/overlay/fdb"
)

func TestCaptureQueryRoundTrip(t *testing.T) {
	q := CaptureQuery{
		Filter:   capture.Filter{Inner: true, Outer: true, MAC: fdb.MAC{2, 0, 0, 0, 0, 1}, HasMAC: true, VTEP: netip.MustParseAddr("10.0.0.2")},
		Count:    10,
		Duration: 3 * time.Second,
		Snaplen:  96,
	}
	v, err := url.ParseQuery(q.Query())
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCaptureQuery(v)
	if err != nil || !reflect.DeepEqual(got, q) {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, q)
	}
}

func TestCaptureQueryNamesTheBadParameter(t *testing.T) {
	for _, tc := range []struct{ query, name string }{
		{"mac=nope", "mac"},
		{"vtep=10.0.0", "vtep"},
		{"count=-1", "count"},
		{"duration=soon", "duration"},
		{"inner=maybe", "inner"},
		{"snaplen=x", "snaplen"},
	} {
		v, _ := url.ParseQuery(tc.query)
		if _, err := ParseCaptureQuery(v); err == nil || !strings.HasPrefix(err.Error(), tc.name+":") {
			t.Errorf("%s: error %v, want one naming %s", tc.query, err, tc.name)
		}
	}
}
