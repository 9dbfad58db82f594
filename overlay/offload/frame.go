package offload

import (
	"encoding/binary"
	"errors"

	"github.com/vxland/vxland/encap"
)

// Errors returned by SegmentTCP. They are sentinels so that the data path can
// count drops by reason without allocating per packet.
var (
	ErrNotTCP          = errors.New("offload: not a TCP segment directly over IPv4 or IPv6")
	ErrNotUDP          = errors.New("offload: not a UDP datagram directly over IPv4 or IPv6")
	ErrFragment        = errors.New("offload: IPv4 fragment")
	ErrMalformed       = errors.New("offload: malformed or truncated headers")
	ErrMTUTooSmall     = errors.New("offload: MTU leaves no room for TCP payload")
	ErrTooManySegments = errors.New("offload: more segments than output buffers")
	ErrBufferTooSmall  = errors.New("offload: output buffer too small for its segment")
)

const (
	ethHeaderLen = encap.EthernetHeaderLen
	vlanTagLen   = 4

	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100 // IEEE 802.1Q

	ipv4MinHeaderLen = 20
	ipv6HeaderLen    = 40

	protocolTCP = 6
	protocolUDP = 17

	tcpMinHeaderLen = 20
	udpHeaderLen    = 8

	tcpChecksumOffset = 16
	udpChecksumOffset = 6
)

// TCP flags, byte 13 of the TCP header (RFC 9293 §3.1, RFC 3168 §23.2).
const (
	tcpFlagFIN = 0x01
	tcpFlagPSH = 0x08
	tcpFlagCWR = 0x80
)

// ipPacket locates the IP and transport headers of a frame. All fields are
// offsets into the frame, so that the caller can apply them to a copy.
type ipPacket struct {
	ip       int   // first byte of the IP header
	l4       int   // first byte of the transport header
	end      int   // first byte after the IP packet; Ethernet padding follows
	addrs    int   // first byte of the source address; the destination follows
	addrLen  int   // 4 or 16
	v6       bool  // IPv6, else IPv4
	protocol uint8 // transport protocol: IPv4 protocol or IPv6 next header
}

// parseIP finds the IP packet in an Ethernet frame and checks every length
// the headers claim against the bytes present. Lengths come from the IP
// header, not from the frame, because short frames carry Ethernet padding
// that is not part of the packet.
//
// It returns ErrNotTCP for frames that are neither IPv4 nor IPv6; callers
// check the protocol themselves. An IPv6 extension header shows up as a
// protocol other than TCP or UDP, so packets with one are left alone; walking
// extension headers is not worth its risk until a peer is seen to send them.
func parseIP(frame []byte) (p ipPacket, err error) {
	if len(frame) < ethHeaderLen {
		return p, ErrMalformed
	}
	p.ip = ethHeaderLen
	etherType := binary.BigEndian.Uint16(frame[12:14])
	if etherType == etherTypeVLAN {
		if len(frame) < ethHeaderLen+vlanTagLen {
			return p, ErrMalformed
		}
		p.ip += vlanTagLen
		etherType = binary.BigEndian.Uint16(frame[16:18])
	}
	ip := frame[p.ip:]
	switch etherType {
	case etherTypeIPv4:
		if len(ip) < ipv4MinHeaderLen || ip[0]>>4 != 4 {
			return p, ErrMalformed
		}
		headerLen := int(ip[0]&0x0f) * 4
		totalLen := int(binary.BigEndian.Uint16(ip[2:4]))
		if headerLen < ipv4MinHeaderLen || totalLen < headerLen || totalLen > len(ip) {
			return p, ErrMalformed
		}
		p.l4 = p.ip + headerLen
		p.end = p.ip + totalLen
		p.addrs = p.ip + 12
		p.addrLen = 4
		p.protocol = ip[9]
		// Any fragment offset or the More Fragments flag (RFC 791 §3.1):
		// the transport header and checksum span the whole datagram, of
		// which this frame holds only a part. The addresses and protocol
		// are set, for FlowHash.
		if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
			return p, ErrFragment
		}
	case etherTypeIPv6:
		if len(ip) < ipv6HeaderLen || ip[0]>>4 != 6 {
			return p, ErrMalformed
		}
		// A payload length of 0 means a jumbogram (RFC 2675) or a Linux
		// BIG TCP packet, whose real length is elsewhere.
		payloadLen := int(binary.BigEndian.Uint16(ip[4:6]))
		if payloadLen == 0 || ipv6HeaderLen+payloadLen > len(ip) {
			return p, ErrMalformed
		}
		p.protocol = ip[6]
		p.l4 = p.ip + ipv6HeaderLen
		p.end = p.l4 + payloadLen
		p.addrs = p.ip + 8
		p.addrLen = 16
		p.v6 = true
	default:
		return p, ErrNotTCP
	}
	return p, nil
}

// pseudoHeaderSum sums the pseudo-header of p as it stands in frame, for a
// transport segment of length bytes.
func (p *ipPacket) pseudoHeaderSum(frame []byte, length int) uint16 {
	src := frame[p.addrs : p.addrs+p.addrLen]
	dst := frame[p.addrs+p.addrLen : p.addrs+2*p.addrLen]
	return PseudoHeaderSum(p.protocol, src, dst, uint32(length))
}
