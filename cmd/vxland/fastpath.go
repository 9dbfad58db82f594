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

// openUnderlay opens the underlay socket with the offloads --offload asks
// for; what the kernel refuses is turned off with one log line.
func openUnderlay(cfg *config, local netip.AddrPort, log *slog.Logger) (overlay.PacketConn, error) {
	o := cfg.Offload
	if !o.GSO && !o.GRO && !o.Batch {
		return overlay.ListenUDP(local)
	}
	opt := overlay.BatchOptions{Batch: 1, GSO: o.GSO, GRO: o.GRO, SourcePorts: sourcePorts}
	if o.Batch {
		opt.Batch = batchSize
	}
	c, refused, err := overlay.ListenBatchUDP(local, opt)
	if err != nil {
		return nil, err
	}
	for _, r := range refused {
		log.Warn("the kernel refused a socket offload; continuing without it", "offload", r)
	}
	return c, nil
}

// tapDevice is a TAP, plain or with offloads.
type tapDevice interface {
	overlay.FrameDevice
	Name() string
}

// openTAP opens the TAP with segmentation offload when --offload asks for
// it and the kernel agrees, else a plain one.
func openTAP(cfg *config, mtu int, log *slog.Logger) (tapDevice, error) {
	if cfg.Offload.TSO {
		t, err := overlay.OpenOffloadTAP(cfg.TAP, mtu)
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, overlay.ErrNoOffload) {
			return nil, err
		}
		log.Warn("the kernel refused TAP offloads; using a plain TAP", "err", err)
	}
	return overlay.OpenTAP(cfg.TAP)
}
