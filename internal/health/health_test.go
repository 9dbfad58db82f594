package health

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func get(t *testing.T, mux *http.ServeMux, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// /readyz is 503 while any check fails, names each check in order with
// its reason, runs the checks at each request, and a check set again
// keeps its place. /healthz answers regardless.
func TestReadyzRunsEveryCheck(t *testing.T) {
	var c Checks
	mux := http.NewServeMux()
	c.Register(mux)
	if code, _ := get(t, mux, "/readyz"); code != http.StatusOK {
		t.Fatalf("no checks: /readyz %d, want 200", code)
	}
	var tapUp atomic.Bool
	c.Set("tap", func() error {
		if !tapUp.Load() {
			return errors.New("TAP vxtap0 is down")
		}
		return nil
	})
	c.Set("etcd", Pending("first list of etcd not done yet"))
	code, body := get(t, mux, "/readyz")
	if code != http.StatusServiceUnavailable || body != "[-]tap: TAP vxtap0 is down\n[-]etcd: first list of etcd not done yet\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	tapUp.Store(true)
	if code, body := get(t, mux, "/readyz"); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "[+]tap ok\n[-]etcd") {
		t.Fatalf("/readyz after the TAP came up = %d %q", code, body)
	}
	c.Set("etcd", func() error { return nil })
	if code, body := get(t, mux, "/readyz"); code != http.StatusOK || body != "[+]tap ok\n[+]etcd ok\n" {
		t.Fatalf("/readyz with every check passing = %d %q", code, body)
	}
	tapUp.Store(false)
	if code, _ := get(t, mux, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz after the TAP went down = %d, want 503", code)
	}
	if code, body := get(t, mux, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
}
