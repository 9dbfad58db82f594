package encap

// The fields an outer IP header inherits from the inner one, as the Linux
// vxlan device's "ttl inherit", "tos inherit" and "df inherit" do.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	// ecnMask is the ECN field of the TOS byte (RFC 3168 §5), ecnCE its
	// Congestion Experienced codepoint and ecnECT0 ECT(0).
	ecnMask = 0x03
	ecnCE   = 0x03
	ecnECT0 = 0x02
	// ipv4DF is the Don't Fragment bit of the IPv4 flags, in the byte
	// at offset 6 of the header (RFC 791 §3.1).
	ipv4DF = 0x40
)

// InnerFields returns the TTL (IPv6: hop limit), TOS byte (IPv6:
// traffic class) and DF of the IP packet in the Ethernet frame that
// follows the VXLAN header at the start of datagram. ok is false when the
// frame does not carry IPv4 or IPv6 right after its Ethernet header (ARP,
// a VLAN tag) or is too short to tell; df is then false.
//
// df is the DF bit of an inner IPv4 header and always true for inner
// IPv6, which routers never fragment (RFC 8200 §5): the Linux kernel's
// vxlan with "df inherit" sets the outer DF the same way, and leaves it
// clear for frames that carry neither.
//
// An inner ECN of Congestion Experienced is returned as ECT(0): RFC 6040
// §4.1 has a tunnel's ingress copy ECN, except that CE becomes ECT(0) in
// the outer header, as the Linux kernel's tunnels do.
func InnerFields(datagram []byte) (ttl, tos uint8, df, ok bool) {
	const ip = HeaderLen + EthernetHeaderLen
	// Up to the IPv4 TTL (offset 8), which lies past every field read
	// of either header.
	if len(datagram) < ip+9 {
		return 0, 0, false, false
	}
	switch uint16(datagram[ip-2])<<8 | uint16(datagram[ip-1]) {
	case etherTypeIPv4:
		if datagram[ip]>>4 != 4 {
			return 0, 0, false, false
		}
		ttl, tos, df = datagram[ip+8], datagram[ip+1], datagram[ip+6]&ipv4DF != 0
	case etherTypeIPv6:
		if datagram[ip]>>4 != 6 {
			return 0, 0, false, false
		}
		// The traffic class spans the low nibble of byte 0 and the
		// high nibble of byte 1.
		ttl, tos, df = datagram[ip+7], datagram[ip]<<4|datagram[ip+1]>>4, true
	default:
		return 0, 0, false, false
	}
	if tos&ecnMask == ecnCE {
		tos = tos&^ecnMask | ecnECT0
	}
	return ttl, tos, df, true
}
