//go:build linux

package tap

import (
	"encoding/binary"
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/overlay/offload"
	"github.com/vxland/vxland/overlay/poller"
)

// Queue is one queue of a TAP device: a descriptor to read frames from and
// write frames to. One goroutine at a time may read and one may write.
//
// All its memory is allocated by Open: reading and writing allocate
// nothing.
type Queue struct {
	dev     *Device
	fd      *poller.FD
	mtu     int
	offload bool

	// With offloads: the packet being read, and the coalescing of
	// written frames.
	readBuf []byte
	// whole is the one-slot batch that hands out a whole frame longer
	// than the caller's buffer: a view of readBuf.
	whole [][]byte
	gro   *offload.GRO
	// Without: the segments of an oversize frame being written.
	segs     [][]byte
	segSizes []int

	malformed atomic.Uint64
	oversize  atomic.Uint64
}

const (
	// maxSegmentsPerRead is the room Read keeps for one packet read from
	// an offload TAP: a 64 KB super-frame at an MSS of 410 bytes or more,
	// which any MTU of 576 or more gives. A super-frame that would need
	// more is dropped and counted (DropMalformed).
	maxSegmentsPerRead = 160
	// plainBatch is how many frames one Read of a plain TAP may return,
	// one read(2) each, so that a burst leaves in one batch.
	plainBatch = 64
	// groFlows is how many flows Write coalesces at once; a batch with
	// more writes what it has and starts again.
	groFlows = 64
	// maxPacket is the largest packet the kernel hands over: a 64 KB
	// GSO super-frame with its headers.
	maxPacket = 1 << 16
)

func newQueue(fd *poller.FD, opt Options, uso bool) *Queue {
	q := &Queue{fd: fd, mtu: opt.MTU, offload: opt.Offload}
	if q.offload {
		q.readBuf = make([]byte, offload.VirtioNetHdrLen+maxPacket)
		q.whole = make([][]byte, 1)
		q.gro = offload.NewGRO(groFlows)
		q.gro.UDP = uso
		return q
	}
	// Enough segments for the largest frame at the smallest payload per
	// segment this MTU allows (IP and TCP headers of 60 bytes each).
	n := maxPacket/max(q.mtu-120, 8) + 1
	q.segs = make([][]byte, n)
	q.segSizes = make([]int, n)
	for i := range q.segs {
		q.segs[i] = make([]byte, ethHeaderLen+vlanTagLen+q.mtu)
	}
	return q
}

// BatchSize is how many frames one Read may return: with offloads, a
// super-frame cut to the MTU and whatever more is already queued.
func (q *Queue) BatchSize() int {
	if q.offload {
		return 2 * maxSegmentsPerRead
	}
	return plainBatch
}

// FrameLen is the longest frame Read writes into a caller's buffer. With
// offloads that is a segment of a super-frame, cut to the MTU; a longer
// frame, whole, comes out as a view of the queue's own buffer (see Read).
// Without, a frame is read into the caller's buffer as it comes: the
// link's MTU may be anything up to a 64 KB frame.
func (q *Queue) FrameLen() int {
	if q.offload {
		return ethHeaderLen + vlanTagLen + q.mtu
	}
	return maxPacket
}

// FD returns the queue's descriptor, for a poller.Set.
func (q *Queue) FD() *poller.FD { return q.fd }

// Close wakes a pending Read and closes the queue; the device goes away
// with its last queue.
func (q *Queue) Close() error { return q.fd.Close() }

// ReportDrops reports the queue's drops: DropMalformed and DropOversize.
func (q *Queue) ReportDrops(add func(reason string, n uint64)) {
	add(DropMalformed, q.malformed.Load())
	add(DropOversize, q.oversize.Load())
}

// Read reads frames, waiting for the first, and writes frame i to
// bufs[i][offset:] and its length to sizes[i]. With offloads, a
// super-frame comes out cut into the segments its sender asked for
// (gso_size), with complete checksums; one whose segments would be larger
// than the MTU (its sender's MTU is larger than the overlay's) comes out
// whole, its checksum left partial, as one frame longer than the MTU for
// the caller to drop as too big. Without offloads, a frame longer than the
// MTU comes out as it is too: the link's MTU may be larger than the
// overlay's. While there is room for another packet and the TAP has more
// queued, it reads on without waiting, so that a burst leaves in one
// batch. bufs[i] must hold offset plus FrameLen bytes. With offloads, a
// frame that comes out whole and is longer than bufs[i] replaces bufs[i]
// with a view of the queue's own buffer, at an offset of at most
// Headroom, valid until the next Read: it is the last frame of the
// batch, and the caller puts its own buffer back before reading again.
func (q *Queue) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return q.read(bufs, sizes, offset, true)
}

// TryRead is Read that returns poller.ErrWouldBlock instead of waiting.
func (q *Queue) TryRead(bufs [][]byte, sizes []int, offset int) (int, error) {
	return q.read(bufs, sizes, offset, false)
}

func (q *Queue) read(bufs [][]byte, sizes []int, offset int, wait bool) (int, error) {
	perPacket := 1
	if q.offload {
		perPacket = maxSegmentsPerRead
	}
	total := 0
	for total == 0 || len(bufs)-total >= perPacket {
		n, view, err := q.readPacket(bufs[total:], sizes[total:], offset, total == 0 && wait)
		if err != nil {
			if total > 0 {
				return total, nil // EAGAIN after some frames, or an error the next Read reports
			}
			if errors.Is(err, unix.EBADFD) {
				// The device was deleted: attach to it anew and read on.
				if err := q.dev.reattach(); err != nil {
					return 0, err
				}
				continue
			}
			return 0, err
		}
		total += n
		if view {
			return total, nil // the next packet would overwrite it
		}
	}
	return total, nil
}

// readPacket reads one packet into bufs and returns how many frames it
// made: one, or with offloads the segments of a super-frame; none for a
// packet that is dropped and counted. view reports that bufs[0] was
// replaced by a view of readBuf.
func (q *Queue) readPacket(bufs [][]byte, sizes []int, offset int, wait bool) (n int, view bool, err error) {
	if !q.offload {
		n, err := q.readSys(bufs[0][offset:], wait)
		if err != nil {
			return 0, false, err
		}
		sizes[0] = n
		return 1, false, nil
	}
	n, err = q.readSys(q.readBuf, wait)
	if err != nil {
		return 0, false, err
	}
	var h offload.VirtioNetHdr
	if err := h.Decode(q.readBuf[:n]); err != nil {
		q.malformed.Add(1)
		return 0, false, nil
	}
	frame := q.readBuf[offload.VirtioNetHdrLen:n]
	// Its sender's MTU is larger than ours: cut, it would make as many
	// frames too big for the overlay. Whole, it is one packet too big,
	// dropped and answered once by the caller.
	whole := offload.SegmentLen(h, frame) > q.mtu
	out := bufs
	if (whole || h.GSOType == offload.VirtioNetHdrGSONone) && len(bufs[0])-offset < len(frame) {
		// Longer than the caller's buffers, which are sized for
		// segments: it goes out where it was read, without a copy.
		if offset > offload.VirtioNetHdrLen {
			q.malformed.Add(1)
			return 0, false, nil
		}
		q.whole[0] = q.readBuf[offload.VirtioNetHdrLen-offset : n : n]
		out, view = q.whole, true
	}
	if whole {
		n, sizes[0] = 1, copy(out[0][offset:], frame) // onto itself for a view
	} else if n, err = offload.SegmentGSO(h, frame, out, sizes, offset); err != nil {
		q.malformed.Add(1)
		return 0, false, nil
	}
	if view {
		bufs[0] = q.whole[0]
	}
	return n, view, nil
}

// readSys reads one packet into b, waiting for one if wait is set, else
// returning poller.ErrWouldBlock when none is queued.
func (q *Queue) readSys(b []byte, wait bool) (n int, err error) {
	op := func(fd int) (err error) {
		n, err = unix.Read(fd, b)
		return err
	}
	if wait {
		err = q.fd.Read("read", op)
	} else {
		err = q.fd.TryRead("read", op)
	}
	return n, err
}

// Write writes the frames bufs[i][offset:]; offset is at least headroom.
// The frames' checksums must be valid: the kernel recomputes a
// super-frame's checksum, which would hide a corrupt one.
//
// With offloads, the TCP segments (and, with USO, the UDP datagrams) of a
// flow are coalesced into super-frames; order within a flow is kept,
// frames of different flows may be reordered. A frame may be up to 64 KB:
// a TCP frame longer than the MTU goes out whole as a super-frame, or
// without offloads cut into segments. An oversize frame that is not TCP
// is dropped and counted (DropOversize).
//
// Write uses the headroom and may change the frames' headers. It returns
// how many frames it is done with, written or dropped; it stops at the
// first failing write(2).
func (q *Queue) Write(bufs [][]byte, offset int) (int, error) {
	if offset < headroom {
		return 0, ErrNoHeadroom
	}
	if q.offload {
		return q.writeCoalesced(bufs, offset)
	}
	for i, b := range bufs {
		frame := b[offset:]
		var err error
		if q.oversized(frame) {
			err = q.writeSegments(frame)
		} else {
			err = q.write(frame)
		}
		if err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

// oversized reports whether frame's IP packet is longer than the MTU.
func (q *Queue) oversized(frame []byte) bool {
	limit := q.mtu + ethHeaderLen
	if len(frame) >= ethHeaderLen && binary.BigEndian.Uint16(frame[12:14]) == unix.ETH_P_8021Q {
		limit += vlanTagLen
	}
	return len(frame) > limit
}

func (q *Queue) writeCoalesced(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		pkt := b[offset-headroom:]
		frame := pkt[headroom:]
		if q.oversized(frame) {
			// What is pending goes first, so that the super-frame
			// overtakes nothing of its flow.
			if err := q.flush(); err != nil {
				return i, err
			}
			if err := q.writeSuperFrame(pkt); err != nil {
				return i, err
			}
			continue
		}
		if q.gro.Full() {
			if err := q.flush(); err != nil {
				return i, err
			}
		}
		// GRO takes every TCP frame whose flow has something pending,
		// so a frame it refuses overtakes no segment of its own flow.
		if q.gro.Add(frame, false) {
			continue
		}
		clear(pkt[:headroom]) // GSO_NONE, no checksum to do
		if err := q.write(pkt); err != nil {
			return i, err
		}
	}
	if err := q.flush(); err != nil {
		return len(bufs), err
	}
	return len(bufs), nil
}

// writeSuperFrame writes the oversize frame in pkt[headroom:] as one
// super-frame for the kernel to cut to the MTU.
func (q *Queue) writeSuperFrame(pkt []byte) error {
	n, err := offload.EncodeTCPSuperFrame(pkt, q.mtu)
	if err != nil {
		q.oversize.Add(1)
		return nil
	}
	return q.write(pkt[:n])
}

// writeSegments cuts the oversize frame into segments that fit the MTU and
// writes them one by one.
func (q *Queue) writeSegments(frame []byte) error {
	n, err := offload.SegmentTCP(frame, q.mtu, q.segs, q.segSizes, 0)
	if err != nil {
		q.oversize.Add(1)
		return nil
	}
	for i := range n {
		if err := q.write(q.segs[i][:q.segSizes[i]]); err != nil {
			return err
		}
	}
	return nil
}

// flush writes the pending super-frames.
func (q *Queue) flush() error {
	defer q.gro.Reset()
	for _, sf := range q.gro.Frames() {
		if err := q.write(sf); err != nil {
			return err
		}
	}
	return nil
}

func (q *Queue) write(pkt []byte) error {
	return q.fd.Write("write", func(fd int) error {
		_, err := unix.Write(fd, pkt)
		return err
	})
}
