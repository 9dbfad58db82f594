package overlay

import "sync/atomic"

// DropReason says why the data plane dropped a packet.
type DropReason int

// Drop reasons. Receive-side reasons come first, in the order the checks run.
const (
	// DropShort: datagram shorter than the VXLAN header.
	DropShort DropReason = iota
	// DropNoIFlag: VXLAN I flag clear.
	DropNoIFlag
	// DropReservedBits: a reserved VXLAN header bit set.
	DropReservedBits
	// DropVNI: the VNI is not ours.
	DropVNI
	// DropUnknownVTEP: the outer source is not a VTEP we know. The kernel's
	// vxlan device accepts anyone; we do not.
	DropUnknownVTEP
	// DropInnerShort: the inner frame is shorter than an Ethernet header.
	DropInnerShort
	// DropOwnMAC: the inner source MAC is our TAP's own: a loop or a spoof.
	DropOwnMAC
	// DropMulticastSource: the inner source MAC is a group address.
	DropMulticastSource
	// DropZeroSource: the inner source MAC is all-zero.
	DropZeroSource
	// DropInnerChecksum: the inner TCP/UDP checksum is neither valid nor a
	// partial checksum we could complete.
	DropInnerChecksum
	// DropOversize: the inner frame exceeds the TAP MTU and could not be
	// segmented (not TCP, or malformed).
	DropOversize
	// DropTapWrite: the TAP device refused the frame.
	DropTapWrite
	// DropTxShort: a frame read from the TAP is shorter than an Ethernet header.
	DropTxShort
	// DropNoDestination: no VTEP to send a frame to (unknown destination
	// and an empty flood list).
	DropNoDestination
	// DropSendError: the underlay socket refused the datagram.
	DropSendError

	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropShort:           "short",
	DropNoIFlag:         "no_i_flag",
	DropReservedBits:    "reserved_bits",
	DropVNI:             "vni_mismatch",
	DropUnknownVTEP:     "unknown_vtep",
	DropInnerShort:      "inner_short",
	DropOwnMAC:          "own_mac_source",
	DropMulticastSource: "multicast_source",
	DropZeroSource:      "zero_source",
	DropInnerChecksum:   "inner_checksum",
	DropOversize:        "oversize",
	DropTapWrite:        "tap_write",
	DropTxShort:         "tx_short",
	DropNoDestination:   "no_destination",
	DropSendError:       "send_error",
}

func (r DropReason) String() string {
	if r < 0 || r >= numDropReasons {
		return "unknown"
	}
	return dropReasonNames[r]
}

// DropReasons lists every drop reason, in order.
func DropReasons() []DropReason {
	out := make([]DropReason, numDropReasons)
	for i := range out {
		out[i] = DropReason(i)
	}
	return out
}

// Counters are the data plane's statistics. They are updated with atomic
// adds on the packet path and read with Snapshot.
type Counters struct {
	// RxPackets and RxBytes count inner frames written to the TAP.
	RxPackets, RxBytes atomic.Uint64
	// TxPackets and TxBytes count VXLAN datagrams sent and their inner
	// frame bytes: a flooded frame counts once per VTEP it is sent to.
	TxPackets, TxBytes atomic.Uint64
	// TxFlooded counts frames sent to the flood list.
	TxFlooded atomic.Uint64
	// RxChecksumCompleted counts inner frames whose partial checksum was
	// completed; RxSegmented counts oversized inner frames cut to the MTU.
	RxChecksumCompleted, RxSegmented atomic.Uint64
	// ARPAnswered counts ARP requests answered from the neighbour table;
	// ARPFlooded counts broadcast ARP requests sent to the flood list.
	ARPAnswered, ARPFlooded atomic.Uint64

	drops [numDropReasons]atomic.Uint64
	// queues count what each queue moved: how the kernel spread the
	// flows over them.
	queues []queueCounters
}

type queueCounters struct {
	rx, tx atomic.Uint64
}

// queue returns the counters of queue i, set up by NewQueues.
func (c *Counters) queue(i int) *queueCounters {
	if i >= len(c.queues) {
		c.queues = append(c.queues, make([]queueCounters, i+1-len(c.queues))...)
	}
	return &c.queues[i]
}

// Drop counts one packet dropped for reason r.
func (c *Counters) Drop(r DropReason) { c.drops[r].Add(1) }

// Drops counts n packets dropped for reason r.
func (c *Counters) Drops(r DropReason, n int) {
	if n > 0 {
		c.drops[r].Add(uint64(n))
	}
}

// Dropped returns the number of packets dropped for reason r.
func (c *Counters) Dropped(r DropReason) uint64 { return c.drops[r].Load() }

// Stats is a point-in-time copy of Counters, shaped for JSON.
type Stats struct {
	RxPackets           uint64            `json:"rx_packets"`
	RxBytes             uint64            `json:"rx_bytes"`
	TxPackets           uint64            `json:"tx_packets"`
	TxBytes             uint64            `json:"tx_bytes"`
	TxFlooded           uint64            `json:"tx_flooded"`
	RxChecksumCompleted uint64            `json:"rx_checksum_completed"`
	RxSegmented         uint64            `json:"rx_segmented"`
	ARPAnswered         uint64            `json:"arp_answered"`
	ARPFlooded          uint64            `json:"arp_flooded"`
	Drops               map[string]uint64 `json:"drops"`
	// Queues has one entry per queue (--queues), in order.
	Queues []QueueStats `json:"queues"`
}

// QueueStats counts the frames one queue wrote to the TAP (rx) and the
// datagrams it sent (tx).
type QueueStats struct {
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
}

// Snapshot copies the counters. Every drop reason is present, zero or not,
// so that readers can tell "none" from "not counted".
func (c *Counters) Snapshot() Stats {
	s := Stats{
		RxPackets:           c.RxPackets.Load(),
		RxBytes:             c.RxBytes.Load(),
		TxPackets:           c.TxPackets.Load(),
		TxBytes:             c.TxBytes.Load(),
		TxFlooded:           c.TxFlooded.Load(),
		RxChecksumCompleted: c.RxChecksumCompleted.Load(),
		RxSegmented:         c.RxSegmented.Load(),
		ARPAnswered:         c.ARPAnswered.Load(),
		ARPFlooded:          c.ARPFlooded.Load(),
		Drops:               make(map[string]uint64, numDropReasons),
	}
	for r := range numDropReasons {
		s.Drops[r.String()] = c.drops[r].Load()
	}
	s.Queues = make([]QueueStats, len(c.queues))
	for i := range c.queues {
		s.Queues[i] = QueueStats{RxPackets: c.queues[i].rx.Load(), TxPackets: c.queues[i].tx.Load()}
	}
	return s
}
