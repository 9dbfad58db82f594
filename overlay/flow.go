package overlay

import "encoding/binary"

// flowHash hashes the inner flow of an Ethernet frame: the IP addresses,
// protocol and ports of TCP, UDP and SCTP over IPv4 or IPv6, else the
// MAC addresses and EtherType. Every frame of a flow hashes alike, so the
// flow keeps one outer source port (RFC 7348 §5) and the underlay's ECMP
// and receive-side scaling keep it on one path and queue.
func flowHash(frame []byte) uint32 {
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
	if len(frame) < ethHeaderLen {
		mix(frame)
		return h
	}
	etherType := binary.BigEndian.Uint16(frame[12:14])
	ip := frame[ethHeaderLen:]
	var l4 []byte
	var proto byte
	switch {
	case etherType == 0x0800 && len(ip) >= 20 && ip[0]>>4 == 4:
		ihl := int(ip[0]&0x0f) * 4
		proto = ip[9]
		mix(ip[12:20])
		// Only the first fragment carries the ports.
		if ihl >= 20 && len(ip) >= ihl && binary.BigEndian.Uint16(ip[6:8])&0x1fff == 0 {
			l4 = ip[ihl:]
		}
	case etherType == 0x86dd && len(ip) >= 40 && ip[0]>>4 == 6:
		proto = ip[6]
		mix(ip[8:40])
		l4 = ip[40:]
	default:
		mix(frame[0:14])
		return h
	}
	mix([]byte{proto})
	if (proto == 6 || proto == 17 || proto == 132) && len(l4) >= 4 {
		mix(l4[0:4])
	}
	return h
}
