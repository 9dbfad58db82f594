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

	n := 1
	if len(payload) > mss {
		n = (len(payload) + mss - 1) / mss
	}
	if n > len(out) || n > len(sizes) {
		return 0, ErrTooManySegments
	}
	if offset < 0 {
		return 0, ErrBufferTooSmall
	}
	for i := range n {
		segmentLen := min(mss, len(payload)-i*mss)
		if len(out[i])-offset < headerLen+segmentLen {
			return 0, ErrBufferTooSmall
		}
	}

	seq := binary.BigEndian.Uint32(tcp[4:8])
	flags := tcp[13]
	var id uint16
	if !p.v6 {
		id = binary.BigEndian.Uint16(frame[p.ip+4 : p.ip+6])
	}
	for i := range n {
		chunk := payload[i*mss : min((i+1)*mss, len(payload))]
		seg := out[i][offset : offset+headerLen+len(chunk)]
		copy(seg, frame[:headerLen])
		copy(seg[headerLen:], chunk)

		tcpLen := tcpHeaderLen + len(chunk)
		setSegmentIP(seg[p.ip:p.l4], p.v6, tcpLen, id+uint16(i))

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
	n := max((len(payload)+gsoSize-1)/gsoSize, 1)
	if n > len(out) || n > len(sizes) {
		return 0, ErrTooManySegments
	}
	if offset < 0 {
		return 0, ErrBufferTooSmall
	}
	for i := range n {
		if len(out[i])-offset < headerLen+min(gsoSize, len(payload)-i*gsoSize) {
			return 0, ErrBufferTooSmall
		}
	}
	var id uint16
	if !p.v6 {
		id = binary.BigEndian.Uint16(frame[p.ip+4 : p.ip+6])
	}
	for i := range n {
		chunk := payload[min(i*gsoSize, len(payload)):min((i+1)*gsoSize, len(payload))]
		seg := out[i][offset : offset+headerLen+len(chunk)]
		copy(seg, frame[:headerLen])
		copy(seg[headerLen:], chunk)

		udpLen := udpHeaderLen + len(chunk)
		setSegmentIP(seg[p.ip:p.l4], p.v6, udpLen, id+uint16(i))
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
