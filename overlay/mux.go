package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/vxland/vxland/encap"
)

// MaxMuxVNIs bounds the VNIs one Mux serves: a forwarding thread waits
// for the socket and one device queue of each VNI at once, and tells them
// apart by a bit of a word.
const MaxMuxVNIs = 63

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
type Mux struct {
	overlays []*Overlay // by VNI
	conns    []PacketConn
	// counters has one entry per queue, for the datagrams that no
	// Overlay takes: too short to name a VNI (DropShort), or of a VNI not
	// served (DropVNI).
	counters     []queueCounters
	logger       *slog.Logger
	schedRefused sync.Once
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
		if len(o.queues) != len(conns) {
			return nil, fmt.Errorf("overlay: VNI %d has %d queues for %d sockets", o.cfg.VNI, len(o.queues), len(conns))
		}
		for i, q := range o.queues {
			if q.Conn != conns[i] {
				return nil, fmt.Errorf("overlay: queue %d of VNI %d does not send through the mux's socket %d", i, o.cfg.VNI, i)
			}
		}
	}
	return &Mux{overlays: overlays, conns: conns, counters: make([]queueCounters, len(conns)), logger: overlays[0].cfg.Logger}, nil
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
		for i := range m.conns {
			if m.startWorker(wg, i, fail) {
				continue
			}
			for _, o := range m.overlays {
				wg.Go(func() { fail(loop(o.newEncapsulator(i).step, fmt.Sprintf("VNI %d: reading from device", o.cfg.VNI))) })
			}
			wg.Go(func() { fail(loop(m.newDemux(i).step, "reading from underlay")) })
		}
		for _, o := range m.overlays {
			wg.Go(func() { o.fdb.RunAgeing(ctx, o.cfg.Logger) })
		}
	}, func() {
		for _, o := range m.overlays {
			for _, q := range o.queues {
				q.Device.Close()
			}
		}
		for _, c := range m.conns {
			c.Close()
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

func (m *Mux) newDemux(i int) *demux {
	c := m.conns[i]
	x := &demux{qc: &m.counters[i], read: c.Read}
	x.bufs, x.sizes, x.srcs = newDatagramBatch(c)
	for _, o := range m.overlays {
		x.vnis = append(x.vnis, o.cfg.VNI)
		x.decaps = append(x.decaps, o.newDeliverer(i))
	}
	return x
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
