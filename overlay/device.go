package overlay

import (
	"net/netip"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay/offload"
	"github.com/vxland/vxland/overlay/poller"
)

// MaxFrameSize bounds the frames the data plane handles: the largest inner
// frame a VXLAN datagram can carry over IPv4 (65535 − 20 − 8 − 8) rounded up.
// A buffer that a datagram is read into whole is this large because a
// kernel VXLAN peer on a virtual underlay (veth, virtio) can send one
// unsegmented datagram of up to 64 KB: the tunnel's segmentation offload
// is passed on instead of done.
const MaxFrameSize = 65536

// Headroom is the room every frame buffer of the data plane has in front
// of its frame, and the offset at which devices read and write frames.
//
// A device may write a header of its own into it: the TAP driver puts its
// 10-byte virtio-net header there, so that a frame and its header leave in
// one write without a copy. The core writes the 8-byte VXLAN header into
// its last encap.HeaderLen bytes, so that frame and header form the
// datagram to send, and a socket reads a datagram Headroom-HeaderLen bytes
// in, so that its frame lands at Headroom, where the device writes it from.
const Headroom = max(offload.VirtioNetHdrLen, encap.HeaderLen)

// datagramOffset is where a datagram (VXLAN header and frame) starts in a
// frame buffer.
const datagramOffset = Headroom - encap.HeaderLen

// FrameDevice is the Ethernet side of the overlay: a TAP device, or an
// in-memory fake in tests (package overlaytest).
//
// It is batch-shaped so that a device able to move several frames per system
// call can do so; a device that cannot returns one frame per call and a
// BatchSize of 1.
type FrameDevice interface {
	// Read reads up to len(bufs) frames. Frame i is written to
	// bufs[i][offset:] and its length stored in sizes[i]. The offset leaves
	// headroom in front of each frame, so that the VXLAN header can be
	// written in place. Read blocks until at least one frame is read.
	//
	// A device that bounds the frames it writes into bufs (FrameSizer)
	// may replace bufs[i] with a view of its own memory for a longer
	// frame, valid until the next Read, as the batch's last frame; the
	// caller puts its own buffer back before it reads again.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write writes bufs[i][offset:] as one frame each and returns how many
	// were written.
	Write(bufs [][]byte, offset int) (n int, err error)

	// BatchSize is the largest number of frames Read returns at once.
	BatchSize() int

	// Close releases the device and unblocks pending reads, which
	// then return net.ErrClosed, as every call after Close does.
	Close() error
}

// PacketConn is the underlay side of the overlay: a UDP socket, or an
// in-memory fake in tests. Like FrameDevice it is batch-shaped.
type PacketConn interface {
	// Read reads up to len(bufs) datagrams. Datagram i is
	// bufs[i][offset:offset+sizes[i]], its source srcs[i]; the offset
	// leaves headroom in front of each datagram. Read blocks until at
	// least one datagram is read.
	//
	// An implementation may replace bufs[i] with a view of its own memory,
	// valid until the next Read, to save a copy. The headroom of such a
	// view may overlap the end of datagram i-1: a caller that writes into
	// the headroom of datagram i must be done with datagram i-1.
	Read(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (n int, err error)

	// Send sends each of bufs as one datagram to dst.
	Send(bufs [][]byte, dst netip.AddrPort) error

	// BatchSize is the largest number of datagrams Read returns at once.
	BatchSize() int

	// Close releases the socket and unblocks pending reads, which then
	// return net.ErrClosed, as every call after Close does.
	Close() error
}

// FrameSizer is a FrameDevice that writes no frame longer than FrameLen
// bytes into its caller's buffers (a TAP with offloads cuts super-frames
// into segments of the MTU), and hands out a longer one as a view (see
// Read): its caller's buffers need only FrameLen bytes after the offset.
type FrameSizer interface {
	FrameLen() int
}

// ViewReader is a PacketConn whose Read may hand out every datagram as a
// view of its own memory (a coalesced GRO read cut into datagrams): while
// ReadsViews reports true, the caller's buffers need no memory of their
// own, only the slots for the views.
type ViewReader interface {
	ReadsViews() bool
}

// FlowSender is a PacketConn that can send a flow from a source port of
// its own, chosen by the flow's hash (RFC 7348 §5).
type FlowSender interface {
	SendFlow(bufs [][]byte, dst netip.AddrPort, flow uint32) error
}

// PolledDevice is a FrameDevice that one thread can serve together with
// a PolledConn, waiting for both at once (poller.Set). Run serves the
// queues whose device and socket are both polled that way: one thread per
// queue for both directions.
type PolledDevice interface {
	FrameDevice
	// TryRead is Read that returns poller.ErrWouldBlock instead of
	// waiting.
	TryRead(bufs [][]byte, sizes []int, offset int) (n int, err error)
	// FD is the descriptor to wait on.
	FD() *poller.FD
}

// PolledConn is a PacketConn that one thread can serve together with a
// PolledDevice.
type PolledConn interface {
	PacketConn
	// TryRead is Read that returns poller.ErrWouldBlock instead of
	// waiting.
	TryRead(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (n int, err error)
	// FD is the descriptor to wait on.
	FD() *poller.FD
}

// DropReporter is a device or socket that drops packets on its own (a
// TAP super-frame that cannot be cut to the MTU, say) and counts them by
// reason. The data plane's statistics add its counts to their drops.
type DropReporter interface {
	// ReportDrops calls add once for each reason with its count so far.
	ReportDrops(add func(reason string, n uint64))
}
