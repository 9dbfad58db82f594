//go:build linux

package hostnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
)

// HealInterval is how often a Healer checks the host setup without being
// told of a change: a backstop for link notifications the kernel dropped
// (a full netlink socket loses them).
const HealInterval = 2 * time.Second

// Healer keeps the host setup of a TAP as it was set up: when someone
// deletes the bridge, detaches the TAP from it, sets either down or
// changes the TAP's MTU, it puts it back, logs what it repaired and counts
// it (Heals). A deleted TAP is created again by the data plane on the same
// queues (package tap); the Healer then attaches it like any new link.
//
// It is level-triggered: each check compares the links with what they
// should be and repairs the difference, so a missed or repeated event
// costs nothing. Checks run on every link notification (netlink's
// RTNLGRP_LINK, via LinkSubscribe: a repair follows a change within
// milliseconds, without polling) and every HealInterval (the backstop).
type Healer struct {
	// OnRepair, when set before Run, is called after each check that
	// repaired something: what the host setup carried beyond the link
	// (a routed TAP's address and routes) is the caller's to put back.
	OnRepair func()

	check func() (repairs []string, err error)
	log   *slog.Logger
	heals atomic.Uint64
}

// Heals returns how many checks repaired something.
func (h *Healer) Heals() uint64 { return h.heals.Load() }

// Run checks and repairs until ctx is done. A failing check is logged and
// tried again at the next event or interval.
func (h *Healer) Run(ctx context.Context) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	var subErr atomic.Value
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { subErr.Store(err) },
	})
	if err != nil {
		h.log.Warn("no link notifications; checking the host setup periodically only", "err", err, "interval", HealInterval)
		updates = nil
	}
	tick := time.NewTicker(HealInterval)
	defer tick.Stop()
	var failed string
	for first := true; ; first = false {
		if !first {
			if !h.wait(ctx, &updates, &subErr, tick.C) {
				return
			}
		}
		repairs, err := h.check()
		if ctx.Err() != nil {
			return // the daemon is taking the setup down
		}
		if len(repairs) > 0 {
			h.heals.Add(1)
			h.log.Warn("host setup repaired", "repairs", strings.Join(repairs, "; "))
			if h.OnRepair != nil {
				h.OnRepair()
			}
		}
		if err != nil && err.Error() != failed {
			h.log.Warn("repairing the host setup failed; will retry", "err", err)
		}
		failed = ""
		if err != nil {
			failed = err.Error()
		}
	}
}

// wait returns when a link changed or the interval passed, and false
// when ctx is done.
func (h *Healer) wait(ctx context.Context, updates *chan netlink.LinkUpdate, subErr *atomic.Value, tick <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case _, ok := <-*updates:
			if !ok {
				h.log.Warn("link notifications ended; checking the host setup periodically only", "err", subErr.Load())
				*updates = nil
				continue
			}
			drain(*updates)
			return true
		case <-tick:
			return true
		}
	}
}

// drain takes what else is queued: one check covers a burst of changes.
func drain(c <-chan netlink.LinkUpdate) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// bridged is the host setup of a TAP on a bridge: the bridge exists and
// is up, the TAP has its link MTU (mtu), is a port of the bridge and is up. It
// remembers the bridge's other ports, so that a bridge deleted under them
// (which detaches them) gets them back when it is created again.
type bridged struct {
	tap, bridge string
	mtu         int
	mu          sync.Mutex
	// ports are the bridge's ports by index, each forgotten when it goes
	// or joins another master.
	ports map[int]bool
}

// NewBridgedHealer returns the Healer of the TAP tap on bridge with the
// link MTU linkMTU, as AttachTAP set them up: an MTU changed under it is
// put back to linkMTU, which may be larger than the overlay MTU.
func NewBridgedHealer(tap, bridge string, linkMTU int, log *slog.Logger) *Healer {
	b := &bridged{tap: tap, bridge: bridge, mtu: linkMTU, ports: make(map[int]bool)}
	return &Healer{check: b.ensure, log: log}
}

// ensure makes the links what they should be and says what it changed.
// The TAP missing is not an error: its data plane is creating it again.
func (b *bridged) ensure() (repairs []string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	br, err := netlink.LinkByName(b.bridge)
	created := false
	switch {
	case errors.As(err, new(netlink.LinkNotFoundError)):
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.bridge}}); err != nil {
			return nil, fmt.Errorf("creating bridge %s: %w", b.bridge, err)
		}
		if br, err = netlink.LinkByName(b.bridge); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", b.bridge, err)
		}
		created = true
		repairs = append(repairs, "bridge "+b.bridge+" created")
	case err != nil:
		return nil, fmt.Errorf("bridge %s: %w", b.bridge, err)
	case br.Type() != "bridge":
		return nil, fmt.Errorf("%s exists and is a %s, not a bridge", b.bridge, br.Type())
	}
	links, err := netlink.LinkList()
	if err != nil {
		return repairs, fmt.Errorf("listing links: %w", err)
	}
	var tap netlink.Link
	exists := make(map[int]bool, len(links))
	for _, l := range links {
		a := l.Attrs()
		exists[a.Index] = true
		switch {
		case a.Name == b.tap:
			tap = l
		case a.MasterIndex == br.Attrs().Index:
			b.ports[a.Index] = true
		case a.MasterIndex != 0:
			delete(b.ports, a.Index)
		case created && b.ports[a.Index]:
			// A port of the bridge that was deleted: back onto the new one.
			if err := netlink.LinkSetMaster(l, br); err != nil {
				return repairs, fmt.Errorf("attaching %s to bridge %s again: %w", a.Name, b.bridge, err)
			}
			repairs = append(repairs, a.Name+" attached to "+b.bridge+" again")
		}
	}
	for i := range b.ports {
		if !exists[i] {
			delete(b.ports, i)
		}
	}
	if tap != nil {
		r, err := setPort(tap, br, b.mtu)
		repairs = append(repairs, r...)
		if err != nil {
			return repairs, err
		}
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(br); err != nil {
			return repairs, fmt.Errorf("bringing %s up: %w", b.bridge, err)
		}
		if !created {
			repairs = append(repairs, "bridge "+b.bridge+" up")
		}
	}
	return repairs, nil
}

// setPort gives link the MTU, makes it a port of br and brings it up,
// and says what it changed.
func setPort(link, br netlink.Link, mtu int) (repairs []string, err error) {
	a := link.Attrs()
	if a.MTU != mtu {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return repairs, fmt.Errorf("setting MTU %d on %s: %w", mtu, a.Name, err)
		}
		repairs = append(repairs, fmt.Sprintf("%s MTU %d", a.Name, mtu))
	}
	if a.MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMaster(link, br); err != nil {
			return repairs, fmt.Errorf("attaching %s to bridge %s: %w", a.Name, br.Attrs().Name, err)
		}
		repairs = append(repairs, a.Name+" attached to "+br.Attrs().Name)
	}
	if a.Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return repairs, fmt.Errorf("bringing %s up: %w", a.Name, err)
		}
		repairs = append(repairs, a.Name+" up")
	}
	return repairs, nil
}
