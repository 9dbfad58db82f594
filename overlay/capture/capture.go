// Package capture copies what the data plane forwards to a reader, on
// demand: the inner Ethernet frames, the outer VXLAN packets, or both.
//
// The data plane offers every packet it forwards to the Session that is
// running, if any; with none, the cost is one atomic load per batch. A
// Session copies what passes its filter into one of a fixed set of
// buffers allocated when it starts, and hands it to the reader through a
// channel. When the reader falls behind and every buffer is taken, a
// packet is dropped and counted, never waited for: a slow reader never
// stalls forwarding.
//
// Outer packets are written as the Ethernet frames a wire would carry,
// with headers built for the capture: zero MAC addresses, an IPv4 or IPv6
// header between the local VTEP and the peer, a UDP header and the VXLAN
// datagram. The UDP ports are the VXLAN port on both sides: the source
// port the kernel used for a sent packet (one per inner flow) is not seen
// by the data plane. Everything from the VXLAN header on is the real
// datagram.
package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/offload"
)

// Direction is the way a packet crosses the data plane.
type Direction uint8

const (
	// Tx: from the TAP to a peer.
	Tx Direction = iota
	// Rx: from a peer to the TAP.
	Rx
)

// Filter selects what a Session keeps. The zero Filter keeps nothing:
// at least one of Inner and Outer must be set.
type Filter struct {
	// Inner keeps the inner Ethernet frames; Outer keeps the VXLAN
	// packets, as frames with built outer headers.
	Inner, Outer bool
	// MAC, when set (HasMAC), keeps only packets whose inner frame has
	// it as source or destination.
	MAC    fdb.MAC
	HasMAC bool
	// VTEP, when valid, keeps only packets to or from that peer.
	VTEP netip.Addr
}

// Options sizes a Session.
type Options struct {
	// Local is this host's VTEP address and port: the outer source of
	// sent packets, the destination of received ones.
	Local netip.AddrPort
	// Buffers is how many packets can wait for the reader (64 if 0).
	Buffers int
	// Snaplen bounds the bytes kept of each packet (the largest frame
	// the data plane moves, with outer headers, if 0).
	Snaplen int
}

// outerHeadersMax is the most the built outer headers take: Ethernet,
// IPv6 and UDP.
const outerHeadersMax = encap.EthernetHeaderLen + 40 + 8

// maxPacket is the largest packet a Session keeps whole: a 64 KB inner
// frame behind a VXLAN header and outer headers.
const maxPacket = 1<<16 + encap.HeaderLen + outerHeadersMax

// Record is one captured packet. Data is valid until Release.
type Record struct {
	Time time.Time
	Dir  Direction
	// Outer tells an outer packet from an inner frame.
	Outer bool
	// Length is the packet's length; Data holds at most Snaplen of it.
	Length int
	Data   []byte
	slot   int
}

// Session is one running capture.
type Session struct {
	filter  Filter
	local   netip.AddrPort
	snaplen int
	bufs    [][]byte
	free    chan int
	ready   chan Record
	dropped atomic.Uint64
	done    chan struct{}
	closed  atomic.Bool
}

// ErrNothingToCapture is returned by New for a filter that keeps neither
// inner frames nor outer packets.
var ErrNothingToCapture = errors.New("capture: neither inner frames nor outer packets asked for")

// New returns a Session that keeps what f selects.
func New(f Filter, opt Options) (*Session, error) {
	if !f.Inner && !f.Outer {
		return nil, ErrNothingToCapture
	}
	n := opt.Buffers
	if n <= 0 {
		n = 64
	}
	snap := opt.Snaplen
	if snap <= 0 || snap > maxPacket {
		snap = maxPacket
	}
	s := &Session{
		filter: f, local: opt.Local, snaplen: snap,
		bufs: make([][]byte, n), free: make(chan int, n), ready: make(chan Record, n),
		done: make(chan struct{}),
	}
	for i := range s.bufs {
		s.bufs[i] = make([]byte, maxPacket)
		s.free <- i
	}
	return s, nil
}

// Snaplen is the most bytes kept of each packet.
func (s *Session) Snaplen() int { return s.snaplen }

// Dropped is how many packets passed the filter but found no free
// buffer.
func (s *Session) Dropped() uint64 { return s.dropped.Load() }

// Close ends the session: Next returns ErrClosed once what is ready has
// been read. The data plane stops offering before it closes a session.
func (s *Session) Close() {
	if !s.closed.Swap(true) {
		close(s.done)
	}
}

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("capture: closed")

// Next waits for the next packet.
func (s *Session) Next(ctx context.Context) (Record, error) {
	select {
	case r := <-s.ready:
		return r, nil
	default:
	}
	select {
	case r := <-s.ready:
		return r, nil
	case <-s.done:
		return Record{}, ErrClosed
	case <-ctx.Done():
		return Record{}, ctx.Err()
	}
}

// Release gives r's buffer back for another packet.
func (s *Session) Release(r Record) { s.free <- r.slot }

// Offer offers the inner frame of a packet that crosses the data plane
// in direction d, to or from the peer vtep, and the VXLAN datagram it
// travels in (datagram ends with frame), to the session. It never blocks
// and allocates nothing: the data plane calls it from its forwarding
// threads.
func (s *Session) Offer(d Direction, vtep netip.AddrPort, datagram, frame []byte) {
	if !s.keep(vtep.Addr(), frame) {
		return
	}
	now := time.Now()
	if s.filter.Inner {
		s.put(Record{Time: now, Dir: d}, frame, vtep)
	}
	if s.filter.Outer {
		s.put(Record{Time: now, Dir: d, Outer: true}, datagram, vtep)
	}
}

func (s *Session) keep(vtep netip.Addr, frame []byte) bool {
	if s.filter.VTEP.IsValid() && vtep.Unmap() != s.filter.VTEP.Unmap() {
		return false
	}
	if s.filter.HasMAC {
		if len(frame) < encap.EthernetHeaderLen {
			return false
		}
		if fdb.MAC(frame[0:6]) != s.filter.MAC && fdb.MAC(frame[6:12]) != s.filter.MAC {
			return false
		}
	}
	return true
}

// put copies data into a free buffer (behind built outer headers for an
// outer record) and hands it to the reader, or counts a drop.
func (s *Session) put(r Record, data []byte, vtep netip.AddrPort) {
	var slot int
	select {
	case slot = <-s.free:
	default:
		s.dropped.Add(1)
		return
	}
	buf := s.bufs[slot]
	n := 0
	if r.Outer {
		src, dst := s.local, vtep
		if r.Dir == Rx {
			src, dst = vtep, s.local
		}
		n = outerHeaders(buf, src, dst, len(data))
	}
	n += copy(buf[n:], data)
	r.Length = n
	r.Data, r.slot = buf[:min(n, s.snaplen)], slot
	select {
	case s.ready <- r:
	default: // cannot happen: ready holds as many records as there are buffers
		s.free <- slot
		s.dropped.Add(1)
	}
}

// outerHeaders writes, at the start of b, the Ethernet, IP and UDP headers
// of a VXLAN datagram of n bytes from src to dst, and returns their
// length.
func outerHeaders(b []byte, src, dst netip.AddrPort, n int) int {
	clear(b[:12])
	v4 := src.Addr().Unmap().Is4() && dst.Addr().Unmap().Is4()
	ip := b[encap.EthernetHeaderLen:]
	var l4 []byte
	if v4 {
		binary.BigEndian.PutUint16(b[12:14], 0x0800)
		ip = ip[:20]
		clear(ip)
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		binary.BigEndian.PutUint16(ip[2:4], uint16(20+8+n))
		s4, d4 := src.Addr().Unmap().As4(), dst.Addr().Unmap().As4()
		copy(ip[12:16], s4[:])
		copy(ip[16:20], d4[:])
		binary.BigEndian.PutUint16(ip[10:12], ^offload.Checksum(ip, 0))
		l4 = b[encap.EthernetHeaderLen+20:]
	} else {
		binary.BigEndian.PutUint16(b[12:14], 0x86dd)
		ip = ip[:40]
		clear(ip)
		ip[0], ip[6], ip[7] = 0x60, 17, 64
		binary.BigEndian.PutUint16(ip[4:6], uint16(8+n))
		s16, d16 := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:24], s16[:])
		copy(ip[24:40], d16[:])
		l4 = b[encap.EthernetHeaderLen+40:]
	}
	binary.BigEndian.PutUint16(l4[0:2], src.Port())
	binary.BigEndian.PutUint16(l4[2:4], dst.Port())
	binary.BigEndian.PutUint16(l4[4:6], uint16(8+n))
	l4[6], l4[7] = 0, 0 // none, as RFC 7348 §5 lets a VTEP send
	return len(b) - len(l4) + 8
}
