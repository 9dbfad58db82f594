package overlay

import (
	"encoding/binary"
	"net/netip"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay/fdb"
)

// ARP over Ethernet for IPv4 (RFC 826), as it follows the 14-byte Ethernet
// header:
//
//	0  htype (1)   2  ptype (0x0800)   4 hlen (6)   5 plen (4)   6 op
//	8  sender MAC  14 sender IP        18 target MAC             24 target IP
const (
	etherTypeARP = 0x0806
	arpLen       = 28
	arpRequest   = 1
	arpReply     = 2
)

// arpIPv4 returns the ARP payload of frame when frame is an Ethernet ARP
// packet for IPv4, and nil otherwise.
func arpIPv4(frame []byte) []byte {
	if len(frame) < encap.EthernetHeaderLen+arpLen || binary.BigEndian.Uint16(frame[12:14]) != etherTypeARP {
		return nil
	}
	a := frame[encap.EthernetHeaderLen : encap.EthernetHeaderLen+arpLen]
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != 0x0800 || a[4] != 6 || a[5] != 4 {
		return nil
	}
	return a
}

func arpOp(a []byte) uint16             { return binary.BigEndian.Uint16(a[6:8]) }
func arpSenderMAC(a []byte) fdb.MAC     { return fdb.MAC(a[8:14]) }
func arpSenderIP(a []byte) netip.Addr   { return netip.AddrFrom4([4]byte(a[14:18])) }
func arpTargetIP(a []byte) netip.Addr   { return netip.AddrFrom4([4]byte(a[24:28])) }
func setMAC(dst []byte, m fdb.MAC)      { copy(dst, m[:]) }
func setIPv4(dst []byte, ip netip.Addr) { a := ip.As4(); copy(dst, a[:]) }

// answerARP turns the ARP request in frame, in place, into the reply that
// the owner of the target address (mac) would send.
func answerARP(frame []byte, mac fdb.MAC) {
	a := frame[encap.EthernetHeaderLen : encap.EthernetHeaderLen+arpLen]
	requester, requesterIP, target := arpSenderMAC(a), arpSenderIP(a), arpTargetIP(a)
	setMAC(frame[0:6], requester)
	setMAC(frame[6:12], mac)
	binary.BigEndian.PutUint16(a[6:8], arpReply)
	setMAC(a[8:14], mac)
	setIPv4(a[14:18], target)
	setMAC(a[18:24], requester)
	setIPv4(a[24:28], requesterIP)
}
