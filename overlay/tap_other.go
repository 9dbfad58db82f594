//go:build !linux

package overlay

import "errors"

// TAP is not supported on this OS.
type TAP struct{ FrameDevice }

// OpenTAP is not supported on this OS.
func OpenTAP(name string) (*TAP, error) { return nil, errTAPLinux }

var errTAPLinux = errors.New("TAP devices are supported on Linux only")

// Name returns "".
func (t *TAP) Name() string { return "" }

// OpenTAPQueues is not supported on this OS.
func OpenTAPQueues(name string, n int) ([]*TAP, error) {
	_, err := OpenTAP(name)
	return nil, err
}

// OffloadTAP is not supported on this OS.
type OffloadTAP struct{ FrameDevice }

// OpenOffloadTAPQueues is not supported on this OS; the error wraps
// ErrNoOffload so that callers fall back to a plain TAP.
func OpenOffloadTAPQueues(name string, mtu, n int) ([]*OffloadTAP, error) {
	return nil, errors.Join(ErrNoOffload, errTAPLinux)
}
