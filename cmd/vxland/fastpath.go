package main

import (
	"errors"
	"log/slog"
	"net/netip"

	"github.com/vxland/vxland/overlay"
)

// batchSize is how many datagrams one recvmmsg or sendmmsg moves.
const batchSize = 64

// sourcePorts is how many UDP source ports the fast path sends from: each
// inner flow hashes to one of them (RFC 7348 §5), so that the underlay's
// ECMP and receive-side scaling spread flows while keeping each in order.
const sourcePorts = 16

// openUnderlay opens the underlay sockets, one per queue, with the
// offloads --offload asks for; what the kernel refuses is turned off with
// one log line.
func openUnderlay(cfg *config, local netip.AddrPort, log *slog.Logger) ([]overlay.PacketConn, error) {
	o := cfg.Offload
	if !o.GSO && !o.GRO && !o.Batch {
		cs, err := overlay.ListenUDPQueues(local, cfg.Queues)
		if err != nil {
			return nil, err
		}
		if err := overlay.OpenSourcePorts(cs, sourcePorts); err != nil {
			for _, c := range cs {
				c.Close()
			}
			return nil, err
		}
		return conns(cs), nil
	}
	opt := overlay.BatchOptions{Batch: 1, GSO: o.GSO, GRO: o.GRO, SourcePorts: sourcePorts}
	if o.Batch {
		opt.Batch = batchSize
	}
	cs, refused, err := overlay.ListenBatchUDPQueues(local, opt, cfg.Queues)
	if err != nil {
		return nil, err
	}
	for _, r := range refused {
		log.Warn("the kernel refused a socket offload; continuing without it", "offload", r)
	}
	return conns(cs), nil
}

func conns[C overlay.PacketConn](cs []C) []overlay.PacketConn {
	out := make([]overlay.PacketConn, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}

func devices[D overlay.FrameDevice](ds []D) []overlay.FrameDevice {
	out := make([]overlay.FrameDevice, len(ds))
	for i, d := range ds {
		out[i] = d
	}
	return out
}

// tap is the TAP device: its name and its queues.
type tap struct {
	name   string
	queues []overlay.FrameDevice
}

// Name returns the interface name.
func (t *tap) Name() string { return t.name }

// Close closes every queue, which removes the device.
func (t *tap) Close() {
	for _, q := range t.queues {
		q.Close()
	}
}

// openTAP opens the TAP's queues with segmentation offload when --offload
// asks for it and the kernel agrees, else plain ones.
func openTAP(cfg *config, mtu int, log *slog.Logger) (*tap, error) {
	if cfg.Offload.TSO {
		qs, err := overlay.OpenOffloadTAPQueues(cfg.TAP, mtu, cfg.Queues)
		if err == nil {
			return &tap{name: qs[0].Name(), queues: devices(qs)}, nil
		}
		if !errors.Is(err, overlay.ErrNoOffload) {
			return nil, err
		}
		log.Warn("the kernel refused TAP offloads; using a plain TAP", "err", err)
	}
	qs, err := overlay.OpenTAPQueues(cfg.TAP, cfg.Queues)
	if err != nil {
		return nil, err
	}
	return &tap{name: qs[0].Name(), queues: devices(qs)}, nil
}

// queues pairs the TAP's queues with the underlay's sockets.
func queues(t *tap, cs []overlay.PacketConn) []overlay.Queue {
	qs := make([]overlay.Queue, len(cs))
	for i := range qs {
		qs[i] = overlay.Queue{Device: t.queues[i], Conn: cs[i]}
	}
	return qs
}

func closeConns(cs []overlay.PacketConn) {
	for _, c := range cs {
		c.Close()
	}
}
