//go:build !linux

package overlay

import "errors"

// TAP is not supported on this OS.
type TAP struct{ FrameDevice }

// OpenTAP is not supported on this OS.
func OpenTAP(name string) (*TAP, error) {
	return nil, errors.New("TAP devices are supported on Linux only")
}

// Name returns "".
func (t *TAP) Name() string { return "" }

// OpenTAPQueues is not supported on this OS.
func OpenTAPQueues(name string, n int) ([]*TAP, error) {
	_, err := OpenTAP(name)
	return nil, err
}
