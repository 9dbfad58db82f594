package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/health"
	"github.com/vxland/vxland/internal/metrics"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/hostnet"
)

// The readiness checks, in the order /readyz lists them.
const (
	checkTAP      = "tap"      // the TAP is up (and on its bridge in L2 mode)
	checkUnderlay = "underlay" // the UDP sockets are bound
	checkEtcd     = "etcd"     // the first full list of etcd is applied
	checkFlannel  = "flannel"  // the flannel node holds a lease, wrote subnet.env and installed every route
)

// status is what a running daemon reports on, the same in both modes:
// health from the start, on the control socket, --metrics-listen and (in
// flannel mode) --healthz-listen; the data plane's endpoints and metrics
// once it is up.
type status struct {
	ready   health.Checks
	metrics *metrics.Registry
	// dataPlanes serve /stats, /fdb and the rest of the control socket,
	// by VNI, once the data plane is up.
	dataPlanes atomic.Pointer[map[uint32]http.Handler]
	// planes exports the data planes' metrics; a change of the VNIs
	// served replaces it (dataPlanesUp).
	planes *metrics.Slot

	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

// pending is a readiness check that does not pass until the daemon sets
// it, and why.
type pending struct{ name, why string }

// startStatus starts the servers with the given checks pending; the
// servers stop when ctx is done, and wait returns their errors. On error
// none is started.
func startStatus(ctx context.Context, cfg *config, log *slog.Logger, checks ...pending) (*status, error) {
	st := &status{metrics: metrics.NewRegistry(versionString())}
	for _, c := range checks {
		st.ready.Set(c.name, health.Pending(c.why))
	}
	// Every listener is bound before any is served, so that a client
	// answered on one finds the others listening.
	type listener struct {
		what string
		ln   net.Listener
		h    http.Handler
	}
	var lns []listener
	closeAll := func() {
		for _, l := range lns {
			l.ln.Close()
		}
	}
	// One control socket per VNI, or one for all of them
	// (--control-socket): each answers for its VNI unless asked for
	// another (?vni=).
	sockets := map[string]bool{}
	for _, p := range cfg.VNIs {
		if sockets[p.ControlSocket] {
			continue
		}
		sockets[p.ControlSocket] = true
		ln, err := control.Listen(p.ControlSocket)
		if err != nil {
			closeAll()
			return st, err
		}
		lns = append(lns, listener{"control socket", ln, st.controlHandler(p.VNI)})
	}
	for _, l := range []struct {
		flag, addr string
		h          http.Handler
	}{
		{"--metrics-listen", cfg.MetricsListen, st.metrics.Handler(&st.ready)},
		{"--healthz-listen", cfg.HealthzListen, st.healthHandler()},
	} {
		if l.addr == "" {
			continue
		}
		tl, err := net.Listen("tcp", l.addr)
		if err != nil {
			closeAll()
			return st, usagef("%s %s: %v", l.flag, l.addr, err)
		}
		log.Info("serving", "flag", l.flag, "addr", tl.Addr())
		lns = append(lns, listener{l.flag, tl, l.h})
	}
	for _, l := range lns {
		st.serve(ctx, l.what, l.ln, l.h)
	}
	return st, nil
}

func (st *status) serve(ctx context.Context, what string, ln net.Listener, h http.Handler) {
	st.wg.Go(func() {
		if err := control.Serve(ctx, ln, h); err != nil {
			st.mu.Lock()
			st.errs = append(st.errs, fmt.Errorf("%s: %w", what, err))
			st.mu.Unlock()
		}
	})
}

// wait waits for the servers to stop (ctx done) and returns their errors.
func (st *status) wait() error {
	st.wg.Wait()
	st.mu.Lock()
	defer st.mu.Unlock()
	return errors.Join(st.errs...)
}

func (st *status) healthHandler() *http.ServeMux {
	mux := http.NewServeMux()
	st.ready.Register(mux)
	return mux
}

// controlHandler adds the data plane's endpoints to the health endpoints:
// those of the VNI named by the query parameter vni, else of vni.
func (st *status) controlHandler(vni uint32) http.Handler {
	mux := st.healthHandler()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		planes := st.dataPlanes.Load()
		if planes == nil {
			http.Error(w, "data plane not up yet", http.StatusServiceUnavailable)
			return
		}
		want := vni
		if q := r.URL.Query().Get("vni"); q != "" {
			n, err := strconv.ParseUint(q, 10, 32)
			if err != nil {
				http.Error(w, fmt.Sprintf("vni %q is not a number", q), http.StatusBadRequest)
				return
			}
			want = uint32(n)
		}
		h, ok := (*planes)[want]
		if !ok {
			http.Error(w, fmt.Sprintf("VNI %d is not served here", want), http.StatusNotFound)
			return
		}
		h.ServeHTTP(w, r)
	})
	return mux
}

// dataPlane is what a running data plane reports on.
type dataPlane struct {
	ov    *overlay.Overlay
	vni   uint32
	table *fdb.Table
	// local is the VTEP address that outer packets of a capture are
	// built with.
	local    netip.AddrPort
	settings []setting
	// heals counts the repairs of the host setup; adopted says whether
	// the TAP was taken over from an earlier run.
	heals   func() uint64
	adopted bool
	// static serves `vxland fdb add|del`; nil where it is not offered
	// (flannel mode).
	static *staticFDB
}

// dataPlaneUp serves dp on the control socket (captures and the daemon's
// settings included) and exports its counters, table and heals.
func (st *status) dataPlaneUp(dp dataPlane) { st.dataPlanesUp([]dataPlane{dp}, nil) }

// dataPlanesUp serves the data planes of the VNIs on one set of sockets,
// as dataPlaneUp serves one, and exports the drops of the datagrams that
// none of them took (unclaimed, nil with one VNI). Called again, it serves
// the new set in place of the old one.
func (st *status) dataPlanesUp(dps []dataPlane, unclaimed metrics.StatsSource) {
	handlers := make(map[uint32]http.Handler, len(dps))
	collect := metrics.DataPlanes{Unclaimed: unclaimed}
	for _, dp := range dps {
		handlers[dp.vni] = dataPlaneHandler(dp.ov, dp.local, dp.settings, dp.heals, dp.static)
		collect.Planes = append(collect.Planes, &metrics.DataPlane{VNI: dp.vni, Stats: dp.ov, FDB: dp.table, Heals: dp.heals, TAPAdopted: dp.adopted})
	}
	st.dataPlanes.Store(&handlers)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.planes == nil {
		st.planes = st.metrics.Slot()
	}
	st.planes.Set(collect)
}

// tapUp makes readiness follow the TAPs' state: up, and on its bridge
// unless that is "".
func (st *status) tapUp(taps ...hostTAP) {
	st.ready.Set(checkTAP, func() error {
		for _, t := range taps {
			if err := hostnet.CheckTAP(t.tap, t.bridge); err != nil {
				return err
			}
		}
		return nil
	})
}

// hostTAP is a TAP and the bridge it belongs on ("": none).
type hostTAP struct{ tap, bridge string }

// done marks a check that, once passed, stays passed.
func (st *status) done(name string) { st.ready.Set(name, func() error { return nil }) }
