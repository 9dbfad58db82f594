package main

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/tap"
	"github.com/vxland/vxland/overlay/udp"
)

// batchSize is how many datagrams one recvmmsg or sendmmsg moves.
const batchSize = 64

// sourcePorts is how many UDP source ports the fast path sends from: each
// inner flow hashes to one of them (RFC 7348 §5), so that the underlay's
// ECMP and receive-side scaling spread flows while keeping each in order.
const sourcePorts = 16

// openUnderlay opens the underlay sockets, one per queue, with the
// offloads --offload asks for; the sockets log what the kernel refuses
// and go on without it. They join the VNIs' multicast groups on the
// underlay interface iface.
func openUnderlay(cfg *config, local netip.AddrPort, iface string, log *slog.Logger) ([]overlay.PacketConn, error) {
	o := cfg.Offload
	opt := udp.Options{Batch: 1, GSO: o.GSO, GRO: o.GRO, SourcePorts: sourcePorts, Logger: log, Outer: cfg.Outer.udp()}
	if o.Batch {
		opt.Batch = batchSize
	}
	for _, p := range cfg.VNIs {
		if p.Group.IsValid() && !slices.Contains(opt.Multicast.Groups, p.Group) {
			opt.Multicast.Groups = append(opt.Multicast.Groups, p.Group)
		}
	}
	if len(opt.Multicast.Groups) > 0 {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return nil, usagef("--iface %s: %v", iface, err)
		}
		opt.Multicast.Iface = ifi.Index
	}
	cs, err := udp.Listen(local, cfg.Queues, opt)
	if err != nil {
		return nil, err
	}
	return conns(cs), nil
}

// udp returns the settings of the underlay sockets: fixed values as
// socket options, inherited ones per datagram from its inner IP header.
func (o outerHeader) udp() udp.Outer {
	u := udp.Outer{TTL: o.TTL, TOS: o.TOS, NoDontFragment: o.NoDF, NoChecksum: o.NoChecksum}
	if o.InheritDF {
		u.DontFragment = func(datagram []byte) bool {
			_, _, df, _ := encap.InnerFields(datagram)
			return df
		}
	}
	if !o.InheritTTL && !o.InheritTOS {
		return u
	}
	u.PerDatagram = func(datagram []byte) (ttl, tos uint8) {
		ttl, tos = uint8(o.TTL), o.TOS
		innerTTL, innerTOS, _, ok := encap.InnerFields(datagram)
		if !ok {
			return ttl, tos
		}
		// An inner TTL of 0 takes the default, as Linux's
		// tunnels do: the kernel refuses a TTL of 0.
		if o.InheritTTL && innerTTL != 0 {
			ttl = innerTTL
		}
		if o.InheritTOS {
			tos = innerTOS
		}
		return ttl, tos
	}
	return u
}

func conns[C overlay.PacketConn](cs []C) []overlay.PacketConn {
	out := make([]overlay.PacketConn, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}

// openTAP opens the queues of the TAP name with offloads when --offload asks for TSO
// and the kernel agrees, else plain ones; with --persist it adopts the TAP
// an earlier run left, and leaves it when the daemon exits.
func openTAP(cfg *config, name string, mtu int, log *slog.Logger) (*tap.Device, error) {
	opt := tap.Options{Queues: cfg.Queues, Offload: cfg.Offload.TSO, MTU: mtu, Persist: cfg.Persist, Logger: log}
	dev, err := tap.Open(name, opt)
	if errors.Is(err, tap.ErrNoOffload) {
		log.Warn("the kernel refused TAP offloads; using a plain TAP", "err", err)
		opt.Offload = false
		dev, err = tap.Open(name, opt)
	}
	return dev, err
}

// queues pairs the TAP's queues with the underlay's sockets.
func queues(dev *tap.Device, cs []overlay.PacketConn) []overlay.Queue {
	qs := make([]overlay.Queue, len(cs))
	for i := range qs {
		qs[i] = overlay.Queue{Device: dev.Queues()[i], Conn: cs[i]}
	}
	return qs
}

func closeConns(cs []overlay.PacketConn) {
	for _, c := range cs {
		c.Close()
	}
}
