package offload

import "encoding/binary"

// ChecksumResult says what FixChecksum found. Callers count each outcome; only
// ChecksumBad means the frame must be dropped.
type ChecksumResult uint8

const (
	// ChecksumNotApplicable: the frame is not TCP or UDP directly over IPv4
	// or IPv6, is an IPv4 fragment, is UDP over IPv4 without a checksum
	// (field 0), is UDP over IPv6 with a zero checksum (which RFC 6935
	// allows only for tunnels, a decision for the receiving socket), or has
	// truncated or inconsistent headers. The frame is untouched: the
	// receiving kernel judges it as it would judge any other frame.
	ChecksumNotApplicable ChecksumResult = iota
	// ChecksumValid: the transport checksum verified; the frame is
	// untouched.
	ChecksumValid
	// ChecksumCompleted: the checksum field held the partial pseudo-header
	// sum that checksum offload leaves for the NIC; the full checksum has
	// been written in its place.
	ChecksumCompleted
	// ChecksumBad: the checksum is neither correct nor partial. The frame
	// was corrupted and is untouched; the caller drops it and counts it.
	ChecksumBad
)

// String returns a constant name, usable as a metric label.
func (r ChecksumResult) String() string {
	switch r {
	case ChecksumNotApplicable:
		return "not-applicable"
	case ChecksumValid:
		return "valid"
	case ChecksumCompleted:
		return "completed"
	case ChecksumBad:
		return "bad"
	}
	return "unknown"
}

// FixChecksum verifies the TCP or UDP checksum of an Ethernet frame carrying
// IPv4 or IPv6 and, when the checksum field holds the partial pseudo-header
// sum, completes it in place. Frames with one 802.1Q tag are handled.
//
// A sender using checksum offload stores the folded pseudo-header sum, not
// complemented, in the field and leaves the rest to the NIC; a frame that
// travelled through a userspace socket lost the flag that said so. A field
// holding that value while the frame fails verification is therefore taken
// as partial. Accepting two values instead of one doubles the small chance
// (1 in 65536 for random damage) that a 16-bit checksum misses corruption.
//
// It costs one pass over the transport segment.
func FixChecksum(frame []byte) ChecksumResult {
	p, err := parseIP(frame)
	if err != nil {
		return ChecksumNotApplicable
	}
	segment := frame[p.l4:p.end]
	var fieldOffset int
	switch p.protocol {
	case protocolTCP:
		if len(segment) < tcpMinHeaderLen {
			return ChecksumNotApplicable
		}
		dataOffset := int(segment[12]>>4) * 4
		if dataOffset < tcpMinHeaderLen || dataOffset > len(segment) {
			return ChecksumNotApplicable
		}
		fieldOffset = tcpChecksumOffset
	case protocolUDP:
		if len(segment) < udpHeaderLen {
			return ChecksumNotApplicable
		}
		// The checksum covers the UDP length, which may be shorter than
		// the IP payload (RFC 768); the kernel trims the rest.
		udpLen := int(binary.BigEndian.Uint16(segment[4:6]))
		if udpLen < udpHeaderLen || udpLen > len(segment) {
			return ChecksumNotApplicable
		}
		segment = segment[:udpLen]
		if binary.BigEndian.Uint16(segment[udpChecksumOffset:]) == 0 {
			return ChecksumNotApplicable
		}
		fieldOffset = udpChecksumOffset
	default:
		return ChecksumNotApplicable
	}

	pseudo := p.pseudoHeaderSum(frame, len(segment))
	sum := Checksum(segment, 0)
	if fold(uint64(sum)+uint64(pseudo)) == 0xffff {
		return ChecksumValid
	}
	field := binary.BigEndian.Uint16(segment[fieldOffset:])
	// 0 and 0xffff are the two one's-complement zeros. The Linux kernel
	// never stores 0 for a non-zero sum, but another sender might.
	if field != pseudo && (pseudo != 0xffff || field != 0) {
		return ChecksumBad
	}
	// sum covers the field; take it out and add the pseudo-header instead.
	csum := ^fold(uint64(sum) + uint64(^field) + uint64(pseudo))
	if csum == 0 && p.protocol == protocolUDP {
		// In UDP a transmitted 0 means "no checksum" (RFC 768).
		csum = 0xffff
	}
	binary.BigEndian.PutUint16(segment[fieldOffset:], csum)
	return ChecksumCompleted
}
