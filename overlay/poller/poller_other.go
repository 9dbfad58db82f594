//go:build !linux

package poller

import "errors"

// FD is not supported on this OS.
type FD struct{}

// NewFD is not supported on this OS.
func NewFD(fd int) (*FD, error) {
	return nil, errors.New("poller: supported on Linux only")
}

// Close does nothing.
func (f *FD) Close() error { return nil }
