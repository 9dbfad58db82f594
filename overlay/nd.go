package overlay

import (
	"encoding/binary"
	"net/netip"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/offload"
)

// IPv6 neighbour discovery (RFC 4861): a neighbour solicitation (NS) or
// advertisement (NA) right behind the IPv6 header, as it follows the
// 14-byte Ethernet header:
//
//	0  version, class, flow (4)  4 payload length (2)  6 next header (58)
//	7  hop limit (255)           8 source (16)          24 destination (16)
//	40 type (135 NS, 136 NA)     41 code (0)            42 checksum (2)
//	44 flags R S O (NA), reserved (4)                  48 target (16)
//	64 options: type (1), length in units of 8 bytes (1), value
//
// The link-layer address options (RFC 4861 §4.6.1), source (1) in an NS
// and target (2) in an NA, are 8 bytes: type, length 1, the MAC.
const (
	etherTypeIPv6  = 0x86dd
	ipv6HeaderLen  = 40
	protoICMPv6    = 58
	ndHopLimit     = 255
	ndMsgLen       = 24 // type to the end of the target
	ndSolicitation = 135
	ndAdvert       = 136
	ndOptSourceLL  = 1
	ndOptTargetLL  = 2
	ndFlagSolicit  = 0x40
	ndFlagOverride = 0x20
	// ndAnswerLen is the frame of the advertisement answerNS writes.
	ndAnswerLen = encap.EthernetHeaderLen + ipv6HeaderLen + ndMsgLen + 8
)

// ndMessage is a neighbour solicitation or advertisement found in a
// frame. ip is a view of the frame, nil when the frame holds neither.
type ndMessage struct {
	ip []byte // the IPv6 packet, up to its payload length
	// ll is the link-layer address option, source for an NS, target for
	// an NA, when hasLL.
	ll    fdb.MAC
	hasLL bool
}

// parseND returns the neighbour solicitation or advertisement in frame,
// validated as a receiving node does (RFC 4861 §7.1.1, §7.1.2): hop
// limit 255, code 0, a correct checksum, a unicast target, options of
// non-zero length that fit, an NS from the unspecified address sent to
// a solicited-node address without a source link-layer option, an NA to
// a group without the Solicited flag. Anything else, extension headers
// included, is none.
func parseND(frame []byte) ndMessage {
	const minLen = encap.EthernetHeaderLen + ipv6HeaderLen + ndMsgLen
	if len(frame) < minLen || binary.BigEndian.Uint16(frame[12:14]) != etherTypeIPv6 {
		return ndMessage{}
	}
	ip := frame[encap.EthernetHeaderLen:]
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != ndHopLimit {
		return ndMessage{}
	}
	icmpLen := int(binary.BigEndian.Uint16(ip[4:6]))
	if icmpLen < ndMsgLen || ipv6HeaderLen+icmpLen > len(ip) {
		return ndMessage{}
	}
	ip = ip[:ipv6HeaderLen+icmpLen]
	icmp := ip[ipv6HeaderLen:]
	typ := icmp[0]
	if (typ != ndSolicitation && typ != ndAdvert) || icmp[1] != 0 || icmp[8] == 0xff {
		return ndMessage{}
	}
	sum := offload.PseudoHeaderSum(protoICMPv6, ip[8:24], ip[24:40], uint32(icmpLen))
	if offload.Checksum(icmp, uint32(sum)) != 0xffff {
		return ndMessage{}
	}
	m := ndMessage{ip: ip}
	want := byte(ndOptSourceLL)
	if typ == ndAdvert {
		want = ndOptTargetLL
	}
	for opts := icmp[ndMsgLen:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return ndMessage{}
		}
		if opts[0] == want && opts[1] == 1 {
			m.ll, m.hasLL = fdb.MAC(opts[2:8]), true
		}
		opts = opts[int(opts[1])*8:]
	}
	switch {
	case typ == ndSolicitation && ndSource(ip).IsUnspecified():
		if m.hasLL || !isSolicitedNode(ip[24:40]) {
			return ndMessage{}
		}
	case typ == ndAdvert && ip[24] == 0xff && icmp[4]&ndFlagSolicit != 0:
		return ndMessage{}
	}
	return m
}

// isSolicitedNode reports whether a is a solicited-node multicast
// address, ff02::1:ffXX:XXXX (RFC 4291 §2.7.1).
func isSolicitedNode(a []byte) bool {
	return [13]byte(a[:13]) == [13]byte{0xff, 0x02, 10: 0x00, 11: 0x01, 12: 0xff}
}

func (m ndMessage) isSolicitation() bool { return m.ip[ipv6HeaderLen] == ndSolicitation }
func ndSource(ip []byte) netip.Addr      { return netip.AddrFrom16([16]byte(ip[8:24])) }
func ndTarget(ip []byte) netip.Addr {
	return netip.AddrFrom16([16]byte(ip[ipv6HeaderLen+8 : ipv6HeaderLen+24]))
}

// claim returns the address that the sender of the frame, src, claims
// in the message: the source of an NS with a source link-layer option,
// or the target of an NA, whose target link-layer option, if any, must
// be src too. An NS from the unspecified address (duplicate address
// detection) claims nothing: the address is not yet the sender's. Only
// unicast addresses a container can own are claimed.
func (m ndMessage) claim(src fdb.MAC) (netip.Addr, bool) {
	if m.hasLL && m.ll != src {
		return netip.Addr{}, false
	}
	a := ndTarget(m.ip)
	if m.isSolicitation() {
		if !m.hasLL {
			return netip.Addr{}, false
		}
		a = ndSource(m.ip)
	}
	return a, (a.IsGlobalUnicast() || a.IsLinkLocalUnicast()) && !a.Is4In6()
}

// allNodes is ff02::1, where an answer to duplicate address detection
// goes (RFC 4861 §7.2.4).
var allNodes = [16]byte{0xff, 0x02, 15: 0x01}

// answerNS turns the neighbour solicitation in frame, in place, into the
// advertisement that the owner of the target address (mac) would send,
// and returns it: a view of frame's buffer, ndAnswerLen bytes long, or
// nil if frame's capacity is shorter. As the kernel's neighbour
// suppression (the bridge's and vxlan's), it sets Override and
// Solicited and carries the target link-layer option; an answer to
// duplicate address detection (from the unspecified address) goes to
// all nodes, without Solicited (RFC 4861 §7.2.4).
func answerNS(frame []byte, mac fdb.MAC) []byte {
	if cap(frame) < ndAnswerLen {
		return nil
	}
	ns := frame[encap.EthernetHeaderLen:]
	solicitor, from := fdb.MAC(frame[6:12]), [16]byte(ns[8:24])
	target := [16]byte(ns[ipv6HeaderLen+8 : ipv6HeaderLen+24])
	to, flags := from, byte(ndFlagSolicit|ndFlagOverride)
	if from == [16]byte{} {
		to, flags = allNodes, ndFlagOverride
	}
	f := frame[:ndAnswerLen]
	setMAC(f[0:6], solicitor)
	setMAC(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], etherTypeIPv6)
	ip := f[encap.EthernetHeaderLen:]
	binary.BigEndian.PutUint32(ip[0:4], 6<<28)
	binary.BigEndian.PutUint16(ip[4:6], ndMsgLen+8)
	ip[6], ip[7] = protoICMPv6, ndHopLimit
	copy(ip[8:24], target[:])
	copy(ip[24:40], to[:])
	na := ip[ipv6HeaderLen:]
	na[0], na[1], na[2], na[3] = ndAdvert, 0, 0, 0
	na[4], na[5], na[6], na[7] = flags, 0, 0, 0
	copy(na[8:24], target[:])
	na[24], na[25] = ndOptTargetLL, 1
	setMAC(na[26:32], mac)
	sum := offload.PseudoHeaderSum(protoICMPv6, ip[8:24], ip[24:40], ndMsgLen+8)
	binary.BigEndian.PutUint16(na[2:4], ^offload.Checksum(na, uint32(sum)))
	return f
}
