package offload

import "encoding/binary"

// Answers to an IP packet too large for the next hop: ICMP "fragmentation
// needed" (RFC 792, RFC 1191 §4: type 3, code 4, the next-hop MTU in the
// low 16 bits of the second word) and ICMPv6 "packet too big" (RFC 4443
// §3.2: type 2, code 0, the MTU in the second word).
const (
	icmpHeaderLen = 8
	protoICMP     = 1
	protoICMPv6   = 58
	// A "fragmentation needed" answer quotes as much of the packet as
	// fits in 576 bytes (RFC 1812 §4.3.2.3), a "packet too big" as much
	// as fits in the IPv6 minimum MTU, 1280 (RFC 4443 §2.4 (c)).
	maxICMPv4Len = 576
	maxICMPv6Len = 1280

	// TooBigFrameLen is the longest frame TooBig writes.
	TooBigFrameLen = ethHeaderLen + maxICMPv6Len
)

// TooBig writes into out the Ethernet frame, from mac, that answers the
// IP packet in frame, which is too large for mtu: ICMP "fragmentation
// needed" for IPv4 with DF, ICMPv6 "packet too big" for IPv6. As the
// kernel's tunnels do, the answer comes from the packet's destination, so
// that the sender takes it as news about that path. It returns the
// frame's length, or 0 when the packet must be dropped without an answer:
// IPv4 without DF (the sender allows fragments, and nobody here makes
// them), not IP, malformed, a later fragment, from a group or unspecified
// address, or itself an ICMP error. out needs TooBigFrameLen bytes.
func TooBig(out, frame []byte, mac [6]byte, mtu int) int {
	if len(frame) < ethHeaderLen || len(out) < TooBigFrameLen {
		return 0
	}
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case etherTypeIPv4:
		return fragmentationNeeded(out, frame, mac, mtu)
	case etherTypeIPv6:
		return packetTooBig(out, frame, mac, mtu)
	}
	return 0
}

func fragmentationNeeded(out, frame []byte, mac [6]byte, mtu int) int {
	ip := frame[ethHeaderLen:]
	if len(ip) < ipv4MinHeaderLen || ip[0]>>4 != 4 {
		return 0
	}
	ihl := int(ip[0]&0x0f) * 4
	flags := binary.BigEndian.Uint16(ip[6:8])
	const df, offset = 0x4000, 0x1fff
	if ihl < ipv4MinHeaderLen || len(ip) < ihl+icmpHeaderLen || flags&df == 0 || flags&offset != 0 {
		return 0
	}
	src := ip[12:16]
	if src[0] >= 224 || src[0] == 0 || [4]byte(ip[16:20]) == [4]byte{255, 255, 255, 255} {
		return 0 // a group, broadcast or unspecified address (RFC 1122 §3.2.2)
	}
	if ip[9] == protoICMP && isICMPError(ip[ihl]) {
		return 0
	}
	quoted := min(len(ip), maxICMPv4Len-ipv4MinHeaderLen-icmpHeaderLen)
	total := ipv4MinHeaderLen + icmpHeaderLen + quoted
	writeEthernet(out, frame, mac)
	h := out[ethHeaderLen : ethHeaderLen+total]
	h[0], h[1] = 0x45, 0
	binary.BigEndian.PutUint16(h[2:4], uint16(total))
	clear(h[4:8]) // ID, flags, offset
	h[8], h[9] = 64, protoICMP
	clear(h[10:12])
	copy(h[12:16], ip[16:20]) // from the packet's destination
	copy(h[16:20], src)
	binary.BigEndian.PutUint16(h[10:12], ^Checksum(h[:ipv4MinHeaderLen], 0))
	icmp := h[ipv4MinHeaderLen:]
	icmp[0], icmp[1] = 3, 4
	clear(icmp[2:6])
	binary.BigEndian.PutUint16(icmp[6:8], uint16(mtu))
	copy(icmp[icmpHeaderLen:], ip[:quoted])
	binary.BigEndian.PutUint16(icmp[2:4], ^Checksum(icmp, 0))
	return ethHeaderLen + total
}

func packetTooBig(out, frame []byte, mac [6]byte, mtu int) int {
	ip := frame[ethHeaderLen:]
	if len(ip) < ipv6HeaderLen || ip[0]>>4 != 6 {
		return 0
	}
	src := ip[8:24]
	if src[0] == 0xff || [16]byte(src) == [16]byte{} {
		return 0 // a group or the unspecified address (RFC 4443 §2.4 (e))
	}
	// An ICMPv6 error right behind the header is not answered; one behind
	// extension headers is rare enough to be answered.
	if ip[6] == protoICMPv6 && len(ip) > ipv6HeaderLen && ip[ipv6HeaderLen] < 128 {
		return 0
	}
	quoted := min(len(ip), maxICMPv6Len-ipv6HeaderLen-icmpHeaderLen)
	payload := icmpHeaderLen + quoted
	writeEthernet(out, frame, mac)
	h := out[ethHeaderLen : ethHeaderLen+ipv6HeaderLen+payload]
	binary.BigEndian.PutUint32(h[0:4], 6<<28)
	binary.BigEndian.PutUint16(h[4:6], uint16(payload))
	h[6], h[7] = protoICMPv6, 64
	copy(h[8:24], ip[24:40]) // from the packet's destination
	copy(h[24:40], src)
	icmp := h[ipv6HeaderLen:]
	icmp[0], icmp[1] = 2, 0
	clear(icmp[2:4])
	binary.BigEndian.PutUint32(icmp[4:8], uint32(mtu))
	copy(icmp[icmpHeaderLen:], ip[:quoted])
	sum := PseudoHeaderSum(protoICMPv6, h[8:24], h[24:40], uint32(payload))
	binary.BigEndian.PutUint16(icmp[2:4], ^Checksum(icmp, uint32(sum)))
	return ethHeaderLen + ipv6HeaderLen + payload
}

// isICMPError reports whether an ICMP type is an error message, which is
// never answered with another (RFC 1122 §3.2.2).
func isICMPError(typ byte) bool {
	switch typ {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// writeEthernet writes the header of the answer to frame: from mac back
// to frame's sender, of frame's type.
func writeEthernet(out, frame []byte, mac [6]byte) {
	copy(out[0:6], frame[6:12])
	copy(out[6:12], mac[:])
	copy(out[12:14], frame[12:14])
}
