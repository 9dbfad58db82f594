// Package tap is the data plane's Linux TAP device: one driver, with or
// without offloads, with one queue or several.
//
// Every queue is a non-blocking descriptor served by package poller, so
// that one thread can wait for a queue and an underlay socket together.
//
// With Offload the device is opened with a virtio-net header
// (IFF_VNET_HDR) and checksum and segmentation offload (TUNSETOFFLOAD): the
// kernel hands over super-frames of up to 64 KB, which Read cuts into
// their segments, and Write coalesces the TCP segments (and, with USO, the UDP
// datagrams) of a batch into super-frames, so that a burst costs one
// system call and one pass through the receiving stack. songgao/water, the
// TAP library this replaces, can set neither IFF_VNET_HDR nor hand over a
// descriptor to poll, hence an opener of our own for both modes.
//
// Write owns the oversize frames too: an inner TCP frame longer than the
// MTU (a kernel VXLAN peer on a veth sends whole 64 KB tunnel-GSO packets)
// goes to an offload device as one super-frame for the kernel to cut, and
// to a plain one cut into MTU-sized segments. The layer that owns the
// device owns its offloads and their fallbacks.
package tap

import (
	"errors"
	"log/slog"

	"github.com/vxland/vxland/encap"

	"github.com/vxland/vxland/overlay/offload"
)

// Options says how to open a TAP device.
type Options struct {
	// Queues is the number of queues, each a descriptor of its own
	// (IFF_MULTI_QUEUE when above 1; 0 counts as 1). The kernel spreads
	// the flows it sends over the queues by their hash.
	Queues int
	// Offload asks for the virtio-net header with checksum and TCP
	// segmentation offload, and UDP segmentation offload where the
	// kernel has it (Linux 6.2+). When the kernel refuses, Open returns
	// an error wrapping ErrNoOffload and the caller may open the device
	// without.
	Offload bool
	// MTU is the overlay MTU: Read hands over whole a super-frame whose
	// segments exceed it, and Write cuts or marks longer TCP frames for
	// it. At least 68 (IPv4's minimum). The link's MTU is the caller's to
	// set (package hostnet): the overlay MTU, or larger, so that the
	// bridge passes frames too big for the overlay to the TAP, whose
	// reader answers them with ICMP "too big".
	MTU int
	// Persist keeps the device when its queues are closed (TUNSETPERSIST),
	// so that a restarted daemon adopts it with its MAC, MTU, addresses,
	// routes and bridge port; without it, closing the last queue removes
	// the device, also one adopted from a persistent run.
	Persist bool
	// Logger receives the device's lifecycle events (recreated, attached
	// again); nil discards them.
	Logger *slog.Logger
}

// ErrNoOffload is returned (wrapped) by Open when the kernel refuses the
// TAP offloads.
var ErrNoOffload = errors.New("tap: the kernel refused the TAP offloads")

// ErrNoHeadroom is returned by Write when offset is below headroom.
var ErrNoHeadroom = errors.New("tap: write offset leaves no headroom for the virtio-net header")

// headroom is the room Write needs in front of each frame (its offset),
// for the virtio-net header of an offload device. A plain device asks for
// it too, so that callers need not know the mode.
const headroom = offload.VirtioNetHdrLen

// The reasons a Queue counts its drops under (ReportDrops).
const (
	// DropMalformed: a packet read from the TAP whose virtio-net header
	// cannot be decoded, or a super-frame that cannot be cut to the MTU
	// within one batch.
	DropMalformed = "tap_malformed"
	// DropOversize: a frame given to Write that is longer than the MTU
	// allows and cannot be sent as TCP segments (not TCP, malformed).
	DropOversize = "oversize"
)

const (
	ethHeaderLen = encap.EthernetHeaderLen
	vlanTagLen   = 4 // an IEEE 802.1Q tag
	minMTU       = 68
	maxMTU       = 0xffff
)
