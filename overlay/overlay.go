// Package overlay moves Ethernet frames between a frame device (a TAP) and
// the underlay (a UDP socket), adding and removing the VXLAN header.
//
// Frames read from the device go to the VTEP that owns the destination MAC,
// or, for broadcast, multicast and unknown unicast, to every VTEP in the
// VNI's flood list (head-end replication). Datagrams from the underlay are
// validated, stripped and written to the device; every one that is not is
// counted by reason.
//
// The per-packet path allocates nothing: each direction owns its buffers,
// reads frames at an offset that leaves room for the VXLAN header in front,
// and writes that header in place.
package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/offload"
)

const ethHeaderLen = 14

// Config is the data plane's configuration.
type Config struct {
	// VNI is the VXLAN Network Identifier of this overlay.
	VNI uint32
	// LocalMAC is the TAP device's own address. A received frame that
	// claims it as its source is dropped: it is a loop or a spoof.
	LocalMAC fdb.MAC
	// MTU is the device's MTU. Received inner frames larger than MTU+14
	// are cut into segments that fit when they are TCP, dropped otherwise.
	MTU int
	// Logger receives lifecycle events, never per-packet ones.
	Logger *slog.Logger
	// Local, when set, records the source MACs of frames read from the
	// device and the IPv4 addresses they claim in ARP, for the control
	// plane to publish.
	Local *fdb.LocalTable
	// Neighbors, when set, answers ARP requests for remote containers on
	// this host instead of flooding them.
	Neighbors *fdb.Neighbors
	// BatchWhenIdle runs each forwarding thread (Linux, pollable
	// devices) under SCHED_BATCH while its traffic is sparse, and under
	// SCHED_OTHER while it is steady: a lone packet then does not preempt
	// the thread that sent it, and the whole round trip stays on one CPU
	// (wakePolicy).
	BatchWhenIdle bool
}

// Overlay is one VNI's data plane.
type Overlay struct {
	cfg      Config
	queues   []Queue
	fdb      *fdb.Table
	counters Counters
	// schedRefused logs, once, that the kernel refused a worker's change
	// of scheduling policy (Config.BatchWhenIdle).
	schedRefused sync.Once
}

// Queue is one queue of the data plane: a queue of the device and a socket
// of the underlay, served together. A multi-queue TAP with one SO_REUSEPORT
// socket per queue gives one queue per core; the kernel keeps each flow on
// one queue in both directions.
type Queue struct {
	Device FrameDevice
	Conn   PacketConn
}

// New returns a data plane between dev and conn that forwards by fdb.
func New(cfg Config, dev FrameDevice, conn PacketConn, table *fdb.Table) (*Overlay, error) {
	return NewQueues(cfg, []Queue{{Device: dev, Conn: conn}}, table)
}

// NewQueues returns a data plane over several queues that forwards by fdb.
func NewQueues(cfg Config, queues []Queue, table *fdb.Table) (*Overlay, error) {
	if len(queues) == 0 {
		return nil, errors.New("overlay: no queue")
	}
	if cfg.VNI > encap.MaxVNI {
		return nil, fmt.Errorf("overlay: VNI %d does not fit in 24 bits", cfg.VNI)
	}
	if cfg.MTU < 68 || cfg.MTU > MaxFrameSize-ethHeaderLen {
		return nil, fmt.Errorf("overlay: MTU %d out of range 68..%d", cfg.MTU, MaxFrameSize-ethHeaderLen)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	o := &Overlay{cfg: cfg, queues: queues, fdb: table}
	// Allocated here, before any reader of the counters can run.
	o.counters.queue(len(queues) - 1)
	return o, nil
}

// FDB returns the forwarding database the overlay uses.
func (o *Overlay) FDB() *fdb.Table { return o.fdb }

// Counters returns the overlay's live counters.
func (o *Overlay) Counters() *Counters { return &o.counters }

// Run forwards in both directions until ctx is done or a device or a
// socket fails. Run owns the queues' devices and sockets: it closes them
// before it returns, and it returns only when every goroutine it started
// has ended.
//
// A queue whose device and socket can be waited on together is served by
// one goroutine in both directions (worker); otherwise each direction has
// a goroutine of its own. A worker keeps its P (its right to run Go code)
// while it waits for packets: a program that runs the data plane gives it
// one more P per such queue (runtime.GOMAXPROCS), so that its other
// goroutines keep theirs.
func (o *Overlay) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	fail := func(err error) {
		if ctx.Err() == nil {
			cancel(err)
		}
	}
	for i := range o.queues {
		if o.startWorker(&wg, i, fail) {
			continue
		}
		wg.Go(func() {
			e := o.newEncapsulator(i)
			for {
				if err := e.step(); err != nil {
					fail(fmt.Errorf("reading from device: %w", err))
					return
				}
			}
		})
		wg.Go(func() {
			d := o.newDecapsulator(i)
			for {
				if err := d.step(); err != nil {
					fail(fmt.Errorf("reading from underlay: %w", err))
					return
				}
			}
		})
	}
	wg.Go(func() { o.fdb.RunAgeing(ctx, o.cfg.Logger) })

	<-ctx.Done()
	for _, q := range o.queues {
		q.Device.Close()
		q.Conn.Close()
	}
	wg.Wait()
	if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// encapsulator moves frames from the device to the underlay. It owns its
// buffers; one runs per device reader.
type encapsulator struct {
	o    *Overlay
	dev  FrameDevice
	conn PacketConn
	qc   *queueCounters
	// read is dev.Read, or the device's TryRead when one thread polls
	// both directions.
	read  func(bufs [][]byte, sizes []int, offset int) (int, error)
	bufs  [][]byte
	sizes []int
	one   [][]byte
	// run collects consecutive frames of a batch bound for the same VTEP,
	// so that the socket can send them in one call (and one GSO message).
	run     [][]byte
	runDst  netip.AddrPort
	runFlow uint32
	// flows, when the socket supports it, sends each inner flow from a
	// source port of its own.
	flows FlowSender
	// The frames of a batch mostly share source and destination (a TCP
	// super-frame cut into segments): the lookups of the previous frame
	// are remembered for the rest of the batch.
	memo encapMemo
}

type encapMemo struct {
	valid    bool
	src, dst fdb.MAC
	vtep     netip.AddrPort
	known    bool
}

func (o *Overlay) newEncapsulator(i int) *encapsulator {
	q := o.queues[i]
	n := q.Device.BatchSize()
	e := &encapsulator{o: o, dev: q.Device, conn: q.Conn, qc: o.counters.queue(i), read: q.Device.Read, bufs: make([][]byte, n), sizes: make([]int, n), one: make([][]byte, 1), run: make([][]byte, 0, n)}
	e.flows, _ = q.Conn.(FlowSender)
	for i := range e.bufs {
		e.bufs[i] = make([]byte, deviceHeadroom+MaxFrameSize)
	}
	return e
}

// step reads one batch of frames from the device and sends each to its
// VTEPs. Only a failing device read is an error; per-frame problems are
// counted.
func (e *encapsulator) step() error {
	// Frames are read deviceHeadroom bytes in: the VXLAN header goes in
	// the last HeaderLen bytes before the frame, and a frame written back
	// to the device (an ARP answer) has room for the device's header.
	n, err := e.read(e.bufs, e.sizes, deviceHeadroom)
	if err != nil {
		return err
	}
	e.memo.valid = false
	for i := range n {
		e.forward(e.bufs[i][:deviceHeadroom+e.sizes[i]])
	}
	e.flush()
	return nil
}

// forward routes the frame buf[deviceHeadroom:]: known unicast joins the
// current run, the rest is flooded at once.
func (e *encapsulator) forward(buf []byte) {
	o := e.o
	frame := buf[deviceHeadroom:]
	pkt := buf[readHeadroom:] // the datagram: VXLAN header and frame
	if len(frame) < ethHeaderLen {
		o.counters.Drop(DropTxShort)
		return
	}
	dst, src := fdb.MAC(frame[0:6]), fdb.MAC(frame[6:12])
	arp := arpIPv4(frame)
	// The TAP's own address is not a container: the host's stack sends
	// through the TAP too (IPv6 neighbour discovery, for one).
	seen := e.memo.valid && src == e.memo.src && arp == nil
	if o.cfg.Local != nil && !seen && !src.IsMulticast() && !src.IsZero() && src != o.cfg.LocalMAC {
		var ip netip.Addr
		if arp != nil && arpSenderMAC(arp) == src {
			if sip := arpSenderIP(arp); !sip.IsUnspecified() {
				ip = sip
			}
		}
		o.cfg.Local.Observe(src, ip)
	}
	if arp != nil && arpOp(arp) == arpRequest && dst.IsMulticast() {
		// A gratuitous ARP (sender address = target address) announces
		// a container, perhaps one that just moved here: it must reach
		// every host, and answering it would teach the bridge that the
		// container lives behind the TAP.
		if tip := arpTargetIP(arp); o.cfg.Neighbors != nil && tip != arpSenderIP(arp) {
			if mac, ok := o.cfg.Neighbors.Lookup(tip); ok && mac != src {
				e.answerARP(buf, mac)
				return
			}
		}
		o.counters.ARPFlooded.Add(1)
	}
	// The VNI was range-checked in New, and pkt holds the headroom.
	_ = encap.Encode(pkt, o.cfg.VNI)
	var flow uint32
	if e.flows != nil {
		flow = flowHash(frame)
	}
	if !dst.IsMulticast() {
		if !e.memo.valid || dst != e.memo.dst {
			e.memo.vtep, e.memo.known = o.fdb.Lookup(o.cfg.VNI, dst)
			e.memo.valid, e.memo.src, e.memo.dst = true, src, dst
		}
		if vtep, ok := e.memo.vtep, e.memo.known; ok {
			if vtep != e.runDst || flow != e.runFlow {
				e.flush()
				e.runDst, e.runFlow = vtep, flow
			}
			e.run = append(e.run, pkt)
			return
		}
	}
	flood := o.fdb.Flood(o.cfg.VNI)
	if len(flood) == 0 {
		o.counters.Drop(DropNoDestination)
		return
	}
	// Flooded frames are rare (ARP, unknown unicast): keep the order of
	// the batch by sending the pending run first.
	e.flush()
	o.counters.TxFlooded.Add(1)
	e.one[0] = pkt
	for _, vtep := range flood {
		e.send(e.one, vtep, flow)
	}
}

// flush sends the pending run.
func (e *encapsulator) flush() {
	if len(e.run) > 0 {
		e.send(e.run, e.runDst, e.runFlow)
	}
	clear(e.run)
	e.run = e.run[:0]
}

func (e *encapsulator) send(pkts [][]byte, vtep netip.AddrPort, flow uint32) {
	o := e.o
	err := e.sendOnce(pkts, vtep, flow)
	if errors.Is(err, ErrGSORefused) {
		o.cfg.Logger.Warn("the kernel refused UDP segmentation offload; sending datagrams one by one", "err", err)
		err = e.sendOnce(pkts, vtep, flow)
	}
	if err != nil {
		o.counters.Drops(DropSendError, len(pkts))
		return
	}
	var bytes int
	for _, p := range pkts {
		bytes += len(p) - encap.HeaderLen
	}
	o.counters.TxPackets.Add(uint64(len(pkts)))
	o.counters.TxBytes.Add(uint64(bytes))
	e.qc.tx.Add(uint64(len(pkts)))
}

func (e *encapsulator) sendOnce(pkts [][]byte, vtep netip.AddrPort, flow uint32) error {
	if e.flows != nil {
		return e.flows.SendFlow(pkts, vtep, flow)
	}
	return e.conn.Send(pkts, vtep)
}

// answerARP answers the ARP request in buf[deviceHeadroom:] from the
// neighbour table: the reply goes back out of the device, and nothing
// crosses the underlay.
func (e *encapsulator) answerARP(buf []byte, mac fdb.MAC) {
	answerARP(buf[deviceHeadroom:], mac)
	// Keep the batch's order: what was queued before goes first.
	e.flush()
	e.one[0] = buf
	if _, err := e.dev.Write(e.one, deviceHeadroom); err != nil {
		e.o.counters.Drop(DropTapWrite)
		return
	}
	e.o.counters.ARPAnswered.Add(1)
}

// decapsulator moves datagrams from the underlay to the device.
type decapsulator struct {
	o    *Overlay
	dev  FrameDevice
	conn PacketConn
	qc   *queueCounters
	// read is conn.Read, or the socket's TryRead when one thread polls
	// both directions.
	read func(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (int, error)
	// Datagram i is read into bufs[i][readHeadroom:]: its frame then
	// starts writeOffset bytes in, leaving room for the device's own
	// header (the TAP's virtio header) in front of it. The socket may
	// replace bufs[i] with views of its own memory.
	bufs  [][]byte
	sizes []int
	srcs  []netip.AddrPort
	// out collects the frames of a batch for one device write.
	out [][]byte
	// segs receive the segments of an oversized inner TCP frame.
	segs     [][]byte
	segSizes []int
	segOut   [][]byte
	// The datagrams of a batch mostly come from one VTEP and one inner
	// source: the allowlist check and learning of the previous datagram
	// are remembered for the rest of the batch.
	memo decapMemo
}

type decapMemo struct {
	known, learned bool
	vtep           netip.Addr
	mac            fdb.MAC
}

const (
	// deviceHeadroom is room for a device header in front of a frame:
	// the 10-byte virtio header of an offload TAP.
	deviceHeadroom = 10
	readHeadroom   = deviceHeadroom - encap.HeaderLen
	writeOffset    = deviceHeadroom
)

func (o *Overlay) newDecapsulator(i int) *decapsulator {
	q := o.queues[i]
	n := q.Conn.BatchSize()
	d := &decapsulator{
		o:     o,
		dev:   q.Device,
		conn:  q.Conn,
		qc:    o.counters.queue(i),
		read:  q.Conn.Read,
		bufs:  make([][]byte, n),
		sizes: make([]int, n),
		srcs:  make([]netip.AddrPort, n),
		out:   make([][]byte, 0, n),
	}
	for i := range d.bufs {
		d.bufs[i] = make([]byte, readHeadroom+encap.HeaderLen+MaxFrameSize)
	}
	// Enough segments for the largest frame at the smallest payload per
	// segment this MTU allows (IPv4 and TCP headers of 60 bytes each).
	perSeg := max(o.cfg.MTU-120, 8)
	nsegs := MaxFrameSize/perSeg + 1
	d.segs = make([][]byte, nsegs)
	d.segSizes = make([]int, nsegs)
	d.segOut = make([][]byte, nsegs)
	for i := range d.segs {
		d.segs[i] = make([]byte, deviceHeadroom+o.cfg.MTU+ethHeaderLen)
	}
	return d
}

// step reads one batch of datagrams and delivers each that passes the
// checks, in one device write. Only a failing socket read is an error.
func (d *decapsulator) step() error {
	n, err := d.read(d.bufs, d.sizes, d.srcs, readHeadroom)
	if err != nil {
		return err
	}
	d.memo = decapMemo{}
	for i := range n {
		buf := d.bufs[i][:readHeadroom+d.sizes[i]]
		frame, ok := d.receive(buf[readHeadroom:], d.srcs[i].Addr())
		if !ok {
			continue
		}
		if len(frame) > d.o.cfg.MTU+ethHeaderLen {
			d.flush()
			d.writeSegmented(frame)
			continue
		}
		d.out = append(d.out, buf)
	}
	d.flush()
	return nil
}

// flush writes the collected frames to the device.
func (d *decapsulator) flush() {
	if len(d.out) == 0 {
		return
	}
	o := d.o
	written, err := d.dev.Write(d.out, writeOffset)
	var bytes int
	for _, b := range d.out[:written] {
		bytes += len(b) - writeOffset
	}
	o.counters.RxPackets.Add(uint64(written))
	o.counters.RxBytes.Add(uint64(bytes))
	d.qc.rx.Add(uint64(written))
	if err != nil {
		o.counters.Drops(DropTapWrite, len(d.out)-written)
	}
	clear(d.out)
	d.out = d.out[:0]
}

// receive validates one VXLAN datagram from src and returns its inner
// frame. The checks run in the order of the RFC and of the Linux driver:
// header, VNI, sender, then the inner frame.
func (d *decapsulator) receive(pkt []byte, src netip.Addr) ([]byte, bool) {
	o := d.o
	var h encap.Header
	frame, err := encap.Decode(pkt, &h)
	switch {
	case err == nil:
	case errors.Is(err, encap.ErrShort):
		o.counters.Drop(DropShort)
		return nil, false
	case errors.Is(err, encap.ErrNoIFlag):
		o.counters.Drop(DropNoIFlag)
		return nil, false
	default:
		o.counters.Drop(DropReservedBits)
		return nil, false
	}
	if h.VNI != o.cfg.VNI {
		o.counters.Drop(DropVNI)
		return nil, false
	}
	if !d.memo.known || src != d.memo.vtep {
		if !o.fdb.IsKnownVTEP(src) {
			o.counters.Drop(DropUnknownVTEP)
			return nil, false
		}
		d.memo = decapMemo{known: true, vtep: src}
	}
	if len(frame) < ethHeaderLen {
		o.counters.Drop(DropInnerShort)
		return nil, false
	}
	srcMAC := fdb.MAC(frame[6:12])
	switch {
	case srcMAC == o.cfg.LocalMAC:
		o.counters.Drop(DropOwnMAC)
		return nil, false
	case srcMAC.IsMulticast():
		o.counters.Drop(DropMulticastSource)
		return nil, false
	case srcMAC.IsZero():
		o.counters.Drop(DropZeroSource)
		return nil, false
	}
	switch offload.FixChecksum(frame) {
	case offload.ChecksumBad:
		o.counters.Drop(DropInnerChecksum)
		return nil, false
	case offload.ChecksumCompleted:
		o.counters.RxChecksumCompleted.Add(1)
	}
	if !d.memo.learned || srcMAC != d.memo.mac {
		o.fdb.Learn(o.cfg.VNI, srcMAC, src)
		d.memo.learned, d.memo.mac = true, srcMAC
	}
	return frame, true
}

// writeSegmented cuts an inner TCP frame larger than the MTU into segments
// that fit. A kernel VXLAN peer on a veth underlay sends such frames: the
// tunnel GSO packet crosses the veth unsegmented.
func (d *decapsulator) writeSegmented(frame []byte) {
	o := d.o
	n, err := offload.SegmentTCP(frame, o.cfg.MTU, d.segs, d.segSizes, deviceHeadroom)
	if err != nil {
		o.counters.Drop(DropOversize)
		return
	}
	for i := range n {
		d.segOut[i] = d.segs[i][:deviceHeadroom+d.segSizes[i]]
	}
	written, err := d.dev.Write(d.segOut[:n], deviceHeadroom)
	for i := range written {
		o.counters.RxBytes.Add(uint64(d.segSizes[i]))
	}
	o.counters.RxPackets.Add(uint64(written))
	d.qc.rx.Add(uint64(written))
	o.counters.RxSegmented.Add(1)
	if err != nil {
		o.counters.Drops(DropTapWrite, n-written)
	}
}
