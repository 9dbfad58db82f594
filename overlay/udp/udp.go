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

import "log/slog"

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
