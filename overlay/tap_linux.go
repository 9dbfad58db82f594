//go:build linux

package overlay

import (
	"fmt"

	"github.com/songgao/water"
)

// TAP is a Linux TAP device that moves one Ethernet frame per system call.
// It is removed by the kernel when it is closed.
type TAP struct {
	ifce *water.Interface
}

var _ FrameDevice = (*TAP)(nil)

// OpenTAP creates (or attaches to) the TAP device called name.
func OpenTAP(name string) (*TAP, error) {
	ifce, err := water.New(water.Config{
		DeviceType:             water.TAP,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name},
	})
	if err != nil {
		return nil, fmt.Errorf("creating TAP device %q: %w", name, err)
	}
	return &TAP{ifce: ifce}, nil
}

// OpenTAPQueues is OpenTAP for a multi-queue TAP (IFF_MULTI_QUEUE) with n
// queues, each a device of its own. The device goes away when every queue
// is closed.
func OpenTAPQueues(name string, n int) ([]*TAP, error) {
	if n <= 1 {
		t, err := OpenTAP(name)
		if err != nil {
			return nil, err
		}
		return []*TAP{t}, nil
	}
	qs := make([]*TAP, 0, n)
	for range n {
		ifce, err := water.New(water.Config{
			DeviceType:             water.TAP,
			PlatformSpecificParams: water.PlatformSpecificParams{Name: name, MultiQueue: true},
		})
		if err != nil {
			for _, q := range qs {
				q.Close()
			}
			return nil, fmt.Errorf("creating TAP device %q queue %d: %w", name, len(qs), err)
		}
		name = ifce.Name()
		qs = append(qs, &TAP{ifce: ifce})
	}
	return qs, nil
}

// Name returns the device's interface name.
func (t *TAP) Name() string { return t.ifce.Name() }

// Read reads one frame into bufs[0][offset:].
func (t *TAP) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.ifce.Read(bufs[0][offset:])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

// Write writes each bufs[i][offset:] as one frame.
func (t *TAP) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if _, err := t.ifce.Write(b[offset:]); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

// BatchSize is 1: a plain TAP moves one frame per read.
func (t *TAP) BatchSize() int { return 1 }

// Close closes the device, which unblocks a pending Read and removes it.
func (t *TAP) Close() error { return t.ifce.Close() }
