package offload

import "encoding/binary"

// SuperFrame says where the headers of a super-frame are and how the
// kernel is to cut it: an untagged Ethernet frame carrying one TCP segment
// or UDP datagram over IPv4 or IPv6 with more payload than one segment may
// carry, written to a TAP opened with IFF_VNET_HDR behind a virtio-net
// header of type TCPv4, TCPv6 or UDP_L4.
type SuperFrame struct {
	L4          int  // offset of the TCP or UDP header in the frame
	L4HeaderLen int  // bytes of the TCP header (options included), or 8 for UDP
	GSOSize     int  // payload bytes per segment or datagram
	IPv6        bool // IPv6, else IPv4
	UDP         bool // UDP (USO), else TCP
}

// Encode makes the frame in pkt[VirtioNetHdrLen:] the super-frame s
// describes, with the frame ending where pkt ends: it sets the IP length
// (and the IPv4 header checksum), for UDP the UDP length, and stores the
// pseudo-header sum in the transport checksum field; then it writes the
// virtio-net header to pkt[:VirtioNetHdrLen]: GSO type (with the ECN bit
// when the TCP header carries CWR), header length, gso_size and
// VirtioNetHdrFNeedsCsum at the transport checksum.
//
// The kernel computes every segment's checksum from that partial sum, so a
// frame must reach Encode with a checksum that verified: a corrupted
// payload would otherwise leave with fresh, valid checksums.
//
// s must match the frame (GRO and EncodeTCPSuperFrame build it from parsed
// headers); Encode checks nothing.
func (s SuperFrame) Encode(pkt []byte) {
	frame := pkt[VirtioNetHdrLen:]
	l4Len := len(frame) - s.L4
	ip := frame[ethHeaderLen:s.L4]
	h := VirtioNetHdr{
		Flags:      VirtioNetHdrFNeedsCsum,
		GSOType:    VirtioNetHdrGSOTCPv4,
		HdrLen:     uint16(s.L4 + s.L4HeaderLen),
		GSOSize:    uint16(s.GSOSize),
		CsumStart:  uint16(s.L4),
		CsumOffset: tcpChecksumOffset,
	}
	switch {
	case s.UDP:
		h.GSOType = VirtioNetHdrGSOUDPL4
		h.CsumOffset = udpChecksumOffset
	case s.IPv6:
		h.GSOType = VirtioNetHdrGSOTCPv6
	}
	if s.IPv6 {
		binary.BigEndian.PutUint16(ip[4:6], uint16(l4Len))
	} else {
		binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)+l4Len))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:12], ^Checksum(ip, 0))
	}
	l4 := frame[s.L4:]
	protocol := uint8(protocolTCP)
	if s.UDP {
		// The UDP length covers the whole super-frame, as a sender's
		// UDP_SEGMENT leaves it; __udp_gso_segment corrects length and
		// checksum for each datagram.
		protocol = protocolUDP
		binary.BigEndian.PutUint16(l4[4:6], uint16(l4Len))
	} else if l4[13]&tcpFlagCWR != 0 {
		h.GSOType |= VirtioNetHdrGSOECN
	}
	// What a sender using checksum offload leaves for the NIC: the folded
	// pseudo-header sum over the whole transport length, not
	// complemented. The kernel adds the sum of header and payload to it;
	// when it segments, tcp_gso_segment (or __udp_gso_segment) corrects it
	// for each segment's shorter length.
	var src, dst []byte
	if s.IPv6 {
		src, dst = ip[8:24], ip[24:40]
	} else {
		src, dst = ip[12:16], ip[16:20]
	}
	binary.BigEndian.PutUint16(l4[h.CsumOffset:], PseudoHeaderSum(protocol, src, dst, uint32(l4Len)))
	_ = h.Encode(pkt)
}

// EncodeTCPSuperFrame prepares the Ethernet frame in pkt[VirtioNetHdrLen:],
// one TCP segment over IPv4 or IPv6 with a valid checksum, to be written to a
// TAP with TCP segmentation offload as one super-frame (SuperFrame.Encode)
// that the kernel cuts into segments whose IP packets are at most mtu bytes
// long: the segments SegmentTCP(frame, mtu) would make. It returns how many
// bytes of pkt to write; Ethernet padding after the IP packet is left out.
//
// It returns ErrNotTCP for a frame that is not TCP directly over IP (an
// 802.1Q tagged frame included: the virtio-net header has no room for the
// tag), ErrFragment, ErrMalformed, ErrShortVirtioNetHdr, and ErrMTUTooSmall
// if the headers leave no room for payload; nothing is written then.
func EncodeTCPSuperFrame(pkt []byte, mtu int) (int, error) {
	if len(pkt) < VirtioNetHdrLen {
		return 0, ErrShortVirtioNetHdr
	}
	frame := pkt[VirtioNetHdrLen:]
	p, err := parseIP(frame)
	if err != nil {
		return 0, err
	}
	if p.protocol != protocolTCP || p.ip != ethHeaderLen {
		return 0, ErrNotTCP
	}
	if p.end-p.l4 < tcpMinHeaderLen {
		return 0, ErrMalformed
	}
	tcpHeaderLen := int(frame[p.l4+12]>>4) * 4
	if tcpHeaderLen < tcpMinHeaderLen || p.l4+tcpHeaderLen > p.end {
		return 0, ErrMalformed
	}
	headers := p.l4 - p.ip + tcpHeaderLen
	if mtu <= headers {
		return 0, ErrMTUTooSmall
	}
	s := SuperFrame{L4: p.l4, L4HeaderLen: tcpHeaderLen, GSOSize: min(mtu-headers, 0xffff), IPv6: p.v6}
	s.Encode(pkt[:VirtioNetHdrLen+p.end])
	return VirtioNetHdrLen + p.end, nil
}
