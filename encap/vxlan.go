// Package encap reads and writes the VXLAN header of RFC 7348.
//
// A VXLAN packet is a UDP datagram whose payload is an 8-byte VXLAN header
// followed by the inner Ethernet frame (RFC 7348 §5):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|R|R|R|I|R|R|R|            Reserved                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                VXLAN Network Identifier (VNI) |   Reserved    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The fields:
//
//   - Flags (byte 0): the I flag (0x08) must be set for a valid VNI; the
//     other seven bits (R) are reserved.
//   - Reserved (bytes 1–3): 24 bits.
//   - VNI (bytes 4–6): 24 bits, network byte order.
//   - Reserved (byte 7): 8 bits.
//
// RFC 7348 §5 asks receivers to ignore reserved bits. Like the Linux vxlan
// driver, Decode is stricter and rejects any packet with a reserved bit set:
// such a packet was written by an extension (GPE, GBP, ...) that this
// implementation does not speak, and guessing at its meaning is unsafe.
//
// This package knows the wire format only; it does not touch sockets. All
// functions work on caller-owned buffers and allocate nothing.
package encap

import (
	"encoding/binary"
	"errors"
)

const (
	// HeaderLen is the length of the VXLAN header in bytes.
	HeaderLen = 8

	// FlagI is the "valid VNI" flag, bit 4 of the first byte (RFC 7348 §5).
	FlagI = 0x08

	// MaxVNI is the largest VXLAN Network Identifier: 24 bits.
	MaxVNI = 1<<24 - 1

	// DefaultPort is the IANA-assigned UDP destination port (RFC 7348 §5).
	DefaultPort = 4789
	// LinuxPort is the port the Linux vxlan driver used before IANA assigned
	// 4789; flannel still uses it by default.
	LinuxPort = 8472

	// EthernetHeaderLen is the length of the inner frame's Ethernet
	// header (RFC 7348 §5: the inner MAC header follows the VXLAN header),
	// without an 802.1Q tag.
	EthernetHeaderLen = 14

	// OverheadIPv4 is the bytes VXLAN adds to an inner IP packet over an
	// IPv4 underlay: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner
	// Ethernet (14) = 50. An overlay MTU is the underlay MTU less this.
	OverheadIPv4 = 20 + 8 + HeaderLen + EthernetHeaderLen
	// OverheadIPv6 is the same over an IPv6 underlay, whose outer header
	// is 40 bytes: 70.
	OverheadIPv6 = 40 + 8 + HeaderLen + EthernetHeaderLen
)

// Decode errors. They are sentinels so that a receive path can count drops
// by reason without allocating.
var (
	ErrShort        = errors.New("vxlan: packet shorter than the 8-byte header")
	ErrNoIFlag      = errors.New("vxlan: I flag clear")
	ErrReservedBits = errors.New("vxlan: reserved bits set")
	ErrVNIRange     = errors.New("vxlan: VNI does not fit in 24 bits")
)

// Header is a decoded VXLAN header. Only the VNI carries information: a
// header that decodes without error has the I flag set and no reserved bits.
type Header struct {
	VNI uint32
}

// Encode writes a VXLAN header for vni into b[:HeaderLen]: the I flag set,
// all reserved bits zero. It returns ErrShort if b is too small and
// ErrVNIRange if vni does not fit in 24 bits.
func Encode(b []byte, vni uint32) error {
	if len(b) < HeaderLen {
		return ErrShort
	}
	if vni > MaxVNI {
		return ErrVNIRange
	}
	// Big-endian uint64: flags in the top byte, VNI in bytes 4–6.
	binary.BigEndian.PutUint64(b, uint64(FlagI)<<56|uint64(vni)<<8)
	return nil
}

// Decode validates the VXLAN header at the start of pkt, stores it in h and
// returns the inner frame. The inner frame is a view into pkt: the caller
// must not keep it beyond the life of pkt.
//
// Decode rejects, in this order: a packet shorter than HeaderLen (ErrShort),
// a clear I flag (ErrNoIFlag), and any reserved bit set (ErrReservedBits).
func Decode(pkt []byte, h *Header) ([]byte, error) {
	if len(pkt) < HeaderLen {
		return nil, ErrShort
	}
	w := binary.BigEndian.Uint64(pkt)
	if pkt[0]&FlagI == 0 {
		return nil, ErrNoIFlag
	}
	// Everything but the I flag and the VNI is reserved.
	const reserved = ^(uint64(FlagI)<<56 | uint64(MaxVNI)<<8)
	if w&reserved != 0 {
		return nil, ErrReservedBits
	}
	h.VNI = uint32(w>>8) & MaxVNI
	return pkt[HeaderLen:], nil
}

// PeekVNI returns the VNI field of the VXLAN header at the start of pkt
// without validating the rest of it, for a receiver that serves several
// VNIs to pick the one whose checks (Decode) the packet then goes through.
// It returns ErrShort if pkt is shorter than HeaderLen.
func PeekVNI(pkt []byte) (uint32, error) {
	if len(pkt) < HeaderLen {
		return 0, ErrShort
	}
	return uint32(binary.BigEndian.Uint64(pkt)>>8) & MaxVNI, nil
}
