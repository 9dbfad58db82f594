package offload

import "encoding/binary"

// SegmentTCP cuts an Ethernet frame carrying TCP over IPv4 or IPv6 into
// frames whose IP packets are at most mtu bytes long, as a NIC doing TCP
// segmentation offload would. Segment i is written to out[i][offset:] and its
// frame length stored in sizes[i]; SegmentTCP returns the number of segments.
// out must not overlap frame.
//
// Every segment carries a copy of the Ethernet, IP and TCP headers, TCP and
// IPv4 options included, with:
//   - the IPv4 total length or IPv6 payload length of the segment;
//   - the IPv4 identification of the frame plus i, as Linux GSO does, and a
//     recomputed IPv4 header checksum;
//   - the sequence number advanced by the payload of earlier segments;
//   - FIN and PSH only on the last segment and CWR only on the first, so
//     that the stream ends and congestion-window reduction is signalled once
//     (RFC 3168 §6.1.2);
//   - a full TCP checksum.
//
// The frame's own TCP checksum is not read: a frame handed over by a sender
// using offload holds only the partial pseudo-header sum. That also means a
// corrupted frame yields segments with correct checksums; a caller that must
// catch corruption calls FixChecksum first and drops ChecksumBad frames.
//
// A frame that already fits the MTU comes out as one segment with a full
// checksum. Ethernet padding after the IP packet is dropped.
//
// On error nothing has been written to out or sizes: the frame is checked and
// every output buffer measured before the first byte is copied. It returns
// ErrNotTCP, ErrFragment or ErrMalformed for frames it cannot segment,
// ErrMTUTooSmall if the headers leave no room for payload, ErrTooManySegments
// if out or sizes is shorter than the number of segments, and
// ErrBufferTooSmall if an out[i] cannot hold its segment at offset or offset
// is negative.
func SegmentTCP(frame []byte, mtu int, out [][]byte, sizes []int, offset int) (int, error) {
	p, err := parseIP(frame)
	if err != nil {
		return 0, err
	}
	if p.protocol != protocolTCP {
		return 0, ErrNotTCP
	}
	tcp := frame[p.l4:p.end]
	if len(tcp) < tcpMinHeaderLen {
		return 0, ErrMalformed
	}
	tcpHeaderLen := int(tcp[12]>>4) * 4
	if tcpHeaderLen < tcpMinHeaderLen || tcpHeaderLen > len(tcp) {
		return 0, ErrMalformed
	}
	ipHeaderLen := p.l4 - p.ip
	// Written so that no mtu, however large or negative, overflows.
	if mtu <= ipHeaderLen+tcpHeaderLen {
		return 0, ErrMTUTooSmall
	}
	mss := mtu - ipHeaderLen - tcpHeaderLen
	headerLen := p.l4 + tcpHeaderLen // Ethernet, IP and TCP
	payload := frame[headerLen:p.end]

	n, err := countSegments(len(payload), mss, headerLen, out, sizes, offset)
	if err != nil {
		return 0, err
	}
	seq := binary.BigEndian.Uint32(tcp[4:8])
	flags := tcp[13]
	for i := range n {
		seg := cutSegment(frame, &p, headerLen, i, mss, out[i][offset:])
		tcpLen := len(seg) - p.l4
		th := seg[p.l4:]
		binary.BigEndian.PutUint32(th[4:8], seq+uint32(i*mss))
		f := flags
		if i != n-1 {
			f &^= tcpFlagFIN | tcpFlagPSH
		}
		if i != 0 {
			f &^= tcpFlagCWR
		}
		th[13] = f
		th[16], th[17] = 0, 0
		pseudo := p.pseudoHeaderSum(seg, tcpLen)
		binary.BigEndian.PutUint16(th[16:18], ^Checksum(th, uint32(pseudo)))

		sizes[i] = len(seg)
	}
	return n, nil
}

// SegmentUDP cuts an Ethernet frame carrying one UDP datagram over IPv4 or
// IPv6 into datagrams of at most gsoSize payload bytes each, as the kernel's
// UDP segmentation offload (USO, UDP_SEGMENT) does: datagram i is written to
// out[i][offset:] and its frame length stored in sizes[i]; SegmentUDP returns
// the number of datagrams. out must not overlap frame.
//
// Every datagram carries a copy of the Ethernet, IP and UDP headers with its
// own IP and UDP lengths, the IPv4 identification of the frame plus i and a
// recomputed IPv4 header checksum, and a full UDP checksum (0xffff where the
// sum is 0, since 0 means none). As with SegmentTCP, the frame's own UDP
// checksum is not read, and nothing is written on error. It returns
// ErrNotUDP, ErrFragment or ErrMalformed for frames it cannot segment,
// ErrGSOSizeZero for a gsoSize below 1, and ErrTooManySegments or
// ErrBufferTooSmall as SegmentTCP does.
func SegmentUDP(frame []byte, gsoSize int, out [][]byte, sizes []int, offset int) (int, error) {
	p, err := parseIP(frame)
	if err != nil {
		if err == ErrNotTCP {
			err = ErrNotUDP
		}
		return 0, err
	}
	if p.protocol != protocolUDP {
		return 0, ErrNotUDP
	}
	if p.end-p.l4 < udpHeaderLen {
		return 0, ErrMalformed
	}
	if gsoSize < 1 {
		return 0, ErrGSOSizeZero
	}
	headerLen := p.l4 + udpHeaderLen // Ethernet, IP and UDP
	payload := frame[headerLen:p.end]
	n, err := countSegments(len(payload), gsoSize, headerLen, out, sizes, offset)
	if err != nil {
		return 0, err
	}
	for i := range n {
		seg := cutSegment(frame, &p, headerLen, i, gsoSize, out[i][offset:])
		udpLen := len(seg) - p.l4
		uh := seg[p.l4:]
		binary.BigEndian.PutUint16(uh[4:6], uint16(udpLen))
		uh[6], uh[7] = 0, 0
		csum := ^Checksum(uh, uint32(p.pseudoHeaderSum(seg, udpLen)))
		if csum == 0 {
			csum = 0xffff
		}
		binary.BigEndian.PutUint16(uh[6:8], csum)
		sizes[i] = len(seg)
	}
	return n, nil
}

// countSegments returns how many segments of at most size payload bytes
// (at least one) a payload of payloadLen bytes is cut into, after
// checking that out and sizes have as many entries and that each out[i]
// holds its segment, headers of headerLen bytes included, at offset.
func countSegments(payloadLen, size, headerLen int, out [][]byte, sizes []int, offset int) (int, error) {
	n := max((payloadLen+size-1)/size, 1)
	if n > len(out) || n > len(sizes) {
		return 0, ErrTooManySegments
	}
	if offset < 0 {
		return 0, ErrBufferTooSmall
	}
	for i := range n {
		if len(out[i])-offset < headerLen+min(size, payloadLen-i*size) {
			return 0, ErrBufferTooSmall
		}
	}
	return n, nil
}

// cutSegment writes segment i of frame into dst and returns it: the
// frame's first headerLen bytes (Ethernet, IP and transport headers),
// payload bytes i*size up to (i+1)*size, and the segment's own IP length,
// identification (the frame's plus i) and header checksum. The transport
// header is the caller's to finish.
func cutSegment(frame []byte, p *ipPacket, headerLen, i, size int, dst []byte) []byte {
	payload := frame[headerLen:p.end]
	chunk := payload[min(i*size, len(payload)):min((i+1)*size, len(payload))]
	seg := dst[:headerLen+len(chunk)]
	copy(seg, frame[:headerLen])
	copy(seg[headerLen:], chunk)
	var id uint16
	if !p.v6 {
		id = binary.BigEndian.Uint16(frame[p.ip+4:p.ip+6]) + uint16(i)
	}
	setSegmentIP(seg[p.ip:p.l4], p.v6, len(seg)-p.l4, id)
	return seg
}

// setSegmentIP sets the IP header ip of a segment carrying l4Len bytes of
// transport header and payload: the IPv6 payload length, or the IPv4 total
// length, identification and header checksum.
func setSegmentIP(ip []byte, v6 bool, l4Len int, id uint16) {
	if v6 {
		binary.BigEndian.PutUint16(ip[4:6], uint16(l4Len))
		return
	}
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)+l4Len))
	binary.BigEndian.PutUint16(ip[4:6], id)
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:12], ipv4HeaderChecksum(ip))
}
