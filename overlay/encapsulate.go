package overlay

import (
	"errors"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/vxland/vxland/overlay/capture"
	"github.com/vxland/vxland/overlay/ratelimit"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/offload"
)

// encapsulator moves frames from the device to the underlay: for each
// frame it observes the sender, answers or floods ARP requests and
// neighbour solicitations, finds the VTEPs and writes the VXLAN header in
// front. It owns its buffers; one runs per queue.
type encapsulator struct {
	o    *Overlay
	dev  FrameDevice
	conn PacketConn
	qc   *queueCounters
	// read is dev.Read, or the device's TryRead when one thread polls
	// both directions.
	read func(bufs [][]byte, sizes []int, offset int) (int, error)
	// Frame i is read into bufs[i][Headroom:]; the device may replace
	// the last with a view of its own (FrameSizer), and own is where the
	// buffers are put back from.
	bufs, own [][]byte
	sizes     []int
	one       [][]byte
	// run collects consecutive frames of a batch bound for the same VTEP
	// and flow, so that the socket sends them in one call (and one GSO
	// message).
	run     [][]byte
	runDst  *fdb.VTEP
	runFlow uint32
	// flows, when the socket supports it, sends each inner flow from a
	// source port of its own.
	flows FlowSender
	// The frames of a batch mostly share source and destination (a TCP
	// super-frame cut into segments): the lookups of the previous frame
	// are remembered for the rest of the batch.
	memo encapMemo
	// tooBig holds the ICMP answer to a packet larger than the MTU, at
	// Headroom; tooBigRate bounds how often one is sent.
	tooBig     []byte
	tooBigRate ratelimit.Bucket
}

type encapMemo struct {
	valid    bool
	src, dst fdb.MAC
	vtep     *fdb.VTEP
	known    bool
}

func (o *Overlay) newEncapsulator(i int) *encapsulator {
	q := o.queues[i]
	n := q.Device.BatchSize()
	e := &encapsulator{o: o, dev: q.Device, conn: q.Conn, qc: &o.counters[i], read: q.Device.Read,
		bufs: make([][]byte, n), sizes: make([]int, n), one: make([][]byte, 1), run: make([][]byte, 0, n),
		tooBig: make([]byte, Headroom+offload.TooBigFrameLen)}
	e.flows, _ = q.Conn.(FlowSender)
	// A TAP with offloads reads a super-frame of 64 KB into a buffer of
	// its own and cuts it into many segments of the MTU: its batch has
	// hundreds of slots that never hold more than one segment each.
	size := MaxFrameSize
	if s, ok := q.Device.(FrameSizer); ok {
		size = s.FrameLen()
	}
	for i := range e.bufs {
		e.bufs[i] = make([]byte, Headroom+size)
	}
	e.own = slices.Clone(e.bufs)
	return e
}

// step reads one batch of frames from the device and sends each to its
// VTEPs, in order. Only a failing device read is an error; per-frame
// problems are counted.
func (e *encapsulator) step() error {
	n, err := e.read(e.bufs, e.sizes, Headroom)
	if err != nil {
		return err
	}
	e.memo.valid = false
	for i := range n {
		buf := e.bufs[i][:Headroom+e.sizes[i]]
		frame := buf[Headroom:]
		if len(frame) < encap.EthernetHeaderLen {
			e.qc.drop(DropTxShort)
			continue
		}
		if len(frame) > e.maxFrameLen(frame) {
			e.answerTooBig(frame)
			continue
		}
		arp, nd := arpIPv4(frame), parseND(frame)
		e.observe(frame, arp, nd)
		if arp != nil && e.answerARP(buf, arp) {
			continue
		}
		if nd.ip != nil && e.answerND(buf, nd) {
			continue
		}
		pkt := buf[datagramOffset:]
		_ = encap.Encode(pkt, e.o.cfg.VNI) // VNI checked by New; pkt has the headroom
		var flow uint32
		if e.flows != nil {
			flow = offload.FlowHash(frame)
		}
		if vtep, ok := e.lookup(frame); ok {
			e.queue(pkt, vtep, flow)
			continue
		}
		e.flood(pkt, flow)
	}
	e.flush()
	if n > 0 {
		e.bufs[n-1] = e.own[n-1] // the device's view, if it handed out one
	}
	return nil
}

// observe records the source MAC of a frame from one of this host's
// containers, and the IPv4 address it claims in ARP or the IPv6 address
// it claims in neighbour discovery, for the control plane to publish.
// The TAP's own address is not a container: the host's stack sends
// through the TAP too (IPv6 neighbour discovery, for one).
func (e *encapsulator) observe(frame, arp []byte, nd ndMessage) {
	local := e.o.cfg.Local
	src := fdb.MAC(frame[6:12])
	seen := e.memo.valid && src == e.memo.src && arp == nil && nd.ip == nil
	if local == nil || seen || src.IsMulticast() || src.IsZero() || src == e.o.cfg.LocalMAC {
		return
	}
	var ip netip.Addr
	switch {
	case arp != nil && arpSenderMAC(arp) == src:
		if sip := arpSenderIP(arp); !sip.IsUnspecified() {
			ip = sip
		}
	case nd.ip != nil:
		if a, ok := nd.claim(src); ok {
			ip = a
		}
	}
	switch local.Observe(src, ip) {
	case fdb.ObserveFull:
		e.o.limitHit(e.qc, DropLocalMACFull, src)
	case fdb.ObserveRateLimited:
		e.o.limitHit(e.qc, DropLocalMACRate, src)
	}
}

// answerARP answers a broadcast ARP request in buf from the neighbour
// table, and reports whether it did: the reply goes back out of the
// device, and nothing crosses the underlay. A request it does not answer
// is counted as flooded.
func (e *encapsulator) answerARP(buf, arp []byte) bool {
	frame := buf[Headroom:]
	if arpOp(arp) != arpRequest || !fdb.MAC(frame[0:6]).IsMulticast() {
		return false
	}
	// A gratuitous ARP (sender address = target address) announces a
	// container, perhaps one that just moved here: it must reach every
	// host, and answering it would teach the bridge that the container
	// lives behind the TAP.
	if n, tip := e.o.cfg.Neighbors, arpTargetIP(arp); n != nil && tip != arpSenderIP(arp) {
		if mac, ok := n.Lookup(tip); ok && mac != fdb.MAC(frame[6:12]) {
			answerARP(frame, mac)
			e.flush() // what was queued before goes first
			e.one[0] = buf
			if _, err := e.dev.Write(e.one, Headroom); err != nil {
				e.qc.drop(DropTapWrite)
			} else {
				e.qc.arpAnswered.Add(1)
			}
			return true
		}
	}
	e.qc.arpFlooded.Add(1)
	return false
}

// answerND answers a neighbour solicitation in buf, multicast or
// unicast, from the neighbour table, and reports whether it did: the
// advertisement goes back out of the device, and nothing crosses the
// underlay. A multicast solicitation it does not answer is counted as
// flooded.
func (e *encapsulator) answerND(buf []byte, nd ndMessage) bool {
	frame := buf[Headroom:]
	if !nd.isSolicitation() {
		return false
	}
	if n := e.o.cfg.Neighbors; n != nil {
		// A solicitation from the target's own MAC is a container that
		// moved here checking its address: it must reach every host.
		mac, ok := n.Lookup(ndTarget(nd.ip))
		if ok && mac != fdb.MAC(frame[6:12]) && cap(frame) >= ndAnswerLen {
			na := answerNS(frame, mac)
			e.flush() // what was queued before goes first
			e.one[0] = buf[:Headroom+len(na)]
			if _, err := e.dev.Write(e.one, Headroom); err != nil {
				e.qc.drop(DropTapWrite)
			} else {
				e.qc.ndAnswered.Add(1)
			}
			return true
		}
	}
	if fdb.MAC(frame[0:6]).IsMulticast() {
		e.qc.ndFlooded.Add(1)
	}
	return false
}

// maxFrameLen is the longest frame whose packet fits the MTU: the
// Ethernet header and an 802.1Q tag when it has one. The TAP driver has
// already cut its super-frames into their segments, and hands over whole
// one whose segments would not fit; what is longer was sent by a
// container whose MTU is larger than the overlay's.
func (e *encapsulator) maxFrameLen(frame []byte) int {
	if frame[12] == 0x81 && frame[13] == 0x00 {
		return e.o.cfg.MTU + encap.EthernetHeaderLen + 4
	}
	return e.o.cfg.MTU + encap.EthernetHeaderLen
}

// tooBigLimit bounds the ICMP "too big" answers of one queue, as Linux
// bounds the ICMP errors it sends (net.ipv4.icmp_msgs_per_sec and
// icmp_msgs_burst): a sender that ignores them costs one answer a
// millisecond at most.
var tooBigLimit = ratelimit.Every(time.Millisecond, 50)

// answerTooBig drops a frame too large for the MTU and, when its sender
// may be told (IPv4 with DF, IPv6) and the rate limit allows, writes the
// ICMP answer that has it lower its path MTU back to it through the
// device, as kernel VXLAN does with "df set". The frame is never
// fragmented.
func (e *encapsulator) answerTooBig(frame []byte) {
	e.qc.drop(DropTooBig)
	n := offload.TooBig(e.tooBig[Headroom:], frame, e.o.cfg.LocalMAC, e.o.cfg.MTU)
	if n == 0 {
		return
	}
	if !e.tooBigRate.Allow(tooBigLimit, e.o.clock.Now()) {
		e.qc.tooBigLimited.Add(1)
		return
	}
	e.flush() // what was queued before goes first
	e.one[0] = e.tooBig[:Headroom+n]
	if _, err := e.dev.Write(e.one, Headroom); err != nil {
		e.qc.drop(DropTapWrite)
		return
	}
	e.qc.tooBigSent.Add(1)
}

// lookup returns the VTEP that owns the frame's unicast destination.
func (e *encapsulator) lookup(frame []byte) (*fdb.VTEP, bool) {
	dst := fdb.MAC(frame[0:6])
	if dst.IsMulticast() {
		return nil, false
	}
	if !e.memo.valid || dst != e.memo.dst {
		e.memo.vtep, e.memo.known = e.o.fdb.Lookup(e.o.cfg.VNI, dst)
		e.memo.valid, e.memo.src, e.memo.dst = true, fdb.MAC(frame[6:12]), dst
	}
	return e.memo.vtep, e.memo.known
}

// queue adds the datagram pkt to the run, sending the run first when pkt
// is for another VTEP or flow.
func (e *encapsulator) queue(pkt []byte, vtep *fdb.VTEP, flow uint32) {
	if vtep != e.runDst || flow != e.runFlow {
		e.flush()
		e.runDst, e.runFlow = vtep, flow
	}
	e.run = append(e.run, pkt)
}

// flood sends pkt to every VTEP of the VNI's flood list, within the
// flood rates of its source and of all. Flooded frames are rare (ARP,
// unknown unicast): the pending run goes first, which keeps the order of
// the batch.
func (e *encapsulator) flood(pkt []byte, flow uint32) {
	vteps := e.o.fdb.Flood(e.o.cfg.VNI)
	if len(vteps) == 0 {
		e.qc.drop(DropNoDestination)
		return
	}
	src := fdb.MAC(pkt[encap.HeaderLen+6 : encap.HeaderLen+12])
	if reason, ok := e.o.allowFlood(src); !ok {
		e.o.limitHit(e.qc, reason, src)
		return
	}
	e.flush()
	e.qc.txFlooded.Add(1)
	e.qc.txFloodCopies.Add(uint64(len(vteps)))
	e.one[0] = pkt
	for _, vtep := range vteps {
		e.send(e.one, vtep, flow)
	}
}

// allowFlood takes a token for a frame from src to flood, first from its
// source's bucket, then from the overall one, and says which ran out.
func (o *Overlay) allowFlood(src fdb.MAC) (DropReason, bool) {
	if o.cfg.FloodPerSource.Unlimited() && o.cfg.FloodTotal.Unlimited() {
		return 0, true
	}
	now := o.clock.Now()
	if !o.floodSources.Allow(src, o.cfg.FloodPerSource, now) {
		return DropFloodRateSource, false
	}
	if !o.floodTotal.Allow(o.cfg.FloodTotal, now) {
		return DropFloodRateTotal, false
	}
	return 0, true
}

// flush sends the pending run.
func (e *encapsulator) flush() {
	if len(e.run) > 0 {
		e.send(e.run, e.runDst, e.runFlow)
	}
	clear(e.run)
	e.run = e.run[:0]
}

// send sends a run of datagrams to vtep, and counts them for the queue
// and for the VTEP: once per run, not per datagram.
func (e *encapsulator) send(pkts [][]byte, vtep *fdb.VTEP, flow uint32) {
	var err error
	if e.flows != nil {
		err = e.flows.SendFlow(pkts, vtep.AddrPort(), flow)
	} else {
		err = e.conn.Send(pkts, vtep.AddrPort())
	}
	if errors.Is(err, syscall.EMSGSIZE) {
		e.qc.dropN(DropSendMsgSize, len(pkts))
		if !e.o.msgSizeRefused.Swap(true) {
			e.o.cfg.Logger.Warn("the underlay refused datagrams too large for its path; they are dropped and counted as send_msgsize (is --mtu above the path's MTU less the VXLAN overhead?)",
				"vtep", vtep.AddrPort(), "size", len(pkts[0]), "err", err)
		}
		return
	}
	if err != nil {
		e.qc.dropN(DropSendError, len(pkts))
		return
	}
	var bytes int
	for _, p := range pkts {
		bytes += len(p) - encap.HeaderLen
	}
	e.qc.txPackets.Add(uint64(len(pkts)))
	e.qc.txBytes.Add(uint64(bytes))
	vtep.CountTx(len(pkts), bytes)
	if c := e.o.capture.Load(); c != nil {
		for _, p := range pkts {
			c.Offer(capture.Tx, vtep.AddrPort(), p, p[encap.HeaderLen:])
		}
	}
}
