//go:build linux

package overlay

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/overlay/poller"

	"github.com/vxland/vxland/overlay/offload"
)

// OffloadTAP is a TAP device opened with IFF_VNET_HDR and TCP (and, where
// the kernel has it, UDP) segmentation offload: the kernel hands it
// super-frames of up to 64 KB, which Read cuts into MTU-sized frames in one
// batch, and Write coalesces the TCP segments and UDP datagrams of a batch
// back into super-frames, so that a whole burst costs one system call and
// one pass through the receiving stack.
//
// songgao/water cannot set IFF_VNET_HDR, hence this opener of our own.
type OffloadTAP struct {
	fd   *poller.FD
	name string
	mtu  int

	readBuf []byte
	gro     *offload.GRO
	dropped atomic.Uint64
}

var _ FrameDevice = (*OffloadTAP)(nil)

// tapHeadroom is the headroom Write needs in front of each frame for the
// virtio header. Callers give at least this much as offset.
const tapHeadroom = offload.VirtioNetHdrLen

// OpenOffloadTAP creates the TAP device name with IFF_VNET_HDR and asks
// for checksum and TCP segmentation offload. mtu is the MTU the device will
// get: Read cuts super-frames to it. When the kernel refuses the offloads,
// it returns an error wrapping ErrNoOffload and the caller falls back to a
// plain TAP.
func OpenOffloadTAP(name string, mtu int) (*OffloadTAP, error) {
	return openOffloadTAP(name, mtu, false)
}

// OpenOffloadTAPQueues is OpenOffloadTAP for a multi-queue TAP
// (IFF_MULTI_QUEUE) with n queues, each a device of its own to read and
// write. The kernel spreads the flows it sends over the queues by their
// hash and keeps each flow on the queue its frames are written to. The
// device goes away when every queue is closed.
func OpenOffloadTAPQueues(name string, mtu, n int) ([]*OffloadTAP, error) {
	if n <= 1 {
		t, err := OpenOffloadTAP(name, mtu)
		if err != nil {
			return nil, err
		}
		return []*OffloadTAP{t}, nil
	}
	qs := make([]*OffloadTAP, 0, n)
	for range n {
		t, err := openOffloadTAP(name, mtu, true)
		if err != nil {
			for _, q := range qs {
				q.Close()
			}
			return nil, err
		}
		// Every queue attaches to the device the first one created.
		name = t.name
		qs = append(qs, t)
	}
	return qs, nil
}

func openOffloadTAP(name string, mtu int, multiQueue bool) (*OffloadTAP, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	fail := func(what string, err error) (*OffloadTAP, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("TAP %s: %s: %w", name, what, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fail("name", err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if multiQueue {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fail("TUNSETIFF", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, offload.VirtioNetHdrLen); err != nil {
		return fail("TUNSETVNETHDRSZ", fmt.Errorf("%w: %w", ErrNoOffload, err))
	}
	// UDP segmentation offload (Linux 6.2+) first: the kernel then hands
	// over UDP_SEGMENT bursts whole and takes USO super-frames, which
	// Write builds from runs of small datagrams. Older kernels refuse the
	// flags with EINVAL and get TCP offloads only.
	tcpOffloads := unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	uso := true
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tcpOffloads|unix.TUN_F_USO4|unix.TUN_F_USO6); err != nil {
		uso = false
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tcpOffloads); err != nil {
			return fail("TUNSETOFFLOAD", fmt.Errorf("%w: %w", ErrNoOffload, err))
		}
	}
	pfd, err := poller.NewFD(fd)
	if err != nil {
		return fail("eventfd", err)
	}
	t := &OffloadTAP{
		fd:      pfd,
		name:    ifr.Name(),
		mtu:     mtu,
		readBuf: make([]byte, offload.VirtioNetHdrLen+MaxFrameSize),
		gro:     offload.NewGRO(maxGSOSegments),
	}
	t.gro.UDP = uso
	return t, nil
}

// USO reports whether the kernel took UDP segmentation offload: Read then
// cuts UDP super-frames too, and Write merges runs of UDP datagrams.
func (t *OffloadTAP) USO() bool { return t.gro.UDP }

// Name returns the interface name.
func (t *OffloadTAP) Name() string { return t.name }

// BatchSize is how many frames one Read may return: a super-frame cut to
// the MTU, then whatever more is already queued.
func (t *OffloadTAP) BatchSize() int { return 2 * maxSegmentsPerRead }

// maxSegmentsPerRead is the room Read keeps for one packet read from the
// TAP: a 64 KB super-frame at an MSS of 410 bytes or more, which any MTU
// of 576 or more gives. A super-frame that would need more is dropped
// and counted (Dropped).
const maxSegmentsPerRead = 160

// Read reads a frame or super-frame, waiting for one, and returns it cut
// into frames that fit the MTU, each at bufs[i][offset:], with complete
// checksums. While there is room for another super-frame and the TAP has
// more queued, it reads on without waiting: small frames then leave in
// batches too, one system call each instead of two.
func (t *OffloadTAP) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return t.read(bufs, sizes, offset, true)
}

// TryRead is Read that returns poller.ErrWouldBlock instead of waiting.
func (t *OffloadTAP) TryRead(bufs [][]byte, sizes []int, offset int) (int, error) {
	return t.read(bufs, sizes, offset, false)
}

// FD returns the device's descriptor, for a poller.Set.
func (t *OffloadTAP) FD() *poller.FD { return t.fd }

func (t *OffloadTAP) read(bufs [][]byte, sizes []int, offset int, wait bool) (int, error) {
	total := 0
	for {
		n, err := t.readPacket(total == 0 && wait)
		if err != nil {
			if total > 0 {
				return total, nil // EAGAIN after some frames, or an error the next Read reports
			}
			return 0, err
		}
		total += t.segment(n, bufs[total:], sizes[total:], offset)
		if len(bufs)-total < maxSegmentsPerRead {
			return total, nil
		}
	}
}

// segment cuts the packet of n bytes in readBuf into bufs and returns how
// many frames it made; a packet that cannot be cut is dropped and counted.
func (t *OffloadTAP) segment(n int, bufs [][]byte, sizes []int, offset int) int {
	var h offload.VirtioNetHdr
	if err := h.Decode(t.readBuf[:n]); err != nil {
		t.dropped.Add(1)
		return 0
	}
	cnt, err := offload.SegmentGSO(h, t.readBuf[offload.VirtioNetHdrLen:n], bufs, sizes, offset)
	if err != nil {
		t.dropped.Add(1)
		return 0
	}
	return cnt
}

// Dropped returns how many packets read from the TAP could not be cut to
// the MTU (malformed, or needing more segments than a batch holds).
func (t *OffloadTAP) Dropped() uint64 { return t.dropped.Load() }

// Write writes the frames bufs[i][offset:], coalescing the TCP segments
// (and, with USO, the UDP datagrams) of one flow into super-frames. offset must leave room for the virtio header
// (tapHeadroom). Order within a flow is kept; frames of different flows
// may be reordered. The frames' checksums must be valid: a super-frame's
// checksum is recomputed by the kernel, which would hide a corrupt one.
func (t *OffloadTAP) Write(bufs [][]byte, offset int) (int, error) {
	if offset < tapHeadroom {
		return 0, fmt.Errorf("TAP %s: write offset %d leaves no room for the virtio header", t.name, offset)
	}
	for i, b := range bufs {
		frame := b[offset:]
		if t.gro.Full() {
			if err := t.flush(); err != nil {
				return i, err
			}
		}
		// GRO takes every TCP frame whose flow has something pending,
		// so a frame it refuses overtakes no segment of its own flow.
		if t.gro.Add(frame, false) {
			continue
		}
		pkt := b[offset-tapHeadroom:]
		clear(pkt[:tapHeadroom]) // GSO_NONE, no checksum to do
		if err := t.write(pkt); err != nil {
			return i, err
		}
	}
	if err := t.flush(); err != nil {
		return len(bufs), err
	}
	return len(bufs), nil
}

func (t *OffloadTAP) flush() error {
	defer t.gro.Reset()
	for _, sf := range t.gro.Frames() {
		if err := t.write(sf); err != nil {
			return err
		}
	}
	return nil
}

// readPacket reads one packet into readBuf, waiting for one if wait is
// set, else returning poller.ErrWouldBlock when none is queued.
func (t *OffloadTAP) readPacket(wait bool) (n int, err error) {
	op := func(fd int) (err error) {
		n, err = unix.Read(fd, t.readBuf)
		return err
	}
	if wait {
		err = t.fd.Read("read", op)
	} else {
		err = t.fd.TryRead("read", op)
	}
	return n, err
}

func (t *OffloadTAP) write(pkt []byte) error {
	return t.fd.Write("write", func(fd int) error {
		_, err := unix.Write(fd, pkt)
		return err
	})
}

// Close wakes a pending Read and closes the device, which removes it.
func (t *OffloadTAP) Close() error { return t.fd.Close() }
