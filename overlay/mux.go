package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/vxland/vxland/encap"
)

// MaxMuxVNIs bounds the VNIs one Mux serves: a forwarding thread waits
// for the socket, its wake-up and one device queue of each VNI at once,
// and tells them apart by a bit of a word.
const MaxMuxVNIs = 62

// Mux serves several VNIs on one set of underlay sockets, as the kernel
// serves any number of VNIs on one port. Each VNI is an Overlay of its
// own (its device, FDB, allowlist, learning, counters); the Mux owns what
// they share: the sockets, and the demultiplexing of what they receive by
// VNI. Overlays send through the shared sockets themselves.
//
// Queue i of every Overlay has the Mux's socket i: one forwarding thread
// per queue reads socket i and device queue i of every VNI, so that no
// two threads use one socket. Devices or sockets that cannot be polled
// (the in-memory fakes) get a goroutine per device queue and socket
// instead, and must then take sends from several goroutines at once.
//
// VNIs come and go while the Mux runs (Add, Remove) without a lock on
// the per-packet path: the set of VNIs is a copy-on-write value behind
// an atomic pointer, read by a forwarding thread only when it builds its
// poll set. A change swaps the pointer and wakes every thread (an eventfd
// in its poll set); each rebuilds its poll set and says which set it now
// serves. A removed VNI's device is closed only once every thread has
// let go of it. The goroutine-per-device path of the fakes keeps the VNIs
// it started with.
type Mux struct {
	vnis  atomic.Pointer[vniSet]
	conns []PacketConn
	// counters has one entry per queue, for the datagrams that no
	// Overlay takes: too short to name a VNI (DropShort), or of a VNI not
	// served (DropVNI).
	counters     []queueCounters
	logger       *slog.Logger
	schedRefused sync.Once

	// mu serializes changes to the VNIs with each other and with Run's
	// start and end; changed is signalled when a thread takes a new set.
	mu      sync.Mutex
	changed *sync.Cond
	running *muxRun // nil before Run and after it ends
}

// vniSet is the VNIs a Mux serves, sorted by VNI. It is never changed
// once published: a change publishes a new one.
type vniSet struct {
	overlays []*Overlay
}

// muxRun is what a running Mux needs to start and stop a VNI's
// goroutines.
type muxRun struct {
	ctx     context.Context
	wg      *sync.WaitGroup
	ageing  map[*Overlay]context.CancelFunc
	workers []*muxWorker // nil when the devices or sockets cannot be polled
	stopped bool
}

// NewMux returns a Mux of overlays over conns. Every overlay has one queue
// per socket, whose Conn is that socket, and a VNI of its own.
func NewMux(conns []PacketConn, overlays []*Overlay) (*Mux, error) {
	switch {
	case len(overlays) == 0:
		return nil, errors.New("overlay: a mux without VNIs")
	case len(overlays) > MaxMuxVNIs:
		return nil, fmt.Errorf("overlay: %d VNIs in one mux, at most %d", len(overlays), MaxMuxVNIs)
	}
	overlays = slices.Clone(overlays)
	slices.SortFunc(overlays, func(a, b *Overlay) int { return int(a.cfg.VNI) - int(b.cfg.VNI) })
	for k, o := range overlays {
		if k > 0 && o.cfg.VNI == overlays[k-1].cfg.VNI {
			return nil, fmt.Errorf("overlay: VNI %d twice in one mux", o.cfg.VNI)
		}
		if err := checkJoin(conns, o); err != nil {
			return nil, err
		}
	}
	m := &Mux{conns: conns, counters: make([]queueCounters, len(conns)), logger: overlays[0].cfg.Logger}
	m.changed = sync.NewCond(&m.mu)
	m.vnis.Store(&vniSet{overlays: overlays})
	return m, nil
}

// checkJoin checks that o can join a Mux over conns.
func checkJoin(conns []PacketConn, o *Overlay) error {
	if len(o.queues) != len(conns) {
		return fmt.Errorf("overlay: VNI %d has %d queues for %d sockets", o.cfg.VNI, len(o.queues), len(conns))
	}
	for i, q := range o.queues {
		if q.Conn != conns[i] {
			return fmt.Errorf("overlay: queue %d of VNI %d does not send through the mux's socket %d", i, o.cfg.VNI, i)
		}
	}
	return nil
}

// VNIs returns the VNIs served, in order.
func (m *Mux) VNIs() []uint32 {
	var vnis []uint32
	for _, o := range m.vnis.Load().overlays {
		vnis = append(vnis, o.cfg.VNI)
	}
	return vnis
}

// Add serves o's VNI too, from now on; o sends through the Mux's sockets,
// as NewMux requires. The Mux owns o's devices from here on.
func (m *Mux) Add(o *Overlay) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.vnis.Load().overlays
	switch {
	case len(old) >= MaxMuxVNIs:
		return fmt.Errorf("overlay: VNI %d: already %d VNIs in one mux, at most %d", o.cfg.VNI, len(old), MaxMuxVNIs)
	case slices.ContainsFunc(old, func(x *Overlay) bool { return x.cfg.VNI == o.cfg.VNI }):
		return fmt.Errorf("overlay: VNI %d is served already", o.cfg.VNI)
	case m.running != nil && m.running.workers == nil:
		return fmt.Errorf("overlay: VNI %d: the VNIs of a running mux change only where its devices and sockets can be polled", o.cfg.VNI)
	case m.running != nil && m.running.stopped:
		return fmt.Errorf("overlay: VNI %d: the mux has stopped", o.cfg.VNI)
	case m.running != nil && slices.ContainsFunc(o.queues, func(q Queue) bool { _, ok := q.Device.(PolledDevice); return !ok }):
		// Its threads would fail to poll it, and stop every VNI.
		return fmt.Errorf("overlay: VNI %d: its device cannot be polled with the others of a running mux", o.cfg.VNI)
	}
	if err := checkJoin(m.conns, o); err != nil {
		return err
	}
	overlays := append(slices.Clone(old), o)
	slices.SortFunc(overlays, func(a, b *Overlay) int { return int(a.cfg.VNI) - int(b.cfg.VNI) })
	if r := m.running; r != nil {
		ctx, cancel := context.WithCancel(r.ctx)
		r.ageing[o] = cancel
		r.wg.Go(func() { o.fdb.RunAgeing(ctx, o.cfg.Logger) })
	}
	m.publish(&vniSet{overlays: overlays})
	return nil
}

// Remove stops serving vni: its datagrams are dropped as of a VNI not
// served from now on, and its devices are closed once no forwarding
// thread uses them.
func (m *Mux) Remove(vni uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.vnis.Load().overlays
	k := slices.IndexFunc(old, func(o *Overlay) bool { return o.cfg.VNI == vni })
	switch {
	case k < 0:
		return fmt.Errorf("overlay: VNI %d is not served", vni)
	case len(old) == 1:
		return fmt.Errorf("overlay: VNI %d is the last one the mux serves", vni)
	case m.running != nil && m.running.workers == nil:
		return fmt.Errorf("overlay: VNI %d: the VNIs of a running mux change only where its devices and sockets can be polled", vni)
	}
	o := old[k]
	m.publish(&vniSet{overlays: slices.Delete(slices.Clone(old), k, k+1)})
	if r := m.running; r != nil {
		r.ageing[o]()
		delete(r.ageing, o)
	}
	for _, q := range o.queues {
		q.Device.Close()
	}
	return nil
}

// publish makes set the VNIs served and, while the Mux runs, waits until
// every forwarding thread serves it (or has ended). The caller holds mu.
func (m *Mux) publish(set *vniSet) {
	m.vnis.Store(set)
	r := m.running
	if r == nil || r.stopped {
		return
	}
	for _, w := range r.workers {
		w.wakeUp()
	}
	for !r.stopped && slices.ContainsFunc(r.workers, func(w *muxWorker) bool { return !w.ended && w.serves != set }) {
		m.changed.Wait()
	}
}

// Stats counts the datagrams the Mux dropped because no Overlay takes
// them: the reasons short and vni_mismatch, by queue.
func (m *Mux) Stats() Stats {
	s := Stats{Drops: map[string]uint64{DropShort.String(): 0, DropVNI.String(): 0}, Queues: make([]QueueStats, len(m.counters))}
	for i := range m.counters {
		for _, r := range []DropReason{DropShort, DropVNI} {
			s.Drops[r.String()] += m.counters[i].drops[r].Load()
		}
	}
	return s
}

// Run forwards every VNI in both directions until ctx is done or a
// device or a socket fails, as Overlay.Run does for one. It owns the
// sockets and the overlays' devices: it closes them before it returns,
// and returns only when every goroutine it started has ended.
func (m *Mux) Run(ctx context.Context) error {
	return runUntilFailure(ctx, func(ctx context.Context, wg *sync.WaitGroup, fail func(error)) {
		m.mu.Lock()
		defer m.mu.Unlock()
		r := &muxRun{ctx: ctx, wg: wg, ageing: map[*Overlay]context.CancelFunc{}}
		m.running = r
		set := m.vnis.Load()
		if r.workers = m.startWorkers(wg, fail); r.workers == nil {
			for i := range m.conns {
				for _, o := range set.overlays {
					wg.Go(func() { fail(loop(o.newEncapsulator(i).step, fmt.Sprintf("VNI %d: reading from device", o.cfg.VNI))) })
				}
				wg.Go(func() { fail(loop(m.newDemux(i, set).step, "reading from underlay")) })
			}
		}
		for _, o := range set.overlays {
			actx, cancel := context.WithCancel(ctx)
			r.ageing[o] = cancel
			wg.Go(func() { o.fdb.RunAgeing(actx, o.cfg.Logger) })
		}
	}, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.running.stopped = true
		m.changed.Broadcast()
		for _, o := range m.vnis.Load().overlays {
			for _, q := range o.queues {
				q.Device.Close()
			}
		}
		for _, c := range m.conns {
			c.Close()
		}
		for _, w := range m.running.workers {
			w.close()
		}
	})
}

// demux reads the datagrams of one socket and hands each run of datagrams
// of one VNI to that VNI's decapsulator, which delivers them as it
// delivers a batch of its own. One runs per queue.
type demux struct {
	qc   *queueCounters
	read func(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (int, error)
	// vnis and decaps are the VNIs served, in order, and the
	// decapsulator of each for this queue.
	vnis   []uint32
	decaps []*decapsulator
	bufs   [][]byte
	sizes  []int
	srcs   []netip.AddrPort
}

func (m *Mux) newDemux(i int, set *vniSet) *demux {
	c := m.conns[i]
	x := &demux{qc: &m.counters[i], read: c.Read}
	x.bufs, x.sizes, x.srcs = newDatagramBatch(c)
	x.deliverTo(set, i)
	return x
}

// deliverTo makes x deliver to queue i of the VNIs of set, keeping its
// batch of datagrams.
func (x *demux) deliverTo(set *vniSet, i int) {
	x.vnis, x.decaps = x.vnis[:0], x.decaps[:0]
	for _, o := range set.overlays {
		x.vnis = append(x.vnis, o.cfg.VNI)
		x.decaps = append(x.decaps, o.newDeliverer(i))
	}
}

// step reads one batch of datagrams and delivers each run of consecutive
// datagrams of one VNI to its decapsulator, in order. A datagram too short
// to name a VNI, or of a VNI not served, is counted and dropped. Only a
// failing socket read is an error.
func (x *demux) step() error {
	n, err := x.read(x.bufs, x.sizes, x.srcs, datagramOffset)
	if err != nil {
		return err
	}
	for i := 0; i < n; {
		vni := x.vniOf(i)
		j := i + 1
		for j < n && x.vniOf(j) == vni {
			j++
		}
		switch d := x.decapsulator(vni); {
		case vni == noVNI:
			x.qc.dropN(DropShort, j-i)
		case d == nil:
			x.qc.dropN(DropVNI, j-i)
		default:
			d.deliver(x.bufs[i:j], x.sizes[i:j], x.srcs[i:j])
		}
		i = j
	}
	return nil
}

// noVNI stands for the VNI of a datagram shorter than the VXLAN header.
const noVNI = encap.MaxVNI + 1

// vniOf returns the VNI field of datagram i, whatever its flags say: the
// decapsulator that takes it checks the rest of the header.
func (x *demux) vniOf(i int) uint32 {
	vni, err := encap.PeekVNI(x.bufs[i][datagramOffset : datagramOffset+x.sizes[i]])
	if err != nil {
		return noVNI
	}
	return vni
}

// decapsulator returns the decapsulator of vni, nil when it is not served.
// A daemon serves a handful of VNIs: a binary search of a short slice
// beats a map and allocates nothing.
func (x *demux) decapsulator(vni uint32) *decapsulator {
	if k, ok := slices.BinarySearch(x.vnis, vni); ok {
		return x.decaps[k]
	}
	return nil
}
