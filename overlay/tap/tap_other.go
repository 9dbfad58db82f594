//go:build !linux

package tap

import (
	"errors"
	"fmt"

	"github.com/vxland/vxland/overlay/poller"
)

var errLinuxOnly = fmt.Errorf("tap: TAP devices are supported on Linux only: %w", errors.ErrUnsupported)

// Device is not supported on this OS.
type Device struct{}

// Open is not supported on this OS.
func Open(name string, opt Options) (*Device, error) { return nil, errLinuxOnly }

// Name returns "".
func (d *Device) Name() string { return "" }

// Adopted returns false.
func (d *Device) Adopted() bool { return false }

// Queues returns nil.
func (d *Device) Queues() []*Queue { return nil }

// Unpersist does nothing.
func (d *Device) Unpersist() error { return nil }

// Close does nothing.
func (d *Device) Close() error { return nil }

// Queue is not supported on this OS.
type Queue struct{}

// Read is not supported on this OS.
func (q *Queue) Read(bufs [][]byte, sizes []int, offset int) (int, error) { return 0, errLinuxOnly }

// TryRead is not supported on this OS.
func (q *Queue) TryRead(bufs [][]byte, sizes []int, offset int) (int, error) { return 0, errLinuxOnly }

// Write is not supported on this OS.
func (q *Queue) Write(bufs [][]byte, offset int) (int, error) { return 0, errLinuxOnly }

// BatchSize returns 1.
func (q *Queue) BatchSize() int { return 1 }

// FrameLen returns 0.
func (q *Queue) FrameLen() int { return 0 }

// FD returns nil.
func (q *Queue) FD() *poller.FD { return nil }

// ReportDrops reports nothing.
func (q *Queue) ReportDrops(add func(reason string, n uint64)) {}

// Close does nothing.
func (q *Queue) Close() error { return nil }
