// Package health answers a running vxland's probes: GET /healthz (the
// process answers) and GET /readyz (every readiness check passes). Both
// modes of the daemon use it, and the control socket and the metrics
// listener serve the same checks.
//
// A check runs when /readyz is asked, so that it reports the state of the
// host at that moment (a TAP taken down, a bridge detached), not what was
// true at start. A check whose subject does not exist yet holds its place
// as Pending and is replaced once it does.
package health

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// Check returns why something is not ready, or nil when it is.
type Check func() error

// Pending is a check that is not ready for the reason why.
func Pending(why string) Check {
	err := errors.New(why)
	return func() error { return err }
}

// Checks is an ordered set of named readiness checks. The zero value has
// none and is ready.
type Checks struct {
	mu   sync.Mutex
	list []namedCheck
}

type namedCheck struct {
	name  string
	check Check
}

// Set adds the check called name, or replaces it where it stands.
func (c *Checks) Set(name string, check Check) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.list {
		if c.list[i].name == name {
			c.list[i].check = check
			return
		}
	}
	c.list = append(c.list, namedCheck{name, check})
}

// Result is the outcome of one check.
type Result struct {
	Name string
	Err  error
}

// Run runs every check in order and reports whether all passed.
func (c *Checks) Run() (ready bool, results []Result) {
	c.mu.Lock()
	list := append([]namedCheck(nil), c.list...)
	c.mu.Unlock()
	ready = true
	for _, nc := range list {
		err := nc.check()
		ready = ready && err == nil
		results = append(results, Result{nc.name, err})
	}
	return ready, results
}

// Register serves /healthz and /readyz on mux. /readyz answers 200 when
// every check passes and 503 otherwise, with one line per check:
// "[+]name ok" or "[-]name: why".
func (c *Checks) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ready, results := c.Run()
		var b strings.Builder
		for _, r := range results {
			if r.Err != nil {
				fmt.Fprintf(&b, "[-]%s: %v\n", r.Name, r.Err)
			} else {
				fmt.Fprintf(&b, "[+]%s ok\n", r.Name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(w, b.String())
	})
}
