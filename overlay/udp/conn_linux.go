//go:build linux

package udp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/vxland/vxland/overlay/poller"
	"golang.org/x/sys/unix"
)

const (
	// maxGSOPayload bounds the payload of one UDP_SEGMENT send: the
	// largest UDP payload of an IPv4 datagram.
	maxGSOPayload = 65507
	// groBufSize holds one coalesced UDP_GRO read: up to 64 KB.
	groBufSize = 65535
	// maxReadOffset is the most headroom Read leaves in its own buffers.
	maxReadOffset = 64
)

var cmsgSpace = unix.CmsgSpace(4)

// sendOOBSpace holds the control messages of one sent message: its
// segment size (UDP_SEGMENT), TTL, TOS and IPv6 DF (IPV6_DONTFRAG), an
// int each at most.
var sendOOBSpace = 4 * unix.CmsgSpace(4)

// Conn is an underlay socket. Its buffers and message headers are
// allocated when it opens, so that Read, TryRead, Send and SendFlow
// allocate nothing.
//
// Reads (Read, TryRead) and sends (Send, SendFlow) may run concurrently
// with each other, but each of them from one goroutine at a time.
type Conn struct {
	fd *poller.FD
	*group
	local netip.AddrPort
	v6    bool
	batch int
	gro   bool
	// fields gives each datagram's outer TTL and TOS (Outer.PerDatagram).
	fields func(datagram []byte) (ttl, tos uint8)
	// dontFrag gives each datagram's DF (Outer.DontFragment).
	dontFrag func(datagram []byte) bool
	// df is whether fd's IP_MTU_DISCOVER is IP_PMTUDISC_DO, on IPv4
	// with dontFrag: what the socket sends unless it is switched.
	df bool

	// receive side
	rmsgs  []unix.Mmsghdr
	riovs  []unix.Iovec
	rnames []unix.RawSockaddrInet6
	roob   []byte // per message: cmsgSpace bytes
	rbufs  [][]byte
	rn     int
	// With GRO, a coalesced read is split into the caller's buffers; what
	// did not fit stays here for the next Read.
	pendMsg, pendOff, pendCount int

	// send side
	smsgs   []unix.Mmsghdr
	siovs   []unix.Iovec
	soob    []byte
	sname   unix.RawSockaddrInet6
	snameV4 *unix.RawSockaddrInet4
	sn      int // messages prepared
}

// group is what the queues of one Listen share.
type group struct {
	src []*poller.FD // sending sockets of SendFlow
	// srcMu[i] is held while a queue sends through src[i]: a poller.FD
	// takes one writer at a time.
	srcMu []sync.Mutex
	// srcDF[i] is df of src[i], held under srcMu[i].
	srcDF []bool
	log   *slog.Logger
	// gso is cleared, for every queue, by the first send the kernel
	// refuses to segment.
	gso atomic.Bool
}

// LocalAddr returns the address the socket is bound to.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// FD returns the socket's descriptor, for a poller.Set.
func (c *Conn) FD() *poller.FD { return c.fd }

// BatchSize is the largest number of datagrams Read returns at once.
func (c *Conn) BatchSize() int {
	if c.gro {
		// One coalesced read holds up to maxGSOSegments datagrams.
		return c.batch * maxGSOSegments
	}
	return c.batch
}

// ReadsViews reports whether Read hands out views of the socket's own
// buffers, which it does with GRO: the caller's buffers are not used.
func (c *Conn) ReadsViews() bool { return c.gro }

// SourcePorts returns the ports SendFlow sends from.
func (c *Conn) SourcePorts() []uint16 {
	var out []uint16
	for _, f := range c.src {
		if a, err := boundAddr(f); err == nil {
			out = append(out, a.Port())
		}
	}
	return out
}

// Close wakes a blocked Read, waits until no call uses the socket and
// closes it. The sending sockets shared with the other queues are closed
// too: the queues of a data plane close together.
func (c *Conn) Close() error {
	closeAll(c.src) // a second Close of a shared one does nothing
	return c.fd.Close()
}

// Read reads up to len(bufs) datagrams, waiting for one. Without GRO,
// datagram i lands in bufs[i][offset:]; with GRO, bufs[i] are replaced by
// views of the coalesced reads (no copy), valid until the next Read, and
// the headroom of datagram i is the end of datagram i-1 when both came
// in one coalesced read.
func (c *Conn) Read(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (int, error) {
	return c.read(bufs, sizes, srcs, offset, true)
}

// TryRead is Read that returns poller.ErrWouldBlock instead of waiting.
func (c *Conn) TryRead(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (int, error) {
	return c.read(bufs, sizes, srcs, offset, false)
}

func (c *Conn) read(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int, wait bool) (int, error) {
	if !c.gro {
		n := min(len(bufs), c.batch)
		for i := range n {
			c.setRecvMsg(i, bufs[i][offset:])
		}
		c.rn = n
		if err := c.recv(wait); err != nil {
			return 0, err
		}
		for i := range c.rn {
			sizes[i] = int(c.rmsgs[i].Len)
			srcs[i] = c.source(i)
		}
		return c.rn, nil
	}
	if offset > maxReadOffset {
		return 0, fmt.Errorf("read offset %d above %d", offset, maxReadOffset)
	}
	if c.pendCount == 0 {
		for i := range c.batch {
			c.setRecvMsg(i, c.rbufs[i][maxReadOffset:])
		}
		c.rn = c.batch
		if err := c.recv(wait); err != nil {
			return 0, err
		}
		c.pendMsg, c.pendOff, c.pendCount = 0, 0, c.rn
	}
	return c.split(bufs, sizes, srcs, offset), nil
}

// recv receives up to c.rn messages into c.rmsgs, waiting for one if wait
// is set, else returning poller.ErrWouldBlock when none is queued.
func (c *Conn) recv(wait bool) error {
	op := func(fd int) error {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&c.rmsgs[0])), uintptr(c.rn), 0, 0, 0)
		if errno == 0 {
			c.rn = int(n)
		}
		return poller.Errno(errno)
	}
	if wait {
		return c.fd.Read("recvmmsg", op)
	}
	return c.fd.TryRead("recvmmsg", op)
}

// split hands out the datagrams of the pending coalesced reads as views:
// bufs[i][offset:] is datagram i, and its headroom is the end of the
// datagram before it (or spare room in front of the first).
func (c *Conn) split(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) int {
	out := 0
	for c.pendMsg < c.pendCount && out < len(bufs) {
		total := int(c.rmsgs[c.pendMsg].Len)
		seg := c.groSize(c.pendMsg)
		if seg <= 0 {
			seg = total
		}
		src := c.source(c.pendMsg)
		rbuf := c.rbufs[c.pendMsg]
		for c.pendOff < total && out < len(bufs) {
			end := min(c.pendOff+seg, total)
			start := maxReadOffset + c.pendOff
			bufs[out] = rbuf[start-offset : maxReadOffset+end : maxReadOffset+end]
			sizes[out] = end - c.pendOff
			srcs[out] = src
			out++
			c.pendOff = end
		}
		if c.pendOff >= total {
			c.pendMsg++
			c.pendOff = 0
		}
	}
	if c.pendMsg >= c.pendCount {
		c.pendCount = 0
	}
	return out
}

func (c *Conn) setRecvMsg(i int, buf []byte) {
	c.riovs[i] = unix.Iovec{Base: &buf[0]}
	c.riovs[i].SetLen(len(buf))
	h := &c.rmsgs[i].Hdr
	h.Name = (*byte)(unsafe.Pointer(&c.rnames[i]))
	h.Namelen = unix.SizeofSockaddrInet6
	h.Iov = &c.riovs[i]
	h.SetIovlen(1)
	if c.gro {
		h.Control = &c.roob[i*cmsgSpace]
		h.SetControllen(cmsgSpace)
	} else {
		h.Control = nil
		h.SetControllen(0)
	}
	h.Flags = 0
	c.rmsgs[i].Len = 0
}

// source decodes the sender of received message i without allocating.
func (c *Conn) source(i int) netip.AddrPort {
	sa := &c.rnames[i]
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// groSize returns the segment size the kernel reported for a coalesced
// read, or 0 when the read holds one datagram.
func (c *Conn) groSize(i int) int {
	h := &c.rmsgs[i].Hdr
	oob := c.roob[i*cmsgSpace : i*cmsgSpace+min(int(h.Controllen), cmsgSpace)]
	for off := 0; off+unix.SizeofCmsghdr <= len(oob); {
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&oob[off]))
		l := int(cm.Len)
		if l < unix.SizeofCmsghdr || off+l > len(oob) {
			return 0
		}
		if cm.Level == unix.IPPROTO_UDP && cm.Type == unix.UDP_GRO && l >= unix.CmsgLen(2) {
			return int(*(*uint16)(unsafe.Pointer(&oob[off+unix.CmsgLen(0)])))
		}
		off += unix.CmsgSpace(l - unix.SizeofCmsghdr)
	}
	return 0
}

// Send sends each buffer as one datagram to dst, in as few messages as
// the offloads allow, in as few system calls.
func (c *Conn) Send(bufs [][]byte, dst netip.AddrPort) error {
	return c.sendVia(c.fd, &c.df, bufs, dst)
}

// SendFlow is Send from the source port that flow hashes to, when the
// socket has source ports, else from the listening port.
func (c *Conn) SendFlow(bufs [][]byte, dst netip.AddrPort, flow uint32) error {
	if len(c.src) == 0 {
		return c.sendVia(c.fd, &c.df, bufs, dst)
	}
	i := flow % uint32(len(c.src))
	c.srcMu[i].Lock()
	defer c.srcMu[i].Unlock()
	return c.sendVia(c.src[i], &c.srcDF[i], bufs, dst)
}

// sendVia sends bufs through f, whose IPv4 DF state is *df.
func (c *Conn) sendVia(f *poller.FD, df *bool, bufs [][]byte, dst netip.AddrPort) error {
	c.setDest(dst)
	for len(bufs) > 0 {
		gso := c.gso.Load()
		used, batchDF := c.prepare(bufs, gso)
		if c.dontFrag != nil && !c.v6 && batchDF != *df {
			if err := setDF(f, batchDF); err != nil {
				return err
			}
			*df = batchDF
		}
		sent, err := c.send(f)
		if err == nil {
			bufs = bufs[used:]
			continue
		}
		if !gso || c.smsgs[sent].Hdr.Iovlen < 2 || !(errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL)) {
			return err
		}
		// The kernel refused to segment message sent (a path whose
		// device cannot checksum, say): the messages before it are
		// gone, the rest goes again one datagram per message.
		if c.gso.Swap(false) {
			c.log.Warn("the kernel refused UDP segmentation offload; sending datagrams one by one", "err", err)
		}
		for m := range sent {
			bufs = bufs[int(c.smsgs[m].Hdr.Iovlen):]
		}
	}
	return nil
}

// send sends the c.sn prepared messages through f and returns how many
// went, all of them unless it fails.
func (c *Conn) send(f *poller.FD) (int, error) {
	done := 0
	for done < c.sn {
		err := f.Write("sendmmsg", func(fd int) error {
			n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&c.smsgs[done])), uintptr(c.sn-done), 0, 0, 0)
			if errno == 0 {
				done += int(n)
			}
			return poller.Errno(errno)
		})
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// prepare fills the send messages from the head of bufs, a run of
// equal-sized datagrams per message when gso is set, and returns how many
// buffers they cover. With per-datagram fields, a run also shares its TTL
// and TOS, and with per-datagram DF its DF. On IPv4, where DF is the
// socket's, all messages share the DF of the first, which prepare returns.
func (c *Conn) prepare(bufs [][]byte, gso bool) (used int, batchDF bool) {
	msgs, iov := 0, 0
	var ttl, tos uint8
	var df bool
	for used < len(bufs) && msgs < c.batch {
		first := len(bufs[used])
		if c.fields != nil {
			ttl, tos = c.fields(bufs[used])
		}
		if c.dontFrag != nil {
			df = c.dontFrag(bufs[used])
			if msgs == 0 {
				batchDF = df
			} else if !c.v6 && df != batchDF {
				break
			}
		}
		n, total := 1, first
		if gso {
			// A run: equal sizes, the last one may be shorter.
			for used+n < len(bufs) && n < maxGSOSegments {
				l := len(bufs[used+n])
				if l > first || total+l > maxGSOPayload {
					break
				}
				if c.fields != nil {
					if nttl, ntos := c.fields(bufs[used+n]); nttl != ttl || ntos != tos {
						break
					}
				}
				if c.dontFrag != nil && c.dontFrag(bufs[used+n]) != df {
					break
				}
				n++
				total += l
				if l < first {
					break
				}
			}
		}
		h := &c.smsgs[msgs].Hdr
		h.Name = (*byte)(unsafe.Pointer(&c.sname))
		if c.v6 {
			h.Namelen = unix.SizeofSockaddrInet6
		} else {
			h.Namelen = unix.SizeofSockaddrInet4
		}
		h.Iov = &c.siovs[iov]
		h.SetIovlen(n)
		for j := range n {
			b := bufs[used+j]
			c.siovs[iov+j] = unix.Iovec{Base: &b[0]}
			c.siovs[iov+j].SetLen(len(b))
		}
		oob := c.soob[msgs*sendOOBSpace : (msgs+1)*sendOOBSpace]
		off := 0
		if n > 1 {
			off = putCmsg(oob, off, unix.IPPROTO_UDP, unix.UDP_SEGMENT, 2, first)
		}
		if c.fields != nil {
			if c.v6 {
				off = putCmsg(oob, off, unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT, 4, int(ttl))
				off = putCmsg(oob, off, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, 4, int(tos))
			} else {
				off = putCmsg(oob, off, unix.IPPROTO_IP, unix.IP_TTL, 4, int(ttl))
				off = putCmsg(oob, off, unix.IPPROTO_IP, unix.IP_TOS, 4, int(tos))
			}
		}
		if c.dontFrag != nil && c.v6 {
			v := 0
			if df {
				v = 1
			}
			off = putCmsg(oob, off, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 4, v)
		}
		if off > 0 {
			h.Control = &oob[0]
			h.SetControllen(off)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		iov += n
		msgs++
		used += n
	}
	c.sn = msgs
	return used, batchDF
}

// setDF switches the DF of the IPv4 socket f: IP_PMTUDISC_DO sends with
// DF and refuses what is larger than the path MTU, IP_PMTUDISC_DONT sends
// without and fragments.
func setDF(f *poller.FD, df bool) error {
	pmtu := unix.IP_PMTUDISC_DONT
	if df {
		pmtu = unix.IP_PMTUDISC_DO
	}
	return f.Control(func(fd int) error {
		return os.NewSyscallError("setsockopt IP_MTU_DISCOVER", unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, pmtu))
	})
}

// putCmsg writes a control message of level and typ at oob[off:], holding
// value in size bytes (2: uint16, 4: int32), and returns the offset after
// it.
func putCmsg(oob []byte, off, level, typ, size, value int) int {
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&oob[off]))
	cm.Level, cm.Type = int32(level), int32(typ)
	cm.SetLen(unix.CmsgLen(size))
	data := oob[off+unix.CmsgLen(0):]
	if size == 2 {
		*(*uint16)(unsafe.Pointer(&data[0])) = uint16(value)
	} else {
		*(*int32)(unsafe.Pointer(&data[0])) = int32(value)
	}
	return off + unix.CmsgSpace(size)
}

func (c *Conn) setDest(dst netip.AddrPort) {
	addr := dst.Addr()
	port := dst.Port()
	if c.v6 {
		c.sname = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: addr.As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&c.sname.Port))[:], port)
		return
	}
	*c.snameV4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: addr.Unmap().As4()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&c.snameV4.Port))[:], port)
}
