//go:build linux

package tap

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/overlay/offload"
	"github.com/vxland/vxland/overlay/poller"
)

// Device is a TAP device and its queues. Without Options.Persist the
// kernel removes the device when its last queue is closed; with it the
// device stays, with its MAC, MTU and bridge port, for the next Open.
type Device struct {
	name   string
	queues []*Queue
	opt    Options
	flags  uint16           // of TUNSETIFF
	mac    net.HardwareAddr // given back to a recreated device
	log    *slog.Logger
	// adopted is set when Open found the device already there, left by
	// an earlier run, and took it over.
	adopted bool
	// mu serialises reattach.
	mu sync.Mutex
}

// Open creates the TAP device name with opt.Queues queues, or adopts the
// device of that name that is already there (a persistent one left by an
// earlier run). A device whose flags do not fit opt (TUN instead of TAP,
// the virtio-net header, one queue or several) is deleted and created
// again, with one log line; a device with queues attached belongs to
// someone else and is an error. Every queue after the first attaches to
// the device the first created, so a name pattern ("vx%d") gives one
// device. On error, the queues opened so far are closed.
func Open(name string, opt Options) (*Device, error) {
	if opt.MTU < minMTU || opt.MTU > maxMTU {
		return nil, fmt.Errorf("TAP %s: MTU %d outside %d..%d", name, opt.MTU, minMTU, maxMTU)
	}
	n := max(opt.Queues, 1)
	d := &Device{name: name, queues: make([]*Queue, 0, n), opt: opt, log: opt.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.flags = unix.IFF_TAP | unix.IFF_NO_PI
	if opt.Offload {
		d.flags |= unix.IFF_VNET_HDR
	}
	if n > 1 {
		d.flags |= unix.IFF_MULTI_QUEUE
	}
	if !strings.Contains(name, "%") {
		if err := d.removeMisfit(); err != nil {
			return nil, err
		}
	}
	for i := range n {
		q, err := d.openQueue()
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("TAP %s queue %d: %w", name, i, err)
		}
		d.queues = append(d.queues, q)
	}
	err := d.queues[0].fd.Control(d.keep)
	if err == nil {
		err = d.readMAC()
	}
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("TAP %s: %w", d.name, err)
	}
	return d, nil
}

// removeMisfit deletes an existing device called d.name that d cannot
// adopt, and refuses one that another process has queues on.
func (d *Device) removeMisfit() error {
	link, err := netlink.LinkByName(d.name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("TAP %s: %w", d.name, err)
	}
	tt, ok := link.(*netlink.Tuntap)
	if !ok {
		return fmt.Errorf("TAP %s: the interface exists and is a %s, not a TAP", d.name, link.Type())
	}
	if inUse(tt) {
		return fmt.Errorf("TAP %s is in use: its queues are attached by another process", d.name)
	}
	var misfits []string
	if tt.Mode != netlink.TUNTAP_MODE_TAP {
		misfits = append(misfits, "a TUN, not a TAP")
	}
	if tt.Flags&netlink.TUNTAP_NO_PI == 0 {
		misfits = append(misfits, "packet information on")
	}
	if has, want := tt.Flags&netlink.TUNTAP_VNET_HDR != 0, d.flags&unix.IFF_VNET_HDR != 0; has != want {
		misfits = append(misfits, fmt.Sprintf("vnet_hdr %s, want %s", onOff(has), onOff(want)))
	}
	if has, want := tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0, d.flags&unix.IFF_MULTI_QUEUE != 0; has != want {
		misfits = append(misfits, fmt.Sprintf("multi_queue %s, want %s", onOff(has), onOff(want)))
	}
	if len(misfits) == 0 {
		d.adopted = true
		d.log.Info("adopting the existing TAP", "tap", d.name)
		return nil
	}
	d.log.Warn("recreating the existing TAP: its flags do not fit", "tap", d.name, "misfits", strings.Join(misfits, "; "))
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("deleting TAP %s to recreate it: %w", d.name, err)
	}
	return nil
}

// inUse reports whether a process has queues of tt attached. A device
// that is not persistent has (the kernel removes it with its last queue);
// the kernel counts the queues of a multi-queue one; a single-queue one
// refuses a second queue with EBUSY, which a probe with its own flags
// (which then change nothing) finds out.
func inUse(tt *netlink.Tuntap) bool {
	if tt.NonPersist || tt.Queues > 0 {
		return true
	}
	if tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 {
		return false
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false // Open fails on its own, naming the cause
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(tt.Name)
	if err != nil {
		return false
	}
	flags := uint16(unix.IFF_NO_PI)
	if tt.Mode == netlink.TUNTAP_MODE_TAP {
		flags |= unix.IFF_TAP
	} else {
		flags |= unix.IFF_TUN
	}
	if tt.Flags&netlink.TUNTAP_VNET_HDR != 0 {
		flags |= unix.IFF_VNET_HDR
	}
	if tt.Flags&netlink.TUNTAP_NO_PI == 0 {
		flags &^= unix.IFF_NO_PI
	}
	ifr.SetUint16(flags)
	return errors.Is(unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr), unix.EBUSY)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// Name returns the interface name.
func (d *Device) Name() string { return d.name }

// Adopted reports whether Open took over a device that was already there
// (a persistent one an earlier run left) instead of creating it.
func (d *Device) Adopted() bool { return d.adopted }

// Queues returns the device's queues, one descriptor each.
func (d *Device) Queues() []*Queue { return d.queues }

// Close closes every queue. Without Options.Persist this removes the
// device; with it the device stays (ip link del removes it).
func (d *Device) Close() error {
	var errs []error
	for _, q := range d.queues {
		errs = append(errs, q.Close())
	}
	return errors.Join(errs...)
}

// openQueue opens one queue of the device, a non-blocking descriptor, and
// attaches it to the device.
func (d *Device) openQueue() (*Queue, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	name, uso, err := d.attach(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	pfd, err := poller.NewFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("poller: %w", err)
	}
	d.name = name // a pattern's expansion
	q := newQueue(pfd, d.opt, uso)
	q.dev = d
	return q, nil
}

// attach attaches the descriptor fd to the device called d.name, creating
// it if there is none, with IFF_VNET_HDR and the offloads if d.opt asks
// for them. It returns the device's name and whether the kernel took UDP
// segmentation offload.
func (d *Device) attach(fd int) (name string, uso bool, err error) {
	ifr, err := unix.NewIfreq(d.name)
	if err != nil {
		return "", false, fmt.Errorf("name: %w", err)
	}
	ifr.SetUint16(d.flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return "", false, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if d.flags&unix.IFF_VNET_HDR != 0 {
		uso, err = enableOffloads(fd)
	}
	return ifr.Name(), uso, err
}

// Unpersist makes the device go with its last queue, as without
// Options.Persist: for a TAP that is no longer wanted, whoever closes its
// queues.
func (d *Device) Unpersist() error {
	if !d.opt.Persist || len(d.queues) == 0 {
		return nil
	}
	return d.queues[0].fd.Control(func(fd int) error {
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0); err != nil {
			return fmt.Errorf("TUNSETPERSIST 0: %w", err)
		}
		return nil
	})
}

// keep sets the device persistent or not, as d.opt says; fd is one of
// its queues.
func (d *Device) keep(fd int) error {
	persist := 0
	if d.opt.Persist {
		persist = 1
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, persist); err != nil {
		return fmt.Errorf("TUNSETPERSIST %d: %w", persist, err)
	}
	return nil
}

func (d *Device) readMAC() error {
	link, err := netlink.LinkByName(d.name)
	if err != nil {
		return err
	}
	d.mac = link.Attrs().HardwareAddr
	return nil
}

// reattach attaches the queues again after the device was deleted under
// them (ip link del), which leaves each descriptor detached: reads fail
// with EBADFD and poll reports POLLERR. The same descriptors take
// TUNSETIFF again, which creates the device anew; it gets the old MAC
// back and is persistent as before. The host setup (bridge, MTU, up) is
// package hostnet's, which sees the new device appear.
//
// Why under the running data plane, and not a restart of it: the core's
// threads, their poll sets and the underlay sockets keep their
// descriptors, so that the counters, the learned FDB and the underlay
// carry on and nothing is closed and reopened; the core does not know.
// The first queue to read EBADFD attaches them all; the others then find
// theirs attached.
func (d *Device) reattach() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	reattached := 0
	for i, q := range d.queues {
		err := q.fd.Control(func(fd int) error {
			ifr, err := unix.NewIfreq("")
			if err != nil {
				return err
			}
			if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); !errors.Is(err, unix.EBADFD) {
				return err // attached (nil), or another failure
			}
			if _, _, err := d.attach(fd); err != nil {
				return err
			}
			reattached++
			if reattached > 1 {
				return nil
			}
			return d.keep(fd)
		})
		if err != nil {
			return fmt.Errorf("TAP %s: attaching queue %d again after the device was deleted: %w", d.name, i, err)
		}
	}
	if reattached == 0 {
		return nil
	}
	link, err := netlink.LinkByName(d.name)
	if err == nil {
		err = netlink.LinkSetHardwareAddr(link, d.mac)
	}
	if err != nil {
		return fmt.Errorf("TAP %s: giving it back its address %s: %w", d.name, d.mac, err)
	}
	d.log.Warn("TAP was deleted; created it again on the same queues", "tap", d.name, "mac", d.mac, "queues", reattached)
	return nil
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
