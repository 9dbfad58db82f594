// Package udp is the underlay socket of the data plane: one UDP socket
// type whose options select how much it moves per system call.
//
// With Options{Batch: 1} it is a plain socket, one datagram per call.
// A larger Batch reads and sends with recvmmsg and sendmmsg, GSO sends a
// run of equal-sized datagrams as one message (UDP_SEGMENT) and GRO has
// the kernel hand over a run as one read (UDP_GRO). Whatever the mode, the
// socket waits through package poller, so that a forwarding thread can
// wait for its TAP queue and its socket at once.
//
// The socket owns its offloads: one the kernel refuses when the socket
// opens is turned off with a log line, and when the kernel refuses to
// segment a send (a path whose device cannot checksum, say) the socket
// turns GSO off and sends the rest one datagram at a time. Callers never
// see either.
package udp

import (
	"log/slog"
	"net/netip"
)

// Options selects how a Conn moves datagrams.
type Options struct {
	// Batch is how many messages one recvmmsg or sendmmsg moves; 1 (or
	// less) is a plain socket.
	Batch int
	// GSO sends runs of equal-sized datagrams to one destination as one
	// message with UDP_SEGMENT.
	GSO bool
	// GRO asks the kernel to coalesce received datagrams (UDP_GRO).
	GRO bool
	// SourcePorts, when above zero, opens that many sending sockets
	// bound to ports of the dynamic range; SendFlow picks one by the
	// hash of the inner flow, so that each flow has a stable source
	// port, as RFC 7348 §5 asks and kernel VXLAN does.
	SourcePorts int
	// Logger hears, once each, of the offloads the kernel refuses. Nil
	// discards them.
	Logger *slog.Logger
	// Outer sets the fields of the outer IP and UDP headers that the
	// kernel writes for every datagram sent.
	Outer Outer
	// Multicast, when it names groups, has the sockets receive and send
	// on multicast groups (Multicast).
	Multicast Multicast
}

// Multicast is the underlay multicast of the kernel's `ip link add type
// vxlan group G dev D`: the sockets join Groups on the interface of index
// Iface and send to them through it.
//
// A socket bound to a unicast address does not receive datagrams sent to
// a group, so the queue sockets are bound to the wildcard address instead
// (as the kernel's VXLAN socket is); unicast datagrams to the port still
// spread over them by SO_REUSEPORT. Multicast delivery does not spread:
// the kernel hands a copy to every socket on the port that takes it. So
// only the first queue's socket joins the groups, and every queue socket
// turns off IP_MULTICAST_ALL (IPV6_MULTICAST_ALL), which would have it
// receive every group that any socket of the host joined: each datagram
// to a group is read once, by the first queue. The sending sockets stay
// bound to the unicast address, so that what a peer learns from is this
// VTEP's address.
type Multicast struct {
	Groups []netip.Addr
	// Iface is the interface index the groups are joined and sent on
	// (IP_MULTICAST_IF, IPV6_MULTICAST_IF).
	Iface int
}

// Outer holds the settings of the outer headers, named as those of
// iproute2's `ip link add type vxlan`. The zero value is the kernel's
// defaults with DF set.
type Outer struct {
	// TTL is the IPv4 TTL or IPv6 hop limit, 1 to 255; 0 leaves the
	// kernel's default (net.ipv4.ip_default_ttl, 64). It is the TTL of
	// datagrams to a multicast group too (IP_MULTICAST_TTL,
	// IPV6_MULTICAST_HOPS); 0 leaves the kernel's 1 for them, as its VXLAN
	// sends to a group when no ttl is set.
	TTL int
	// TOS is the IPv4 TOS byte or IPv6 traffic class (DSCP and ECN).
	TOS uint8
	// NoDontFragment lets datagrams leave without DF and be fragmented
	// by the kernel when larger than the path MTU (IP_PMTUDISC_DONT).
	NoDontFragment bool
	// NoChecksum sends IPv4 datagrams with a zero UDP checksum
	// (SO_NO_CHECK), which RFC 7348 §5 allows. IPv6 always carries one
	// (RFC 8200 §8.1): the option does nothing there. The kernel does
	// not segment a UDP send without checksum, so it turns GSO off.
	NoChecksum bool
	// PerDatagram, when set, is asked for each datagram sent: the TTL
	// and TOS it returns replace TTL and TOS, through control messages
	// (IP_TTL and IP_TOS, IPV6_HOPLIMIT and IPV6_TCLASS). The datagrams
	// of one UDP_SEGMENT message share one pair, so a run is cut where
	// they change. The TTL must be 1 to 255. It must not keep the
	// datagram, nor allocate.
	PerDatagram func(datagram []byte) (ttl, tos uint8)
	// DontFragment, when set, is asked for each datagram sent whether it
	// leaves with DF (IPv6: may not be fragmented); it replaces
	// NoDontFragment, which then only sets an IPv4 socket's state
	// before the first send. IPv6 takes it per message (IPV6_DONTFRAG). Linux
	// offers no per-datagram DF on an IPv4 UDP socket, so the socket's
	// IP_MTU_DISCOVER is switched between IP_PMTUDISC_DO and
	// IP_PMTUDISC_DONT where DF changes from one message to the next:
	// a batch is cut there, and a stream whose DF does not change costs
	// no system call more. It must not keep the datagram, nor allocate.
	DontFragment func(datagram []byte) bool
}

// maxGSOSegments bounds the datagrams of one UDP_SEGMENT send and of one
// UDP_GRO read. Recent kernels take up to 128; we stay at the 64 of
// older releases' UDP_MAX_SEGMENTS.
const maxGSOSegments = 64

// socketBuffer is the send and receive buffer size asked of the kernel:
// bursts of a fast sender must not overflow a receive queue that the
// forwarding goroutine has not yet drained.
const socketBuffer = 4 << 20

// Source ports for SendFlow come from the dynamic range, as RFC 7348 §5
// recommends.
const (
	srcPortMin = 49152
	srcPortMax = 65535
)
