// Package offload does in software, on Ethernet frames, the work that NICs
// and the kernel's virtio offloads normally do: completing and verifying
// TCP/UDP checksums, and cutting TCP super-frames into MTU-sized segments.
//
// # Why vxland needs it
//
// vxland moves traffic the way the kernel's own VXLAN does, in bursts
// rather than frame by frame, with a TAP opened with a virtio-net header
// (VirtioNetHdr) and segmentation offload:
//
//   - Sending: the kernel hands the TAP reader TCP (and UDP) super-frames
//     of up to 64 KB. SegmentGSO cuts them into MTU-sized frames with
//     complete checksums (software TSO and USO), which the data plane
//     encapsulates one by one.
//   - Receiving: GRO merges the consecutive TCP segments (and UDP
//     datagrams) of a flow into super-frames, so that a burst costs one
//     TAP write and one pass through the receiving stack.
//
// And when the sending VTEP is the Linux kernel's vxlan device on a
// virtual underlay (veth, virtio), two things reach userspace that a real
// wire would never carry:
//
//   - Partial inner checksums. The underlay claims checksum offload, so
//     the kernel sender leaves the inner TCP or UDP checksum as the
//     partial (pseudo-header) sum it would hand to a NIC to finish, and
//     the skb flag that says so does not survive into a userspace socket.
//     Written as-is to a TAP, the frame is counted as a checksum error by
//     the receiving container and TCP stalls. FixChecksum verifies the
//     checksum and, when the field holds exactly the pseudo-header sum,
//     completes it in place; anything else that fails verification is
//     corrupt and is reported so the caller can count and drop it.
//
//   - Oversized datagrams. The kernel sender can pass a whole tunnel-GSO
//     packet of up to 64 KB through the underlay unsegmented, so one VXLAN
//     datagram carries an inner TCP frame far larger than the overlay MTU.
//     A TAP with a virtio-net header takes it as one super-frame; a plain
//     TAP needs SegmentTCP to do what the NIC would have done.
//
// A NIC finishes checksums and segments on the wire, which is why neither
// problem shows against remote peers on real hardware, and why the tests
// that matter run against a kernel peer on veth.
//
// # Scope
//
// The package parses Ethernet (with at most one 802.1Q tag), IPv4 (with
// options) and IPv6 without extension headers, carrying TCP or UDP. That is
// what the kernel offloads produce; everything else is left untouched for the
// receiving kernel to judge. Nothing here knows about VXLAN, sockets or
// devices. FlowHash, which names an inner flow for the choice of an outer
// source port, uses the same parser.
//
// Every function works on caller-owned buffers, treats its input as hostile
// network data (every length is bounds-checked; no input makes it panic),
// and allocates nothing: they run once per packet. Errors are sentinels so
// that callers can count drops by reason.
package offload
