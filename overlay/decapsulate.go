package overlay

import (
	"errors"
	"net/netip"

	"github.com/vxland/vxland/overlay/capture"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/offload"
)

// decapsulator moves datagrams from the underlay to the device: it checks
// each, learns its inner source and writes the frames of a batch to the
// device in one call. It owns its buffers; one runs per queue.
type decapsulator struct {
	o    *Overlay
	dev  FrameDevice
	conn PacketConn
	qc   *queueCounters
	// read is conn.Read, or the socket's TryRead when one thread polls
	// both directions.
	read func(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (int, error)
	// Datagram i is read into bufs[i][datagramOffset:], so that its
	// frame starts Headroom bytes in. The socket may replace bufs[i] with
	// views of its own memory.
	bufs  [][]byte
	sizes []int
	srcs  []netip.AddrPort
	// out collects the frames of a batch for one device write.
	out [][]byte
	// The datagrams of a batch mostly come from one VTEP and one inner
	// source: the allowlist check and learning of the previous datagram
	// are remembered for the rest of the batch.
	memo decapMemo
}

type decapMemo struct {
	checked, learned bool
	src              netip.Addr
	// vtep is src's record, nil when src is not a known VTEP. Its
	// traffic is summed here, and added to it when the sender changes
	// and at the end of the batch.
	vtep           *fdb.VTEP
	packets, bytes int
	mac            fdb.MAC
}

func (o *Overlay) newDecapsulator(i int) *decapsulator {
	d := o.newDeliverer(i)
	d.read = d.conn.Read
	d.bufs, d.sizes, d.srcs = newDatagramBatch(d.conn)
	return d
}

// newDeliverer returns a decapsulator for queue i without buffers of its
// own: it delivers datagrams that another reads (deliver), as a Mux does.
func (o *Overlay) newDeliverer(i int) *decapsulator {
	q := o.queues[i]
	return &decapsulator{o: o, dev: q.Device, conn: q.Conn, qc: &o.counters[i], out: make([][]byte, 0, q.Conn.BatchSize())}
}

// newDatagramBatch returns the buffers of a batch of conn's datagrams: a
// buffer for the largest datagram in each slot that conn reads into, none
// where it hands out views of its own memory. With GRO a batch has a slot
// for each datagram of every coalesced read, thousands, of which the
// socket fills none but with views.
func newDatagramBatch(conn PacketConn) (bufs [][]byte, sizes []int, srcs []netip.AddrPort) {
	n := conn.BatchSize()
	bufs = make([][]byte, n)
	if v, ok := conn.(ViewReader); !ok || !v.ReadsViews() {
		for i := range bufs {
			bufs[i] = make([]byte, Headroom+MaxFrameSize)
		}
	}
	return bufs, make([]int, n), make([]netip.AddrPort, n)
}

// step reads one batch of datagrams and delivers it. Only a failing socket
// read is an error.
func (d *decapsulator) step() error {
	n, err := d.read(d.bufs, d.sizes, d.srcs, datagramOffset)
	if err != nil {
		return err
	}
	d.deliver(d.bufs[:n], d.sizes[:n], d.srcs[:n])
	return nil
}

// deliver writes, in order and in one device write, the frame of each
// datagram that passes the checks: datagram i is
// bufs[i][datagramOffset:datagramOffset+sizes[i]], from srcs[i].
func (d *decapsulator) deliver(bufs [][]byte, sizes []int, srcs []netip.AddrPort) {
	cfg := &d.o.cfg
	d.memo = decapMemo{}
	capt := d.o.capture.Load()
	for i := range bufs {
		buf := bufs[i][:datagramOffset+sizes[i]]
		src := srcs[i].Addr()
		frame, reason, ok := checkDatagram(buf[datagramOffset:], cfg.VNI, d.knownVTEP(src), cfg.LocalMAC)
		if !ok && reason == DropUnknownVTEP && d.o.admitsSender(src) {
			// A sender the VNI admits (its multicast group's) becomes a
			// known VTEP with its first datagram that passes every
			// other check.
			if frame, reason, ok = checkDatagram(buf[datagramOffset:], cfg.VNI, true, cfg.LocalMAC); ok {
				d.memo.vtep = d.o.fdb.Allow(src, fdb.SourceMulticast)
			}
		}
		if !ok {
			d.qc.drop(reason)
			continue
		}
		switch offload.FixChecksum(frame) {
		case offload.ChecksumBad:
			d.qc.drop(DropInnerChecksum)
			continue
		case offload.ChecksumCompleted:
			d.qc.rxChecksumCompleted.Add(1)
		}
		if !cfg.NoLearning {
			d.learn(fdb.MAC(frame[6:12]), src)
		}
		d.memo.packets++
		d.memo.bytes += len(frame)
		if len(frame) > cfg.MTU+encap.EthernetHeaderLen {
			// A kernel peer on a virtual underlay passes its tunnel's
			// segmentation offload on: the device segments it.
			d.qc.rxOversize.Add(1)
		}
		if capt != nil {
			capt.Offer(capture.Rx, srcs[i], buf[datagramOffset:], frame)
		}
		d.out = append(d.out, buf)
	}
	d.countVTEP()
	d.flush()
}

// checkDatagram runs the checks of a received VXLAN datagram, in the order
// of the RFC and of the Linux driver: header, VNI, sender, then the inner
// frame. It returns the inner frame, or why to drop the datagram. It reads
// nothing but its arguments and changes nothing.
func checkDatagram(pkt []byte, vni uint32, fromKnownVTEP bool, own fdb.MAC) (frame []byte, reason DropReason, ok bool) {
	var h encap.Header
	frame, err := encap.Decode(pkt, &h)
	switch {
	case errors.Is(err, encap.ErrShort):
		return nil, DropShort, false
	case errors.Is(err, encap.ErrNoIFlag):
		return nil, DropNoIFlag, false
	case err != nil:
		return nil, DropReservedBits, false
	case h.VNI != vni:
		return nil, DropVNI, false
	case !fromKnownVTEP:
		return nil, DropUnknownVTEP, false
	case len(frame) < encap.EthernetHeaderLen:
		return nil, DropInnerShort, false
	}
	switch src := fdb.MAC(frame[6:12]); {
	case src == own:
		return nil, DropOwnMAC, false
	case src.IsMulticast():
		return nil, DropMulticastSource, false
	case src.IsZero():
		return nil, DropZeroSource, false
	}
	return frame, 0, true
}

// knownVTEP reports whether src is on the receive allowlist, asking the
// FDB once per sender and batch.
func (d *decapsulator) knownVTEP(src netip.Addr) bool {
	if !d.memo.checked || src != d.memo.src {
		d.countVTEP()
		v, _ := d.o.fdb.KnownVTEP(src)
		d.memo = decapMemo{checked: true, src: src, vtep: v}
	}
	return d.memo.vtep != nil
}

// admitsSender reports whether src, not a known VTEP, is in one of the
// prefixes of Config.GroupSenders.
func (o *Overlay) admitsSender(src netip.Addr) bool {
	for _, p := range o.cfg.GroupSenders {
		if p.Contains(src.Unmap()) {
			return true
		}
	}
	return false
}

// countVTEP adds the traffic summed for the memo's sender to its record.
func (d *decapsulator) countVTEP() {
	if d.memo.packets > 0 {
		d.memo.vtep.CountRx(d.memo.packets, d.memo.bytes)
		d.memo.packets, d.memo.bytes = 0, 0
	}
}

// learn records that mac lives behind the VTEP src, as the kernel learns
// from the outer source address, once per inner source and batch. A MAC
// the full table refuses is counted; its frame is delivered all the same,
// as the kernel delivers it (replies to it are flooded).
func (d *decapsulator) learn(mac fdb.MAC, src netip.Addr) {
	if !d.memo.learned || mac != d.memo.mac {
		if d.o.fdb.Learn(d.o.cfg.VNI, mac, src) == fdb.LearnFull {
			d.o.limitHit(d.qc, DropFDBFull, mac)
		}
		d.memo.learned, d.memo.mac = true, mac
	}
}

// flush writes the collected frames to the device.
func (d *decapsulator) flush() {
	if len(d.out) == 0 {
		return
	}
	written, err := d.dev.Write(d.out, Headroom)
	var bytes int
	for _, b := range d.out[:written] {
		bytes += len(b) - Headroom
	}
	d.qc.rxPackets.Add(uint64(written))
	d.qc.rxBytes.Add(uint64(bytes))
	if err != nil {
		d.qc.dropN(DropTapWrite, len(d.out)-written)
	}
	clear(d.out)
	d.out = d.out[:0]
}
