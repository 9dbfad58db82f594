// Package offload does in software, on Ethernet frames, the work that NICs
// and the kernel's virtio offloads normally do: completing and verifying
// TCP/UDP checksums, and cutting TCP super-frames into MTU-sized segments.
//
// # Why vxland needs it
//
// vxland's receive path takes the inner Ethernet frame out of each VXLAN
// datagram and writes it to a TAP device. When the sending VTEP is the Linux
// kernel's own vxlan device on a veth underlay, two things reach userspace
// that a real wire would never carry:
//
//   - Partial inner checksums. veth claims checksum offload, so the kernel
//     sender leaves the inner TCP or UDP checksum as the partial
//     (pseudo-header) sum it would hand to a NIC to finish. The skb flag that
//     says "the checksum is still to be done" does not survive into a
//     userspace socket. Written as-is to a TAP, the frame is counted as a
//     checksum error by the receiving container and TCP stalls. The same can
//     happen in production, for instance between VMs on one host with virtio
//     offloads, so it is not only a test-bench artefact. FixChecksum verifies
//     the checksum and, when the field holds exactly the pseudo-header sum,
//     completes it in place; anything else that fails verification is corrupt
//     and is reported so the caller can count and drop it.
//
//   - Oversized datagrams. The kernel sender can pass a whole tunnel-GSO
//     packet of up to 64 KB through the veth unsegmented, so one VXLAN
//     datagram carries an inner TCP frame far larger than the overlay MTU.
//     A plain TAP (no virtio-net header) accepts at most an MTU-sized frame,
//     so SegmentTCP does what the NIC would have done: TCP segmentation
//     (software TSO).
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
// receiving kernel to judge. The same primitives are meant to serve the
// transmit side later (segmenting TSO frames read from a TAP) and receive
// coalescing (GRO), so nothing here knows about VXLAN, sockets or devices.
//
// Every function works on caller-owned buffers, treats its input as hostile
// network data (every length is bounds-checked; no input makes it panic),
// and allocates nothing: they run once per packet. Errors are sentinels so
// that callers can count drops by reason.
package offload
