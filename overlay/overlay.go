// Package overlay is the data plane's core: it moves Ethernet frames
// between a frame device (a TAP) and the underlay (a UDP socket), adding
// and removing the VXLAN header, and does nothing else. The devices and
// sockets are drivers behind the FrameDevice and PacketConn interfaces
// (packages tap and udp, or the in-memory fakes of overlaytest); the
// tables it forwards by are package fdb's.
//
// Frames read from the device go to the VTEP that owns the destination MAC,
// or, for broadcast, multicast and unknown unicast, to every VTEP in the
// VNI's flood list (head-end replication): encapsulate.go. Datagrams from
// the underlay are checked, stripped and written to the device:
// decapsulate.go. Every packet dropped is counted by reason.
//
// The per-packet path allocates nothing: each direction of each queue owns
// its buffers, reads frames Headroom bytes in, and writes the VXLAN header
// in place in front of them.
package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxland/vxland/overlay/capture"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/ratelimit"
)

// Config is the data plane's configuration.
type Config struct {
	// VNI is the VXLAN Network Identifier of this overlay.
	VNI uint32
	// LocalMAC is the TAP device's own address. A received frame that
	// claims it as its source is dropped: it is a loop or a spoof.
	LocalMAC fdb.MAC
	// MTU is the device's MTU. An inner frame larger than MTU+14 is
	// handed to the device whole: the TAP driver writes it as one
	// segmentation-offload frame, or cuts it to the MTU.
	MTU int
	// Logger receives lifecycle events, never per-packet ones.
	Logger *slog.Logger
	// Local, when set, records the source MACs of frames read from the
	// device and the addresses they claim in ARP and IPv6 neighbour
	// discovery, for the control plane to publish.
	Local *fdb.LocalTable
	// Neighbors, when set, answers ARP requests and IPv6 neighbour
	// solicitations for remote containers on this host instead of
	// flooding them.
	Neighbors *fdb.Neighbors
	// BatchWhenIdle runs each forwarding thread (Linux, polled queues)
	// under SCHED_BATCH while its traffic is sparse, and under
	// SCHED_OTHER while it is steady (poller.WakePolicy).
	BatchWhenIdle bool
	// Poll is how long a forwarding thread (Linux, polled queues) keeps
	// polling its device and socket with non-blocking reads after its
	// last packet before it sleeps, yielding the CPU between rounds
	// (poller.Spin): 0 sleeps at once, poller.PollAlways never. For hosts
	// that give the data plane a core of its own. A Mux takes it from
	// its first VNI's Config.
	Poll time.Duration
	// FloodPerSource limits the frames each source MAC may have flooded
	// (broadcast, multicast, unknown unicast: one copy per VTEP each);
	// FloodTotal limits them all together. The zero Limit is no limit.
	// Sources are told apart by a hash into a fixed table, so that ever
	// new source MACs cost no memory: a few share a bucket.
	FloodPerSource, FloodTotal ratelimit.Limit
	// NoLearning turns data-plane learning off: the source MAC of a
	// received frame is not recorded behind the VTEP that sent it, so
	// that only the entries the control plane and the static
	// configuration put in the FDB forward (the kernel's "nolearning").
	NoLearning bool
	// GroupSenders, when set, admits the sender of a datagram from one of
	// these prefixes as a known VTEP (fdb.SourceMulticast) the first time
	// it sends: a VNI that floods to a multicast group does not know the
	// group's members in advance, and learns them from what they send,
	// as the kernel does. The prefixes bound whom it accepts so. A VTEP
	// admitted stays known while the daemon runs.
	GroupSenders []netip.Prefix
}

// Overlay is one VNI's data plane.
type Overlay struct {
	cfg    Config
	queues []Queue
	fdb    *fdb.Table
	// counters has one entry per queue, written by that queue's threads
	// only; Stats sums them.
	counters []queueCounters
	// schedRefused logs, once, that the kernel refused a worker's change
	// of scheduling policy (Config.BatchWhenIdle).
	schedRefused sync.Once
	// msgSizeRefused logs, once, that the underlay refused a datagram as
	// too large for its path.
	msgSizeRefused atomic.Bool
	// capture is the running capture, if any: the forwarding threads load
	// it once per batch or run.
	capture atomic.Pointer[capture.Session]
	// The flood limits' buckets, shared by the queues (a CAS each).
	clock        ratelimit.Clock
	floodSources *ratelimit.Keyed[fdb.MAC]
	floodTotal   ratelimit.Bucket
	// limitLogged records which limits have said, once, that they were
	// hit; from then on their counters say how often.
	limitLogged [numDropReasons]atomic.Bool
}

// Queue is one queue of the data plane: a queue of the device and a socket
// of the underlay, served together. A multi-queue TAP with one SO_REUSEPORT
// socket per queue gives one queue per core; the kernel keeps each flow on
// one queue in both directions.
type Queue struct {
	Device FrameDevice
	Conn   PacketConn
}

// New returns a data plane over queues that forwards by table.
func New(cfg Config, queues []Queue, table *fdb.Table) (*Overlay, error) {
	if len(queues) == 0 {
		return nil, errors.New("overlay: no queue")
	}
	if cfg.VNI > encap.MaxVNI {
		return nil, fmt.Errorf("overlay: VNI %d does not fit in 24 bits", cfg.VNI)
	}
	if cfg.MTU < 68 || cfg.MTU > MaxFrameSize-encap.EthernetHeaderLen {
		return nil, fmt.Errorf("overlay: MTU %d out of range 68..%d", cfg.MTU, MaxFrameSize-encap.EthernetHeaderLen)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Overlay{cfg: cfg, queues: queues, fdb: table, counters: make([]queueCounters, len(queues)),
		clock: ratelimit.NewClock(), floodSources: ratelimit.NewKeyed[fdb.MAC]()}, nil
}

// limitHit counts a frame that the limit r applied to, and logs the first
// such frame of the daemon's life, naming mac.
func (o *Overlay) limitHit(qc *queueCounters, r DropReason, mac fdb.MAC) {
	qc.drop(r)
	if !o.limitLogged[r].Load() && o.limitLogged[r].CompareAndSwap(false, true) {
		o.cfg.Logger.Warn("limit reached; further frames are counted, not logged", "reason", r.String(), "mac", mac)
	}
}

// ErrCaptureRunning is returned by Capture while another capture runs.
var ErrCaptureRunning = errors.New("overlay: a capture is already running")

// Capture offers every packet forwarded from now on to s, until stop is
// called, which also closes s. One capture runs at a time.
func (o *Overlay) Capture(s *capture.Session) (stop func(), err error) {
	if !o.capture.CompareAndSwap(nil, s) {
		return nil, ErrCaptureRunning
	}
	return func() {
		o.capture.CompareAndSwap(s, nil)
		s.Close()
	}, nil
}

// FDB returns the forwarding database the overlay uses.
func (o *Overlay) FDB() *fdb.Table { return o.fdb }

// VNI returns the overlay's VNI.
func (o *Overlay) VNI() uint32 { return o.cfg.VNI }

// Neighbors returns the table ARP requests and neighbour solicitations
// are answered from, nil when there is none.
func (o *Overlay) Neighbors() *fdb.Neighbors { return o.cfg.Neighbors }

// Run forwards in both directions until ctx is done or a device or a
// socket fails. Run owns the queues' devices and sockets: it closes them
// before it returns, and it returns only when every goroutine it started
// has ended.
//
// A queue whose device and socket can be waited on together (PolledDevice
// and PolledConn) is served by one goroutine in both directions (worker);
// otherwise each direction has a goroutine of its own. A worker keeps its
// P (its right to run Go code) while it waits for packets: a program that
// runs the data plane gives it one more P per such queue
// (runtime.GOMAXPROCS), so that its other goroutines keep theirs.
func (o *Overlay) Run(ctx context.Context) error {
	return runUntilFailure(ctx, func(ctx context.Context, wg *sync.WaitGroup, fail func(error)) {
		for i := range o.queues {
			if o.startWorker(wg, i, fail) {
				continue
			}
			wg.Go(func() { fail(loop(o.newEncapsulator(i).step, "reading from device")) })
			wg.Go(func() { fail(loop(o.newDecapsulator(i).step, "reading from underlay")) })
		}
		wg.Go(func() { o.fdb.RunAgeing(ctx, o.cfg.Logger) })
	}, func() {
		for _, q := range o.queues {
			q.Device.Close()
			q.Conn.Close()
		}
	})
}

// runUntilFailure runs the goroutines that start starts in wg until ctx
// is done or one of them fails (fail), then closes what they read from
// (stop), which ends them, and waits for them. It returns the failure.
func runUntilFailure(ctx context.Context, start func(ctx context.Context, wg *sync.WaitGroup, fail func(error)), stop func()) error {
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	start(ctx, &wg, func(err error) {
		if ctx.Err() == nil {
			cancel(err)
		}
	})
	<-ctx.Done()
	stop()
	wg.Wait()
	if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// loop runs step until it fails, and returns its error wrapped in what.
func loop(step func() error, what string) error {
	for {
		if err := step(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}
