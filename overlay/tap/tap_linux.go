//go:build linux

package tap

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/overlay/offload"
	"github.com/vxland/vxland/overlay/poller"
)

// Device is a TAP device and its queues. The kernel removes the device
// when its last queue is closed.
type Device struct {
	name   string
	queues []*Queue
}

// Open creates (or attaches to) the TAP device name with opt.Queues
// queues. Every queue after the first attaches to the device the first
// created, so a name pattern ("vx%d") gives one device. On error, the
// queues opened so far are closed.
func Open(name string, opt Options) (*Device, error) {
	if opt.MTU < minMTU || opt.MTU > maxMTU {
		return nil, fmt.Errorf("TAP %s: MTU %d outside %d..%d", name, opt.MTU, minMTU, maxMTU)
	}
	n := max(opt.Queues, 1)
	d := &Device{name: name, queues: make([]*Queue, 0, n)}
	for i := range n {
		q, qname, err := openQueue(d.name, opt, n > 1)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("TAP %s queue %d: %w", name, i, err)
		}
		d.name = qname
		d.queues = append(d.queues, q)
	}
	return d, nil
}

// Name returns the interface name.
func (d *Device) Name() string { return d.name }

// Queues returns the device's queues, one descriptor each.
func (d *Device) Queues() []*Queue { return d.queues }

// Close closes every queue, which removes the device.
func (d *Device) Close() error {
	var errs []error
	for _, q := range d.queues {
		errs = append(errs, q.Close())
	}
	return errors.Join(errs...)
}

// openQueue opens one queue of the TAP device name, a non-blocking
// descriptor with IFF_VNET_HDR and the offloads if opt asks for them, and
// returns it with the device's name.
func openQueue(name string, opt Options, multiQueue bool) (*Queue, string, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	fail := func(what string, err error) (*Queue, string, error) {
		unix.Close(fd)
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fail("name", err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if opt.Offload {
		flags |= unix.IFF_VNET_HDR
	}
	if multiQueue {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fail("TUNSETIFF", err)
	}
	uso := false
	if opt.Offload {
		if uso, err = enableOffloads(fd); err != nil {
			return fail("offloads", err)
		}
	}
	pfd, err := poller.NewFD(fd)
	if err != nil {
		return fail("poller", err)
	}
	return newQueue(pfd, opt, uso), ifr.Name(), nil
}

// enableOffloads sets the virtio-net header's size and asks for checksum
// and segmentation offload, and reports whether the kernel took UDP
// segmentation offload (Linux 6.2+): the kernel then hands over
// UDP_SEGMENT bursts whole and takes USO super-frames, which Write builds
// from runs of small datagrams. Older kernels refuse the USO flags with
// EINVAL and get TCP offloads only. An error wraps ErrNoOffload.
func enableOffloads(fd int) (uso bool, err error) {
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, offload.VirtioNetHdrLen); err != nil {
		return false, fmt.Errorf("TUNSETVNETHDRSZ: %w: %w", ErrNoOffload, err)
	}
	tcp := unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tcp|unix.TUN_F_USO4|unix.TUN_F_USO6); err == nil {
		return true, nil
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tcp); err != nil {
		return false, fmt.Errorf("TUNSETOFFLOAD: %w: %w", ErrNoOffload, err)
	}
	return false, nil
}
