//go:build linux

package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP offload limits measured on Linux (see DATAPATH-FACTS): the payload of
// one UDP_SEGMENT sendmsg must stay at or under 65507 bytes and carry at
// most 128 segments; we stay at 64 like the kernel's own UDP_MAX_SEGMENTS
// of older releases.
const (
	maxGSOPayload  = 65507
	maxGSOSegments = 64
	// groBufSize holds one coalesced UDP_GRO read: up to 64 KB.
	groBufSize = 65535
)

// BatchOptions selects the offloads of a BatchUDPConn.
type BatchOptions struct {
	// Batch is how many messages one recvmmsg or sendmmsg moves.
	Batch int
	// GSO sends runs of equal-sized datagrams to one destination as one
	// message with UDP_SEGMENT.
	GSO bool
	// GRO asks the kernel to coalesce received datagrams (UDP_GRO).
	GRO bool
}

// BatchUDPConn is the underlay socket on Linux: recvmmsg and sendmmsg move
// many datagrams per system call, UDP_SEGMENT sends a run of datagrams as
// one, and UDP_GRO receives a run as one. Its buffers, message headers
// and the closures handed to the runtime poller are allocated once, so
// Read and Send allocate nothing.
//
// Read and Send may run concurrently with each other, but each of them
// from one goroutine at a time.
type BatchUDPConn struct {
	c   *net.UDPConn
	rc  syscall.RawConn
	v6  bool
	opt BatchOptions

	// receive side
	rmsgs  []unix.Mmsghdr
	riovs  []unix.Iovec
	rnames []unix.RawSockaddrInet6
	roob   []byte // per message: cmsgSpace bytes
	rbufs  [][]byte
	rn     int
	rerr   error
	readFn func(fd uintptr) bool
	// With GRO, a coalesced read is split into the caller's buffers; what
	// did not fit stays here for the next Read.
	pendMsg, pendOff, pendCount int
	// coalesced counts reads that held more than one datagram.
	coalesced int

	// send side
	smsgs   []unix.Mmsghdr
	siovs   []unix.Iovec
	soob    []byte
	sname   unix.RawSockaddrInet6
	snameV4 *unix.RawSockaddrInet4
	sn      int // messages prepared
	sdone   int
	serr    error
	writeFn func(fd uintptr) bool
}

var _ PacketConn = (*BatchUDPConn)(nil)

var cmsgSpace = unix.CmsgSpace(4)

// ErrGSORefused is returned by Send when the kernel refused a segmented
// send; the connection has turned GSO off and the caller may resend.
var ErrGSORefused = errors.New("UDP GSO refused by the kernel")

// ListenBatchUDP opens the underlay socket on local with the offloads in
// opt that the kernel accepts. It returns which were refused, so that the
// caller can say so once.
func ListenBatchUDP(local netip.AddrPort, opt BatchOptions) (c *BatchUDPConn, refused []string, err error) {
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
	if err != nil {
		return nil, nil, fmt.Errorf("listening on UDP %s: %w", local, err)
	}
	_ = uc.SetReadBuffer(socketBuffer)
	_ = uc.SetWriteBuffer(socketBuffer)
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, nil, err
	}
	opt.Batch = max(opt.Batch, 1)
	if opt.GRO {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
		}); err != nil || serr != nil {
			opt.GRO = false
			refused = append(refused, fmt.Sprintf("UDP_GRO: %v", errors.Join(err, serr)))
		}
	}
	if opt.GSO {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			_, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		}); err != nil || serr != nil {
			opt.GSO = false
			refused = append(refused, fmt.Sprintf("UDP_SEGMENT: %v", errors.Join(err, serr)))
		}
	}
	c = &BatchUDPConn{c: uc, rc: rc, v6: !local.Addr().Unmap().Is4(), opt: opt}
	c.snameV4 = (*unix.RawSockaddrInet4)(unsafe.Pointer(&c.sname))
	c.initRecv()
	c.initSend()
	return c, refused, nil
}

func (c *BatchUDPConn) initRecv() {
	n := c.opt.Batch
	c.rmsgs = make([]unix.Mmsghdr, n)
	c.riovs = make([]unix.Iovec, n)
	c.rnames = make([]unix.RawSockaddrInet6, n)
	c.roob = make([]byte, n*cmsgSpace)
	if c.opt.GRO {
		c.rbufs = make([][]byte, n)
		for i := range c.rbufs {
			c.rbufs[i] = make([]byte, groBufSize)
		}
	}
	c.readFn = c.doRead
}

func (c *BatchUDPConn) initSend() {
	n := c.opt.Batch
	c.smsgs = make([]unix.Mmsghdr, n)
	// A message has up to maxGSOSegments iovecs when GSO is on.
	c.siovs = make([]unix.Iovec, n*maxGSOSegments)
	c.soob = make([]byte, n*cmsgSpace)
	c.writeFn = c.doWrite
}

// LocalAddr returns the address the socket is bound to.
func (c *BatchUDPConn) LocalAddr() netip.AddrPort {
	return c.c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Offloads reports which offloads are in use.
func (c *BatchUDPConn) Offloads() BatchOptions { return c.opt }

// BatchSize implements PacketConn.
func (c *BatchUDPConn) BatchSize() int {
	if c.opt.GRO {
		// One coalesced read holds up to 64 datagrams.
		return c.opt.Batch * maxGSOSegments
	}
	return c.opt.Batch
}

// Close implements PacketConn.
func (c *BatchUDPConn) Close() error { return c.c.Close() }

func (c *BatchUDPConn) doRead(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.rmsgs[0])), uintptr(c.rn), 0, 0, 0)
	if errno == unix.EAGAIN || errno == unix.EWOULDBLOCK {
		return false
	}
	if errno == unix.EINTR {
		return false
	}
	if errno != 0 {
		c.rerr = os.NewSyscallError("recvmmsg", errno)
		c.rn = 0
		return true
	}
	c.rerr = nil
	c.rn = int(n)
	return true
}

func (c *BatchUDPConn) doWrite(fd uintptr) bool {
	for c.sdone < c.sn {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.smsgs[c.sdone])), uintptr(c.sn-c.sdone), 0, 0, 0)
		if errno == unix.EAGAIN || errno == unix.EWOULDBLOCK {
			return false
		}
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			c.serr = os.NewSyscallError("sendmmsg", errno)
			return true
		}
		c.sdone += int(n)
	}
	return true
}

// Read implements PacketConn. Without GRO, datagrams land directly in the
// caller's buffers; with GRO a coalesced run is split into them.
func (c *BatchUDPConn) Read(bufs [][]byte, sizes []int, srcs []netip.AddrPort) (int, error) {
	if !c.opt.GRO {
		n := min(len(bufs), c.opt.Batch)
		for i := range n {
			c.setRecvMsg(i, bufs[i])
		}
		c.rn = n
		if err := c.rc.Read(c.readFn); err != nil {
			return 0, err
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		for i := range c.rn {
			sizes[i] = int(c.rmsgs[i].Len)
			srcs[i] = c.source(i)
		}
		return c.rn, nil
	}
	if c.pendCount == 0 {
		for i := range c.opt.Batch {
			c.setRecvMsg(i, c.rbufs[i])
		}
		c.rn = c.opt.Batch
		if err := c.rc.Read(c.readFn); err != nil {
			return 0, err
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		c.pendMsg, c.pendOff, c.pendCount = 0, 0, c.rn
	}
	return c.split(bufs, sizes, srcs), nil
}

// split copies datagrams of the pending coalesced reads into bufs.
func (c *BatchUDPConn) split(bufs [][]byte, sizes []int, srcs []netip.AddrPort) int {
	out := 0
	for c.pendMsg < c.pendCount && out < len(bufs) {
		m := &c.rmsgs[c.pendMsg]
		total := int(m.Len)
		seg := c.groSize(c.pendMsg)
		if seg <= 0 {
			seg = total
		}
		if c.pendOff == 0 && seg < total {
			c.coalesced++
		}
		src := c.source(c.pendMsg)
		data := c.rbufs[c.pendMsg][:total]
		for c.pendOff < total && out < len(bufs) {
			end := min(c.pendOff+seg, total)
			sizes[out] = copy(bufs[out], data[c.pendOff:end])
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

func (c *BatchUDPConn) setRecvMsg(i int, buf []byte) {
	c.riovs[i] = unix.Iovec{Base: &buf[0]}
	c.riovs[i].SetLen(len(buf))
	h := &c.rmsgs[i].Hdr
	h.Name = (*byte)(unsafe.Pointer(&c.rnames[i]))
	h.Namelen = unix.SizeofSockaddrInet6
	h.Iov = &c.riovs[i]
	h.Iovlen = 1
	if c.opt.GRO {
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
func (c *BatchUDPConn) source(i int) netip.AddrPort {
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
func (c *BatchUDPConn) groSize(i int) int {
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

// Send implements PacketConn: it sends every buffer to dst, as few
// messages as the offloads allow, in as few system calls.
func (c *BatchUDPConn) Send(bufs [][]byte, dst netip.AddrPort) error {
	c.setDest(dst)
	for len(bufs) > 0 {
		used := c.prepare(bufs)
		bufs = bufs[used:]
		c.sdone, c.serr = 0, nil
		if err := c.rc.Write(c.writeFn); err != nil {
			return err
		}
		if c.serr != nil {
			if c.opt.GSO && (errors.Is(c.serr, unix.EIO) || errors.Is(c.serr, unix.EINVAL)) {
				// The path cannot segment (e.g. a device without
				// checksum offload): stop trying.
				c.opt.GSO = false
				return fmt.Errorf("%w: %v", ErrGSORefused, c.serr)
			}
			return c.serr
		}
	}
	return nil
}

// prepare fills the send messages from the head of bufs and returns how
// many buffers they cover.
func (c *BatchUDPConn) prepare(bufs [][]byte) int {
	used, msgs, iov := 0, 0, 0
	for used < len(bufs) && msgs < c.opt.Batch {
		first := len(bufs[used])
		n, total := 1, first
		if c.opt.GSO {
			// A run: equal sizes, the last one may be shorter.
			for used+n < len(bufs) && n < maxGSOSegments {
				l := len(bufs[used+n])
				if l > first || total+l > maxGSOPayload {
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
		h.Iovlen = uint64(n)
		for j := range n {
			b := bufs[used+j]
			c.siovs[iov+j] = unix.Iovec{Base: &b[0]}
			c.siovs[iov+j].SetLen(len(b))
		}
		if n > 1 {
			oob := c.soob[msgs*cmsgSpace : (msgs+1)*cmsgSpace]
			cm := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			cm.Level, cm.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
			cm.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(first)
			h.Control = &oob[0]
			h.SetControllen(unix.CmsgSpace(2))
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		iov += n
		msgs++
		used += n
	}
	c.sn = msgs
	return used
}

func (c *BatchUDPConn) setDest(dst netip.AddrPort) {
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
