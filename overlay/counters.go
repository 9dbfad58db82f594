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
	// DropTapWrite: the TAP device refused the frame.
	DropTapWrite
	// DropTxShort: a frame read from the TAP is shorter than an Ethernet header.
	DropTxShort
	// DropNoDestination: no VTEP to send a frame to (unknown destination
	// and an empty flood list).
	DropNoDestination
	// DropSendError: the underlay socket refused the datagram.
	DropSendError
	// DropFloodRateSource: a frame to flood from a source MAC that used
	// up its flood rate (Config.FloodPerSource).
	DropFloodRateSource
	// DropFloodRateTotal: a frame to flood beyond the queues' overall
	// flood rate (Config.FloodTotal).
	DropFloodRateTotal
	// DropTooBig: a frame read from the TAP holds an IP packet larger
	// than the MTU. vxland never fragments: an IPv4 packet with DF and an
	// IPv6 packet are answered with ICMP "too big" (ICMPTooBigSent).
	DropTooBig
	// DropSendMsgSize: the underlay refused a datagram as too large for
	// its path (EMSGSIZE): a path MTU below the underlay interface's, or
	// an MTU forced above what the underlay carries.
	DropSendMsgSize

	// The reasons below are not drops: the frame is forwarded, only its
	// source MAC is not recorded. They count the frames (one per source
	// and batch) whose new MAC a limit kept out of a table.

	// DropFDBFull: a received frame's source MAC was not learned: its VNI
	// has as many learned entries as fdb.Table.LimitLearned allows.
	DropFDBFull
	// DropLocalMACFull: a local container's MAC was not recorded for the
	// control plane: the local table holds fdb.LocalLimits.Max.
	DropLocalMACFull
	// DropLocalMACRate: a local container's MAC was not recorded for the
	// control plane: new local MACs came faster than
	// fdb.LocalLimits.NewMACs allows.
	DropLocalMACRate

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
	DropTapWrite:        "tap_write",
	DropTxShort:         "tx_short",
	DropNoDestination:   "no_destination",
	DropSendError:       "send_error",
	DropFloodRateSource: "flood_rate_source",
	DropFloodRateTotal:  "flood_rate_total",
	DropFDBFull:         "fdb_full",
	DropLocalMACFull:    "local_mac_full",
	DropLocalMACRate:    "local_mac_rate",
	DropTooBig:          "too_big",
	DropSendMsgSize:     "send_msgsize",
}

func (r DropReason) String() string {
	if r < 0 || r >= numDropReasons {
		return "unknown"
	}
	return dropReasonNames[r]
}

// queueCounters are the counters of one queue, written only by the
// threads that serve it, so that no two queues bounce a cache line.
type queueCounters struct {
	// rxPackets and rxBytes count inner frames written to the device.
	rxPackets, rxBytes atomic.Uint64
	// txPackets and txBytes count VXLAN datagrams sent and their inner
	// frame bytes: a flooded frame counts once per VTEP it is sent to.
	txPackets, txBytes atomic.Uint64
	// txFlooded counts frames sent to the flood list, txFloodCopies the
	// copies of them handed to the socket, one per VTEP of the list.
	txFlooded, txFloodCopies atomic.Uint64
	// rxChecksumCompleted counts inner frames whose partial checksum was
	// completed; rxOversize counts inner frames larger than the MTU,
	// handed to the device to segment.
	rxChecksumCompleted, rxOversize atomic.Uint64
	// arpAnswered counts ARP requests answered from the neighbour table;
	// arpFlooded counts broadcast ARP requests sent to the flood list.
	arpAnswered, arpFlooded atomic.Uint64
	// ndAnswered and ndFlooded count the same for IPv6 neighbour
	// solicitations: answered, and multicast ones sent to the flood list.
	ndAnswered, ndFlooded atomic.Uint64
	// tooBigSent counts ICMP "too big" answers written to the device,
	// tooBigLimited those the rate limit held back.
	tooBigSent, tooBigLimited atomic.Uint64
	drops                     [numDropReasons]atomic.Uint64
	// Pads the entry to keep the next queue's counters off its last
	// cache line.
	_ [64]byte
}

func (c *queueCounters) drop(r DropReason) { c.drops[r].Add(1) }

func (c *queueCounters) dropN(r DropReason, n int) {
	if n > 0 {
		c.drops[r].Add(uint64(n))
	}
}

// Stats is a point-in-time sum of the data plane's counters, shaped for
// JSON.
type Stats struct {
	RxPackets           uint64 `json:"rx_packets"`
	RxBytes             uint64 `json:"rx_bytes"`
	TxPackets           uint64 `json:"tx_packets"`
	TxBytes             uint64 `json:"tx_bytes"`
	TxFlooded           uint64 `json:"tx_flooded"`
	TxFloodCopies       uint64 `json:"tx_flood_copies"`
	RxChecksumCompleted uint64 `json:"rx_checksum_completed"`
	// RxSegmented counts inner frames larger than the MTU (a kernel
	// peer's unsegmented burst) handed to the device to segment.
	RxSegmented uint64 `json:"rx_segmented"`
	ARPAnswered uint64 `json:"arp_answered"`
	ARPFlooded  uint64 `json:"arp_flooded"`
	// NDAnswered counts IPv6 neighbour solicitations answered from the
	// neighbour table, NDFlooded multicast ones sent to the flood list.
	NDAnswered uint64 `json:"nd_answered"`
	NDFlooded  uint64 `json:"nd_flooded"`
	// ICMPTooBigSent counts the ICMP "fragmentation needed" and ICMPv6
	// "packet too big" answers to packets larger than the MTU;
	// ICMPTooBigLimited those not sent because of the rate limit.
	ICMPTooBigSent    uint64 `json:"icmp_too_big_sent"`
	ICMPTooBigLimited uint64 `json:"icmp_too_big_rate_limited"`
	// Drops has every reason of the core, zero or not, so that readers
	// can tell "none" from "not counted", and the reasons of the devices
	// and sockets that report their own drops (DropReporter).
	Drops map[string]uint64 `json:"drops"`
	// Queues has one entry per queue (--queues), in order.
	Queues []QueueStats `json:"queues"`
}

// QueueStats counts the frames one queue wrote to the TAP (rx) and the
// datagrams it sent (tx).
type QueueStats struct {
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
}

// Stats sums the counters of every queue, with the drops that the queues'
// devices and sockets report.
func (o *Overlay) Stats() Stats {
	s := Stats{Drops: make(map[string]uint64, numDropReasons), Queues: make([]QueueStats, len(o.counters))}
	for r := range numDropReasons {
		s.Drops[r.String()] = 0
	}
	add := func(reason string, n uint64) { s.Drops[reason] += n }
	for i := range o.counters {
		c := &o.counters[i]
		s.Queues[i] = QueueStats{RxPackets: c.rxPackets.Load(), TxPackets: c.txPackets.Load()}
		s.RxPackets += s.Queues[i].RxPackets
		s.RxBytes += c.rxBytes.Load()
		s.TxPackets += s.Queues[i].TxPackets
		s.TxBytes += c.txBytes.Load()
		s.TxFlooded += c.txFlooded.Load()
		s.TxFloodCopies += c.txFloodCopies.Load()
		s.RxChecksumCompleted += c.rxChecksumCompleted.Load()
		s.RxSegmented += c.rxOversize.Load()
		s.ARPAnswered += c.arpAnswered.Load()
		s.ARPFlooded += c.arpFlooded.Load()
		s.NDAnswered += c.ndAnswered.Load()
		s.NDFlooded += c.ndFlooded.Load()
		s.ICMPTooBigSent += c.tooBigSent.Load()
		s.ICMPTooBigLimited += c.tooBigLimited.Load()
		for r := range numDropReasons {
			add(r.String(), c.drops[r].Load())
		}
		for _, x := range []any{o.queues[i].Device, o.queues[i].Conn} {
			if dr, ok := x.(DropReporter); ok {
				dr.ReportDrops(add)
			}
		}
	}
	return s
}
