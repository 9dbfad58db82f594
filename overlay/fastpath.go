package overlay

import "errors"

// ErrNoOffload is returned when the kernel refuses the TAP offloads.
var ErrNoOffload = errors.New("TAP offloads refused")

// BatchOptions selects the offloads of a BatchUDPConn.
type BatchOptions struct {
	// Batch is how many messages one recvmmsg or sendmmsg moves.
	Batch int
	// GSO sends runs of equal-sized datagrams to one destination as one
	// message with UDP_SEGMENT.
	GSO bool
	// GRO asks the kernel to coalesce received datagrams (UDP_GRO).
	GRO bool
	// SourcePorts, when above zero, opens that many sending sockets bound
	// to ports in 49152-65535 (RFC 7348 §5); SendFlow picks one by the
	// hash of the inner flow, so each flow has a stable source port.
	SourcePorts int
}

// Source ports for SendFlow come from the dynamic range, as RFC 7348 §5
// recommends.
const (
	srcPortMin = 49152
	srcPortMax = 65535
)
