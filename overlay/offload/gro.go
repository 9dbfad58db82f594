package offload

import (
	"bytes"
	"encoding/binary"
)

// GRO merges consecutive TCP segments of the same flow, given as Ethernet
// frames, into super-frames for a TAP opened with IFF_VNET_HDR; with UDP set,
// it merges consecutive UDP datagrams of a flow too.
//
// # Why
//
// Each frame written to a TAP runs the kernel's receive stack once; written
// one by one, MTU-sized segments cap a flow at well under a gigabit. A
// super-frame with a virtio-net header of type TCPv4/TCPv6 runs it once for
// up to 64 KB, which is what a NIC's GRO/LRO gives the kernel on a real wire.
//
// # Rules
//
// The rules are those of Linux's inet_gro_receive and tcp_gro_receive, so a
// super-frame is one the kernel could have built itself and cuts back into
// the original segments (SegmentTCP shows how) if it forwards it:
//   - same Ethernet header, IP addresses, ports and IP version; IPv4 without
//     options, not fragmented, with equal TOS, TTL and DF, and without DF
//     consecutive IDs; IPv6 with TCP as next header (no extension headers)
//     and equal traffic class, flow label and hop limit; no 802.1Q tag;
//   - same acknowledgment number, TCP header length and option bytes (so
//     equal timestamps), and ECE;
//   - sequence number = previous sequence number + previous payload length;
//   - flags ACK, optionally with PSH, ECE, and CWR on the first segment only;
//     PSH ends a super-frame, and so does a segment shorter than the first,
//     whose payload length is the super-frame's gso_size;
//   - at most groMaxSegments segments and 65535 bytes of IP packet.
//
// UDP datagrams (when UDP is set) follow the IP rules above and those of
// Linux's UDP GRO (udp_gro_receive_segment): same ports, a UDP length that
// matches the IP length, a payload of at most the first datagram's length
// (gso_size), and a shorter one ends the super-frame. The super-frame is a
// GSO_UDP_L4 (USO) frame that the kernel cuts back into the datagrams, and
// a receiving socket without UDP_GRO receives them one by one, unchanged.
//
// # Ordering
//
// Frames returns the super-frames in the order they were started, so the
// segments of a flow stay in order among themselves. A frame that cannot be
// appended to its flow's latest super-frame (a sequence gap, a different
// ACK, a FIN, a pure ACK, ...) closes it and is stored as a new entry,
// coalescible or not: Add returns false only for frames whose flow has no
// pending entry (frames that are not TCP, or that are not coalescible and
// whose flow has nothing pending), so a caller that writes the frames Add
// refuses at once and Frames at the end of the batch reorders no flow.
// The one exception is a full table, see Full.
//
// # Checksums
//
// Add does not verify checksums: the kernel trusts a super-frame's
// VirtioNetHdrFNeedsCsum and computes a fresh checksum over the merged data,
// which would hide a corrupted segment. Callers run FixChecksum first and
// drop ChecksumBad frames.
//
// A GRO is not safe for concurrent use. All memory is allocated by NewGRO.
type GRO struct {
	// UDP enables merging UDP datagrams into GSO_UDP_L4 super-frames,
	// which a TAP accepts on Linux 6.2 and later (the kernels whose
	// TUNSETOFFLOAD takes TUN_F_USO4).
	UDP bool

	entries []groEntry
	n       int // entries in use, in the order they were started
	frames  [][]byte
}

const (
	// groMaxSegments bounds the segments of a super-frame. Linux's GRO
	// stops at the same number in practice (64 KB of 1 KB+ segments), and
	// small segments are rare enough that a bound costs nothing.
	groMaxSegments = 64
	// groMaxIPLen is the largest IP packet of a super-frame: the IPv4 total
	// length field's limit, which Linux GRO also applies to IPv6.
	groMaxIPLen = 0xffff
	// groBufLen holds any untagged frame parseIP accepts: an IPv6 packet
	// has up to 40+65535 bytes. Coalescing stops at groMaxIPLen, but a
	// frame Add only stores to keep its flow in order may be larger.
	groBufLen = VirtioNetHdrLen + ethHeaderLen + ipv6HeaderLen + 0xffff
)

const (
	tcpFlagACK = 0x10
	tcpFlagECE = 0x40
	ipv4FlagDF = 0x40 // in byte 6 of the IPv4 header
)

// groFlow identifies a flow: the IP version, the transport protocol, the
// addresses and the ports.
type groFlow struct {
	addrs [32]byte // source then destination; IPv4 uses the first 8 bytes
	ports [4]byte  // source then destination port
	v6    bool
	udp   bool
}

// groEntry is one pending frame or super-frame. buf holds its virtio-net
// header (written by Frames) and then the frame.
type groEntry struct {
	buf  []byte
	flow groFlow

	frameLen     int    // bytes of the frame in buf[VirtioNetHdrLen:]
	l4           int    // offset of the TCP or UDP header in the frame
	tcpHeaderLen int    // bytes of the TCP header, or the UDP header's 8
	gsoSize      int    // payload bytes of the first segment
	segments     int    // segments merged, at least 1
	nextSeq      uint32 // sequence number the next segment must carry
	v6           bool
	udp          bool
	partial      bool // first segment's checksum field held the partial sum
	closed       bool // nothing may be appended
}

// groSegment is what Add learns about a frame.
type groSegment struct {
	p            ipPacket
	flow         groFlow
	tcpHeaderLen int // or the UDP header's 8 bytes
	payload      int // TCP or UDP payload bytes
	seq          uint32
	flags        uint8
	coalescible  bool
}

// NewGRO returns a GRO that holds up to maxFlows pending entries (values
// below 1 count as 1), each with a buffer for a 64 KB super-frame, about
// 64 KB of memory per entry. Size it to the receive batch: each Add starts
// at most one entry, so with maxFlows at least the number of frames offered
// per batch the table is never full.
func NewGRO(maxFlows int) *GRO {
	maxFlows = max(maxFlows, 1)
	g := &GRO{
		entries: make([]groEntry, maxFlows),
		frames:  make([][]byte, maxFlows),
	}
	for i := range g.entries {
		g.entries[i].buf = make([]byte, groBufLen)
	}
	return g
}

// Full reports whether every entry is in use. A caller that offers more
// frames per batch than NewGRO's maxFlows checks it before each Add and, if
// it is full, writes Frames and calls Reset first; otherwise a frame of a
// pending flow that needs a new entry would be refused and overtake its
// flow's earlier segments.
func (g *GRO) Full() bool { return g.n == len(g.entries) }

// Len returns the number of pending entries.
func (g *GRO) Len() int { return g.n }

// Add offers one Ethernet frame. Its TCP checksum is valid, or holds the
// partial pseudo-header sum that a sender using checksum offload leaves
// (partial true); the frame is copied and not kept.
//
// Add returns false when it did not take the frame: it is not TCP over IPv4
// or IPv6 on an untagged frame, or it cannot be coalesced (see GRO for the
// rules; for instance SYN, FIN, RST or URG, or no payload) and its flow has
// no pending entry, or the table is full. The caller then writes the frame
// itself, with a GSO_NONE header (VirtioNetHdrFNeedsCsum at the TCP or UDP
// checksum field if its checksum is partial).
//
// Frames are expected to be at most one overlay MTU long, as they come off
// the wire: the first segment's payload length becomes the gso_size. A
// larger frame (a tunnel-GSO packet that crossed a veth unsegmented) goes to
// a TAP whole, as a super-frame of its own (EncodeTCPSuperFrame), or cut
// with SegmentTCP.
func (g *GRO) Add(frame []byte, partial bool) bool {
	var s groSegment
	if !parseGROSegment(frame, &s) || s.flow.udp && !g.UDP {
		return false
	}
	latest := -1
	for i := g.n - 1; i >= 0; i-- {
		if g.entries[i].flow == s.flow {
			latest = i
			break
		}
	}
	if latest >= 0 && s.coalescible && g.entries[latest].canAppend(frame, &s) {
		g.entries[latest].append(frame, &s)
		return true
	}
	if latest < 0 && !s.coalescible {
		return false
	}
	if g.n == len(g.entries) {
		return false
	}
	g.entries[g.n].start(frame, &s, partial)
	g.n++
	return true
}

// Frames returns the pending entries, each a virtio-net header followed by
// an Ethernet frame, in the order they were started. An entry of one segment
// goes out as it came, with a GSO_NONE header (VirtioNetHdrFNeedsCsum at the
// TCP checksum if it was partial); one of several segments as a TCPv4/TCPv6
// super-frame whose TCP checksum field holds the pseudo-header sum for the
// kernel to finish.
//
// The slices are views into the GRO's buffers, valid until the next Add or
// Reset. Frames may be called more than once.
func (g *GRO) Frames() [][]byte {
	for i := range g.n {
		g.frames[i] = g.entries[i].finish()
	}
	return g.frames[:g.n]
}

// Reset empties the table for the next batch.
func (g *GRO) Reset() {
	clear(g.frames[:g.n])
	g.n = 0
}

// parseGROSegment reads the flow of a TCP or UDP frame and whether it may
// be coalesced. It returns false for frames without a flow.
func parseGROSegment(frame []byte, s *groSegment) bool {
	p, err := parseIP(frame)
	if err != nil || p.ip != ethHeaderLen {
		return false
	}
	switch p.protocol {
	case protocolTCP:
	case protocolUDP:
		return parseGRODatagram(frame, p, s)
	default:
		return false
	}
	tcp := frame[p.l4:p.end]
	if len(tcp) < tcpMinHeaderLen {
		return false
	}
	s.tcpHeaderLen = int(tcp[12]>>4) * 4
	if s.tcpHeaderLen < tcpMinHeaderLen || s.tcpHeaderLen > len(tcp) {
		return false
	}
	s.p = p
	copy(s.flow.addrs[:], frame[p.addrs:p.addrs+2*p.addrLen])
	copy(s.flow.ports[:], tcp[0:4])
	s.flow.v6 = p.v6
	s.payload = len(tcp) - s.tcpHeaderLen
	s.seq = binary.BigEndian.Uint32(tcp[4:8])
	s.flags = tcp[13]

	s.coalescible = s.payload > 0 &&
		s.flags&^(tcpFlagPSH|tcpFlagECE|tcpFlagCWR) == tcpFlagACK &&
		p.end-p.ip <= groMaxIPLen
	s.coalescible = s.coalescible && ipCoalescible(frame, p)
	return true
}

// parseGRODatagram is parseGROSegment for a UDP datagram.
func parseGRODatagram(frame []byte, p ipPacket, s *groSegment) bool {
	udp := frame[p.l4:p.end]
	if len(udp) < udpHeaderLen {
		return false
	}
	s.p = p
	copy(s.flow.addrs[:], frame[p.addrs:p.addrs+2*p.addrLen])
	copy(s.flow.ports[:], udp[0:4])
	s.flow.v6 = p.v6
	s.flow.udp = true
	s.tcpHeaderLen = udpHeaderLen
	s.payload = len(udp) - udpHeaderLen
	s.coalescible = s.payload > 0 &&
		int(binary.BigEndian.Uint16(udp[4:6])) == len(udp) &&
		p.end-p.ip <= groMaxIPLen &&
		ipCoalescible(frame, p)
	return true
}

// ipCoalescible reports whether the IP header allows coalescing: IPv4
// without options and, of the flags, only DF (parseIP refused MF and
// offsets; this refuses the reserved bit).
func ipCoalescible(frame []byte, p ipPacket) bool {
	if p.v6 {
		return true
	}
	return p.l4-p.ip == ipv4MinHeaderLen && frame[p.ip+6]&^ipv4FlagDF == 0
}

// canAppend reports whether segment s of frame continues e.
func (e *groEntry) canAppend(frame []byte, s *groSegment) bool {
	if e.closed || s.flags&tcpFlagCWR != 0 || s.payload > e.gsoSize ||
		e.segments >= groMaxSegments || e.frameLen-ethHeaderLen+s.payload > groMaxIPLen {
		return false
	}
	first := e.buf[VirtioNetHdrLen : VirtioNetHdrLen+e.frameLen]
	p := &s.p
	if s.tcpHeaderLen != e.tcpHeaderLen || p.l4 != e.l4 || !e.udp && s.seq != e.nextSeq {
		return false
	}
	// Ethernet header.
	if !bytes.Equal(frame[:ethHeaderLen], first[:ethHeaderLen]) {
		return false
	}
	ip, firstIP := frame[p.ip:p.l4], first[p.ip:p.l4]
	if p.v6 {
		// Version, traffic class, flow label; hop limit.
		if !bytes.Equal(ip[0:4], firstIP[0:4]) || ip[7] != firstIP[7] {
			return false
		}
	} else {
		// TOS, flags (DF), TTL.
		if ip[1] != firstIP[1] || ip[6] != firstIP[6] || ip[8] != firstIP[8] {
			return false
		}
		// Without DF the ID matters for fragmentation and the kernel's
		// segmentation numbers segments from the first ID, so IDs
		// must already run that way (RFC 6864 §4.1).
		if ip[6]&ipv4FlagDF == 0 &&
			binary.BigEndian.Uint16(ip[4:6]) != binary.BigEndian.Uint16(firstIP[4:6])+uint16(e.segments) {
			return false
		}
	}
	if e.udp {
		return true // the ports are the flow's
	}
	tcp, firstTCP := frame[p.l4:], first[p.l4:]
	// Acknowledgment number; ECE (PSH and CWR are judged above and in
	// parseGROSegment); option bytes.
	return bytes.Equal(tcp[8:12], firstTCP[8:12]) &&
		(tcp[13]^firstTCP[13])&tcpFlagECE == 0 &&
		bytes.Equal(tcp[tcpMinHeaderLen:s.tcpHeaderLen], firstTCP[tcpMinHeaderLen:s.tcpHeaderLen])
}

// start makes frame the first segment of e.
func (e *groEntry) start(frame []byte, s *groSegment, partial bool) {
	e.frameLen = copy(e.buf[VirtioNetHdrLen:], frame[:s.p.end])
	e.flow = s.flow
	e.l4 = s.p.l4
	e.tcpHeaderLen = s.tcpHeaderLen
	e.gsoSize = s.payload
	e.segments = 1
	e.nextSeq = s.seq + uint32(s.payload)
	e.v6 = s.p.v6
	e.udp = s.flow.udp
	e.partial = partial
	e.closed = !s.coalescible || !e.udp && s.flags&tcpFlagPSH != 0
}

// append adds the payload of segment s of frame to e.
func (e *groEntry) append(frame []byte, s *groSegment) {
	payload := frame[s.p.l4+s.tcpHeaderLen : s.p.end]
	copy(e.buf[VirtioNetHdrLen+e.frameLen:], payload)
	e.frameLen += len(payload)
	e.segments++
	e.nextSeq += uint32(len(payload))
	if !e.udp && s.flags&tcpFlagPSH != 0 {
		e.buf[VirtioNetHdrLen+e.l4+13] |= tcpFlagPSH
		e.closed = true
	}
	if len(payload) < e.gsoSize {
		e.closed = true
	}
}

// finish writes e's virtio-net header and, for a super-frame, its lengths
// and checksums, and returns header and frame.
func (e *groEntry) finish() []byte {
	b := e.buf[:VirtioNetHdrLen+e.frameLen]
	if e.segments > 1 {
		SuperFrame{L4: e.l4, L4HeaderLen: e.tcpHeaderLen, GSOSize: e.gsoSize, IPv6: e.v6, UDP: e.udp}.Encode(b)
		return b
	}
	var h VirtioNetHdr
	if e.partial {
		h.Flags = VirtioNetHdrFNeedsCsum
		h.CsumStart = uint16(e.l4)
		h.CsumOffset = tcpChecksumOffset
		if e.udp {
			h.CsumOffset = udpChecksumOffset
		}
	}
	_ = h.Encode(b)
	return b
}
