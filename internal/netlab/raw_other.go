//go:build !linux

package netlab

// SendFrames needs Linux's packet sockets.
func (n *NS) SendFrames(string, [][]byte) error { return n.do(nil) }

// SendFramesAt needs Linux's packet sockets.
func (n *NS) SendFramesAt(string, [][]byte, int) error { return n.do(nil) }

// FrameCounter needs Linux's packet sockets.
type FrameCounter struct{}

// CountFrames needs Linux's packet sockets.
func (n *NS) CountFrames(string, uint16) (*FrameCounter, error) { return nil, n.do(nil) }

// Count needs Linux's packet sockets.
func (c *FrameCounter) Count() (int, error) { return 0, nil }

// Close needs Linux's packet sockets.
func (c *FrameCounter) Close() error { return nil }
