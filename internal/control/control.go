// Package control serves a running vxland's state as JSON over HTTP on a
// Unix socket, and reads it back. The socket lives in the file system, so a
// tool in any network namespace of the host can read a daemon that runs in
// another one.
//
// Endpoints: GET /stats (counters, Stats), GET /fdb (FDB entries and
// flood lists, FDBState), GET /peers (every VTEP: why it is known, its
// MACs and traffic, []fdb.VTEPState), GET /config (the daemon's effective
// configuration), GET /trace?to=MAC|IPv4 (what would happen to a frame to
// that address now, Trace), GET /runtime (the Go runtime's allocation
// totals, Runtime: how a benchmark checks that forwarding allocates
// nothing), and the Go profiler under /debug/pprof/ (CPU profile, heap,
// goroutines).
// CaptureHandler serves GET /capture, a pcap stream of what the data plane
// forwards (vxland capture).
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/metrics"
	"time"

	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
)

// FDBState is the body of GET /fdb.
type FDBState struct {
	Entries []fdb.Entry     `json:"entries"`
	Flood   []fdb.FloodList `json:"flood"`
}

// Runtime is the body of GET /runtime, read from runtime/metrics.
type Runtime struct {
	// HeapAllocBytes and HeapAllocObjects are cumulative since start.
	HeapAllocBytes   uint64 `json:"heap_alloc_bytes_total"`
	HeapAllocObjects uint64 `json:"heap_alloc_objects_total"`
	Goroutines       uint64 `json:"goroutines"`
}

// ReadRuntime reads the runtime's totals.
func ReadRuntime() Runtime {
	samples := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/allocs:objects"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(samples)
	val := func(s metrics.Sample) uint64 {
		if s.Value.Kind() == metrics.KindUint64 {
			return s.Value.Uint64()
		}
		return 0
	}
	return Runtime{HeapAllocBytes: val(samples[0]), HeapAllocObjects: val(samples[1]), Goroutines: val(samples[2])}
}

// Stats is the body of GET /stats: the data plane's counters, and how
// often the host setup around it was repaired.
type Stats struct {
	overlay.Stats
	// Heals counts the repairs of the TAP's host setup (a deleted,
	// detached or downed TAP, a deleted bridge): hostnet.Healer.
	Heals uint64 `json:"heals"`
}

// Source is what the server reports on: a data plane (overlay.Overlay).
type Source interface {
	Stats() overlay.Stats
	FDB() *fdb.Table
	// VNI is the data plane's VNI; Neighbors its ARP suppression table,
	// nil when it has none.
	VNI() uint32
	Neighbors() *fdb.Neighbors
}

// Listen opens the control socket at path. A socket file left behind by a
// daemon that is gone is replaced; one that a live daemon answers on is not.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s is in use by another process", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
}

// Handler returns the HTTP handler that reports on src, serves config
// (marshalled to JSON) as the daemon's configuration, and reports heals
// (nil: none) as the count of host setup repairs.
func Handler(src Source, config any, heals func() uint64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		s := Stats{Stats: src.Stats()}
		if heals != nil {
			s.Heals = heals()
		}
		writeJSON(w, s)
	})
	// Profiles of the running daemon, e.g.
	//   curl --unix-socket S http://x/debug/pprof/profile?seconds=10 > cpu.pprof
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /runtime", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, ReadRuntime())
	})
	mux.HandleFunc("GET /fdb", func(w http.ResponseWriter, r *http.Request) {
		writeFDB(w, src.FDB())
	})
	mux.HandleFunc("GET /peers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, src.FDB().VTEPs())
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, config)
	})
	mux.HandleFunc("GET /trace", func(w http.ResponseWriter, r *http.Request) {
		t, err := trace(src, r.URL.Query().Get("to"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, t)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeFDB writes f as an FDBState, one entry at a time: the daemon never
// holds the whole table as JSON (nor as Entries), however large it is.
func writeFDB(w http.ResponseWriter, f *fdb.Table) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	if _, err := io.WriteString(w, `{"entries":[`); err != nil {
		return
	}
	sep := ""
	for e := range f.All() {
		if _, err := io.WriteString(w, sep); err != nil {
			return
		}
		if err := enc.Encode(e); err != nil {
			return
		}
		sep = ","
	}
	if _, err := io.WriteString(w, `],"flood":`); err != nil {
		return
	}
	if err := enc.Encode(f.Floods()); err != nil {
		return
	}
	_, _ = io.WriteString(w, "}\n")
}

// Serve serves h on ln until ctx is done, then closes ln and removes the
// socket file.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	err := srv.Serve(ln)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ErrNoDaemon is returned by Get when nothing listens on the socket.
var ErrNoDaemon = errors.New("no vxland answers")

// Get fetches endpoint (e.g. "/stats") from the daemon at the socket path
// and decodes the JSON answer into v.
func Get(ctx context.Context, path, endpoint string, v any) error {
	return Do(ctx, path, http.MethodGet, endpoint, nil, v)
}

// Do sends a request of method to endpoint of the daemon at the socket
// path, with body (unless nil) as JSON, and decodes the JSON answer into
// v. An answer other than 200 OK is an error that holds the daemon's
// reason.
func Do(ctx context.Context, path, method, endpoint string, body, v any) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer client.CloseIdleConnections()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vxland"+endpoint, rd)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	var dial *net.OpError
	if errors.As(err, &dial) && dial.Op == "dial" {
		return fmt.Errorf("%w on %s: %v", ErrNoDaemon, path, dial.Err)
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("control socket %s: %s %s: %s: %s", path, method, endpoint, resp.Status, bytes.TrimSpace(b))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// FDBLines formats f as `bridge fdb show` does: one line per entry, and
// the flood list as entries for 00:00:00:00:00:00, the kernel's way of
// writing it. Static entries are "permanent", those of the control plane
// (etcd, flannel) "extern_learn", as the kernel calls entries that a
// controller installs; learned ones show their age.
func FDBLines(f FDBState) []string {
	var out []string
	for _, e := range f.Entries {
		l := fmt.Sprintf("%s dst %s vni %d self", e.MAC, e.VTEP.Addr(), e.VNI)
		switch e.Origin {
		case fdb.OriginStatic.String():
			l += " permanent"
		case fdb.OriginRemote.String():
			l += " extern_learn"
		case fdb.OriginLearned.String():
			l += fmt.Sprintf(" learned age %s", e.Age.Round(time.Second))
		}
		out = append(out, l)
	}
	for _, fl := range f.Flood {
		for _, v := range fl.VTEPs {
			out = append(out, fmt.Sprintf("00:00:00:00:00:00 dst %s vni %d self permanent", v.Addr(), fl.VNI))
		}
	}
	return out
}
