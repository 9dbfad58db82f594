package udp_test

import (
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/udp"
)

// The data plane serves a Conn from the thread of its TAP queue, sends
// flows from source ports of their own, and gives a Conn that reads views
// no buffers.
var (
	_ overlay.PolledConn = (*udp.Conn)(nil)
	_ overlay.FlowSender = (*udp.Conn)(nil)
	_ overlay.ViewReader = (*udp.Conn)(nil)
)
