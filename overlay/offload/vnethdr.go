package offload

import (
	"encoding/binary"
	"errors"
)

// VirtioNetHdrLen is the size of the legacy struct virtio_net_hdr that a TAP
// opened with IFF_VNET_HDR (and TUNSETVNETHDRSZ 10) puts in front of every
// frame it reads or writes.
const VirtioNetHdrLen = 10

// Values of VirtioNetHdr.Flags and GSOType, from include/uapi/linux/
// virtio_net.h (virtio 1.2 §5.1.6). They equal the VIRTIO_NET_HDR_* constants
// of golang.org/x/sys/unix, which exist only on Linux; this package builds
// everywhere, and a Linux test checks that the two agree.
const (
	// VirtioNetHdrFNeedsCsum: the transport checksum is still to be done.
	// The field at CsumStart+CsumOffset holds the pseudo-header sum, and the
	// checksum covers the frame from CsumStart to its end (Linux
	// CHECKSUM_PARTIAL).
	VirtioNetHdrFNeedsCsum = 0x01
	// VirtioNetHdrFDataValid: the checksum was verified (receive only).
	VirtioNetHdrFDataValid = 0x02

	VirtioNetHdrGSONone  = 0x00 // not a super-frame
	VirtioNetHdrGSOTCPv4 = 0x01 // TCP over IPv4, cut every GSOSize payload bytes
	VirtioNetHdrGSOUDP   = 0x03 // UDP fragmentation offload (UFO), obsolete
	VirtioNetHdrGSOTCPv6 = 0x04 // TCP over IPv6
	VirtioNetHdrGSOUDPL4 = 0x05 // UDP segmentation (USO): one datagram per GSOSize
	// VirtioNetHdrGSOECN is or-ed into GSOType when the first segment
	// carries CWR, which then stays on the first segment only (RFC 3168
	// §6.1.2; Linux SKB_GSO_TCP_ECN).
	VirtioNetHdrGSOECN = 0x80
)

// Errors about virtio-net headers.
var (
	ErrShortVirtioNetHdr = errors.New("offload: buffer shorter than a virtio-net header")
	ErrCsumOutOfRange    = errors.New("offload: virtio-net checksum start or offset outside the frame")
	ErrGSOUnsupported    = errors.New("offload: virtio-net GSO type not supported (only TCPv4/TCPv6)")
	ErrGSOMismatch       = errors.New("offload: virtio-net GSO type does not match the frame's protocol")
	ErrGSOSizeZero       = errors.New("offload: virtio-net GSO frame with gso_size 0")
)

// VirtioNetHdr is the legacy struct virtio_net_hdr (virtio 1.2 §5.1.6,
// without num_buffers):
//
//	byte 0     flags        VirtioNetHdrF*
//	byte 1     gso_type     VirtioNetHdrGSO*, possibly | VirtioNetHdrGSOECN
//	bytes 2-3  hdr_len      Ethernet+IP+TCP header bytes of a GSO frame
//	bytes 4-5  gso_size     payload bytes per segment
//	bytes 6-7  csum_start   where the checksum starts, from the frame start
//	bytes 8-9  csum_offset  where the checksum field is, from csum_start
//
// On a TAP the 16-bit fields are in the host's byte order: the kernel treats
// a legacy header as native-endian unless TUNSETVNETLE/BE says otherwise.
// Offsets count from the first byte of the Ethernet header.
type VirtioNetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// Encode writes h to b[:VirtioNetHdrLen].
func (h VirtioNetHdr) Encode(b []byte) error {
	if len(b) < VirtioNetHdrLen {
		return ErrShortVirtioNetHdr
	}
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.NativeEndian.PutUint16(b[2:4], h.HdrLen)
	binary.NativeEndian.PutUint16(b[4:6], h.GSOSize)
	binary.NativeEndian.PutUint16(b[6:8], h.CsumStart)
	binary.NativeEndian.PutUint16(b[8:10], h.CsumOffset)
	return nil
}

// Decode fills h from b[:VirtioNetHdrLen]. It does not judge the values;
// Complete and SegmentGSO check them against the frame they describe.
func (h *VirtioNetHdr) Decode(b []byte) error {
	if len(b) < VirtioNetHdrLen {
		return ErrShortVirtioNetHdr
	}
	h.Flags = b[0]
	h.GSOType = b[1]
	h.HdrLen = binary.NativeEndian.Uint16(b[2:4])
	h.GSOSize = binary.NativeEndian.Uint16(b[4:6])
	h.CsumStart = binary.NativeEndian.Uint16(b[6:8])
	h.CsumOffset = binary.NativeEndian.Uint16(b[8:10])
	return nil
}

// Complete finishes the checksum that a frame read from a TAP left to the
// NIC, as the kernel's skb_checksum_help does: when Flags has
// VirtioNetHdrFNeedsCsum, it sums frame[CsumStart:], the pseudo-header sum
// already in the field included, and stores the complement in the field at
// CsumStart+CsumOffset. A result of 0 is stored as 0xffff, the other zero,
// because 0 means "no checksum" in UDP. Without the flag it does nothing.
//
// It is meant for GSO_NONE frames; on a super-frame it checksums the whole
// super-frame, which SegmentGSO does not need (it writes every segment's
// checksum itself). It returns ErrCsumOutOfRange, leaving frame untouched, if
// the field does not lie within frame.
func (h VirtioNetHdr) Complete(frame []byte) error {
	if h.Flags&VirtioNetHdrFNeedsCsum == 0 {
		return nil
	}
	start := int(h.CsumStart)
	field := start + int(h.CsumOffset)
	if field+2 > len(frame) {
		return ErrCsumOutOfRange
	}
	csum := ^Checksum(frame[start:], 0)
	if csum == 0 {
		csum = 0xffff
	}
	binary.BigEndian.PutUint16(frame[field:], csum)
	return nil
}

// SegmentGSO turns a frame read from a TAP with its virtio-net header h into
// frames a wire would carry, written to out[i][offset:] with their lengths in
// sizes[i]; it returns their number.
//
//   - GSO_NONE: the frame is copied to out[0] and its checksum completed if
//     h asks for it (see Complete).
//   - TCPv4 and TCPv6, with or without the ECN bit: SegmentTCP cuts the
//     frame into segments of h.GSOSize payload bytes each, with full
//     checksums. Its MTU is derived from the frame's own IP and TCP header
//     lengths, so IP and TCP options are accounted for; h.HdrLen,
//     h.CsumStart and h.CsumOffset are hints that the kernel computed from
//     the same headers, and are not needed.
//   - UDP_L4 (USO): SegmentUDP cuts the datagram into datagrams of
//     h.GSOSize payload bytes each. A TAP produces them only if
//     TUNSETOFFLOAD enabled TUN_F_USO4 or TUN_F_USO6.
//   - UDP (UFO, IP fragmentation) and unknown types: ErrGSOUnsupported.
//
// As for SegmentTCP, nothing is written on error, and out must not overlap
// frame. It returns ErrGSOMismatch if the frame is not TCP over the IP
// version the GSO type names, ErrGSOSizeZero for a zero gso_size, and the
// errors of SegmentTCP.
func SegmentGSO(h VirtioNetHdr, frame []byte, out [][]byte, sizes []int, offset int) (int, error) {
	switch h.GSOType &^ VirtioNetHdrGSOECN {
	case VirtioNetHdrGSONone:
		if h.GSOType != VirtioNetHdrGSONone {
			return 0, ErrGSOUnsupported // ECN bit without a TCP type
		}
		if len(out) < 1 || len(sizes) < 1 {
			return 0, ErrTooManySegments
		}
		if offset < 0 || len(out[0])-offset < len(frame) {
			return 0, ErrBufferTooSmall
		}
		if h.Flags&VirtioNetHdrFNeedsCsum != 0 && int(h.CsumStart)+int(h.CsumOffset)+2 > len(frame) {
			return 0, ErrCsumOutOfRange
		}
		seg := out[0][offset : offset+len(frame)]
		copy(seg, frame)
		if err := h.Complete(seg); err != nil {
			return 0, err // unreachable: checked above
		}
		sizes[0] = len(seg)
		return 1, nil
	case VirtioNetHdrGSOTCPv4, VirtioNetHdrGSOTCPv6:
	case VirtioNetHdrGSOUDPL4:
		if h.GSOType != VirtioNetHdrGSOUDPL4 {
			return 0, ErrGSOUnsupported // ECN bit on UDP
		}
		if h.GSOSize == 0 {
			return 0, ErrGSOSizeZero
		}
		n, err := SegmentUDP(frame, int(h.GSOSize), out, sizes, offset)
		if err == ErrNotUDP {
			err = ErrGSOMismatch
		}
		return n, err
	default:
		return 0, ErrGSOUnsupported
	}
	mtu, err := tcpSegmentLen(h, frame)
	if err != nil {
		return 0, err
	}
	return SegmentTCP(frame, mtu, out, sizes, offset)
}

// tcpSegmentLen returns the length of the IP packets that the TCP
// super-frame frame is cut into (but the last): its IP and TCP headers and
// h.GSOSize bytes of payload.
func tcpSegmentLen(h VirtioNetHdr, frame []byte) (int, error) {
	if h.GSOSize == 0 {
		return 0, ErrGSOSizeZero
	}
	p, err := parseIP(frame)
	if err != nil {
		return 0, err
	}
	if p.protocol != protocolTCP || p.v6 != (h.GSOType&^VirtioNetHdrGSOECN == VirtioNetHdrGSOTCPv6) {
		return 0, ErrGSOMismatch
	}
	if p.end-p.l4 < tcpMinHeaderLen {
		return 0, ErrMalformed
	}
	tcpHeaderLen := int(frame[p.l4+12]>>4) * 4
	// SegmentTCP checks tcpHeaderLen against the packet; a bad value only
	// makes this length wrong before it returns ErrMalformed.
	return p.l4 - p.ip + tcpHeaderLen + int(h.GSOSize), nil
}

// SegmentLen returns the length of the IP packets that SegmentGSO cuts the
// super-frame frame into (all but the last, which may be shorter): its IP
// and TCP or UDP headers and h.GSOSize bytes of payload. That is the
// packet size its sender chose, from its own MTU. It returns 0 for
// GSO_NONE and for a frame that SegmentGSO refuses to cut.
func SegmentLen(h VirtioNetHdr, frame []byte) int {
	switch h.GSOType &^ VirtioNetHdrGSOECN {
	case VirtioNetHdrGSOTCPv4, VirtioNetHdrGSOTCPv6:
		n, err := tcpSegmentLen(h, frame)
		if err != nil {
			return 0
		}
		return n
	case VirtioNetHdrGSOUDPL4:
		p, err := parseIP(frame)
		if err != nil || p.protocol != protocolUDP || h.GSOType != VirtioNetHdrGSOUDPL4 || h.GSOSize == 0 {
			return 0
		}
		return p.l4 - p.ip + udpHeaderLen + int(h.GSOSize)
	}
	return 0
}
