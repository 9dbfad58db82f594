//go:build !linux

package netlab

// SendFrames needs Linux's packet sockets.
func (n *NS) SendFrames(string, [][]byte) error { return n.do(nil) }

// SendFramesAt needs Linux's packet sockets.
func (n *NS) SendFramesAt(string, [][]byte, int) error { return n.do(nil) }
