package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/internal/metrics"
)

// vniAgents are the etcd agents of the VNIs served, one each, all on one
// etcd client; a reload starts and stops them with their VNIs. The
// readiness check etcd and the etcd metrics follow the agents running.
type vniAgents struct {
	ctx      context.Context // every agent ends with it
	cancel   context.CancelFunc
	newAgent func(vniTables) *discovery.Agent
	st       *status
	log      *slog.Logger
	wg       sync.WaitGroup

	mu sync.Mutex
	// stopped is set by stopAll: no agent starts after it.
	stopped bool
	running []*vniAgent
	// collect exports the running agents' metrics; a change of the
	// agents replaces it.
	collect *metrics.Slot
}

// vniAgent is the running agent of one VNI.
type vniAgent struct {
	tables vniTables
	agent  *discovery.Agent
	stop   context.CancelFunc
	done   chan struct{} // closed once Run has returned, its lease revoked
}

func newVNIAgents(ctx context.Context, newAgent func(vniTables) *discovery.Agent, st *status, log *slog.Logger) *vniAgents {
	ctx, cancel := context.WithCancel(ctx)
	a := &vniAgents{ctx: ctx, cancel: cancel, newAgent: newAgent, st: st, log: log}
	st.ready.Set(checkEtcd, a.synced)
	return a
}

// synced is the readiness check etcd: every running agent has filled its
// VNI's FDB from etcd.
func (a *vniAgents) synced() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.running {
		select {
		case <-r.agent.Synced():
		default:
			return fmt.Errorf("FDB not yet filled from etcd: VNI %d", r.tables.vni)
		}
	}
	return nil
}

// start starts the agents of the VNIs whose tables are vs, each on a
// lease of its own, and returns them. The VNIs' data planes must be up:
// an agent publishes its VNI as soon as it runs.
func (a *vniAgents) start(vs ...vniTables) []*discovery.Agent {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return nil
	}
	var started []*discovery.Agent
	for _, v := range vs {
		ctx, stop := context.WithCancel(a.ctx)
		r := &vniAgent{tables: v, agent: a.newAgent(v), stop: stop, done: make(chan struct{})}
		a.wg.Go(func() {
			defer close(r.done)
			r.agent.Run(ctx)
		})
		a.wg.Go(func() {
			select {
			case <-r.agent.Synced():
				a.log.Info("fdb in step with etcd", "vni", v.vni, "flood", len(v.fdb.Flood(v.vni)))
			case <-ctx.Done():
			}
		})
		a.running = append(a.running, r)
		started = append(started, r.agent)
	}
	a.publishLocked()
	return started
}

// stop stops the agents of vnis, all at once, and returns once each has
// revoked its lease: the other hosts forget this host's keys of those
// VNIs at once, not after the lease's TTL. The other agents and their
// leases are untouched.
func (a *vniAgents) stop(vnis ...uint32) {
	a.mu.Lock()
	var stopping []*vniAgent
	a.running = slices.DeleteFunc(a.running, func(r *vniAgent) bool {
		if slices.Contains(vnis, r.tables.vni) {
			stopping = append(stopping, r)
			return true
		}
		return false
	})
	a.publishLocked()
	a.mu.Unlock()
	for _, r := range stopping {
		r.stop()
	}
	for _, r := range stopping {
		<-r.done
	}
}

// stopAll stops every agent, each revoking its lease, and waits for them.
func (a *vniAgents) stopAll() {
	a.cancel()
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
	a.wg.Wait()
}

func (a *vniAgents) publishLocked() {
	c := &metrics.Etcd{}
	for _, r := range a.running {
		c.Agents = append(c.Agents, metrics.EtcdAgent{VNI: r.tables.vni, Agent: r.agent})
	}
	if a.collect == nil {
		a.collect = a.st.metrics.Slot()
	}
	a.collect.Set(c)
}
