package control

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/vxland/vxland/overlay/fdb"
)

// FuzzParseCaptureQuery gives GET /capture any query. A refusal names
// the parameter it is about; what is taken survives the round trip
// through Query, which vxland capture sends.
func FuzzParseCaptureQuery(f *testing.F) {
	for _, seed := range []string{"inner=true&outer=false&mac=02:00:00:00:00:01&vtep=10.0.0.2&count=10&duration=3s&snaplen=96",
		"mac=nope", "vtep=fe80::1%25eth0", "count=-1", "duration=soon", "inner=maybe", "snaplen=x", "mac=0200.0000.0001&duration=-0s"} {
		f.Add(seed)
	}
	names := []string{"inner", "outer", "count", "snaplen", "mac", "vtep", "duration"}
	f.Fuzz(func(t *testing.T, raw string) {
		v, _ := url.ParseQuery(raw) // what a server hands the handler, even from a bad query
		q, err := ParseCaptureQuery(v)
		if err != nil {
			for _, n := range names {
				if strings.HasPrefix(err.Error(), n+": ") {
					return
				}
			}
			t.Fatalf("error %q names no parameter", err)
		}
		if q.Count < 0 || q.Snaplen < 0 || q.Duration < 0 {
			t.Fatalf("negative bound taken: %+v", q)
		}
		again, err := url.ParseQuery(q.Query())
		if err != nil {
			t.Fatalf("Query() = %q: %v", q.Query(), err)
		}
		got, err := ParseCaptureQuery(again)
		if err != nil || !reflect.DeepEqual(got, q) {
			t.Fatalf("round trip of %+v through %q = %+v, %v", q, q.Query(), got, err)
		}
	})
}

// FuzzParseTraceTarget gives vxland trace any argument. It is a MAC or
// an IPv4 address, never both, and reads back from its own string; a
// refusal quotes the argument.
func FuzzParseTraceTarget(f *testing.F) {
	for _, seed := range []string{"02:00:00:00:00:0a", "10.200.0.12", "::ffff:10.0.0.1", "fd00::1", "0200.0000.000a",
		"02-00-00-00-00-0a", "00:00:00:00:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:00", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mac, ip, err := ParseTraceTarget(s)
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
				t.Fatalf("error %q does not quote %q", err, s)
			}
			return
		}
		if ip.IsValid() {
			if mac != (fdb.MAC{}) || !ip.Is4() {
				t.Fatalf("%q: MAC %v, address %v", s, mac, ip)
			}
			if m, back, err := ParseTraceTarget(ip.String()); err != nil || back != ip || m != mac {
				t.Fatalf("%q gives %v, which reads back as %v, %v, %v", s, ip, m, back, err)
			}
			return
		}
		if m, back, err := ParseTraceTarget(mac.String()); err != nil || m != mac || back.IsValid() {
			t.Fatalf("%q gives %v, which reads back as %v, %v, %v", s, mac, m, back, err)
		}
	})
}
