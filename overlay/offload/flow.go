package offload

// FlowHash hashes the inner flow of an Ethernet frame: the IP addresses,
// protocol and, for TCP, UDP and SCTP, the ports, over IPv4 or IPv6; the
// fragments of an IPv4 datagram hash by addresses and protocol alone, so
// that they all hash alike. Anything else hashes by its Ethernet header.
// Every frame of a flow hashes alike, so that the flow keeps one outer
// source port (RFC 7348 §5) and the underlay's ECMP and receive-side
// scaling keep it on one path and queue.
func FlowHash(frame []byte) uint32 {
	// FNV-1a, 32 bits.
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	mix := func(b []byte) {
		for _, c := range b {
			h ^= uint32(c)
			h *= prime32
		}
	}
	p, err := parseIP(frame)
	switch err {
	case nil, ErrFragment:
		mix(frame[p.addrs : p.addrs+2*p.addrLen])
		h ^= uint32(p.protocol)
		h *= prime32
	default:
		mix(frame[:min(len(frame), ethHeaderLen)])
		return h
	}
	const protocolSCTP = 132
	if err == nil && p.end-p.l4 >= 4 && (p.protocol == protocolTCP || p.protocol == protocolUDP || p.protocol == protocolSCTP) {
		mix(frame[p.l4 : p.l4+4])
	}
	return h
}
