//go:build linux

package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"unsafe"

	"github.com/vxland/vxland/overlay/poller"
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

// BatchUDPConn is the underlay socket on Linux: recvmmsg and sendmmsg move
// many datagrams per system call, UDP_SEGMENT sends a run of datagrams as
// one, and UDP_GRO receives a run as one. Its buffers, message headers
// and the closures handed to the runtime poller are allocated once, so
// Read and Send allocate nothing.
//
// Read and Send may run concurrently with each other, but each of them
// from one goroutine at a time.
type BatchUDPConn struct {
	fd    *poller.FD
	src   []*poller.FD // sending sockets of SendFlow
	local netip.AddrPort
	v6    bool
	opt   BatchOptions

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
	// coalesced counts reads that held more than one datagram.
	coalesced int

	// send side
	smsgs   []unix.Mmsghdr
	siovs   []unix.Iovec
	soob    []byte
	sname   unix.RawSockaddrInet6
	snameV4 *unix.RawSockaddrInet4
	sn      int // messages prepared
}

var _ PacketConn = (*BatchUDPConn)(nil)

var cmsgSpace = unix.CmsgSpace(4)

// ListenBatchUDP opens the underlay socket on local with the offloads in
// opt that the kernel accepts. It returns which were refused, so that the
// caller can say so once.
func ListenBatchUDP(local netip.AddrPort, opt BatchOptions) (*BatchUDPConn, []string, error) {
	cs, refused, err := ListenBatchUDPQueues(local, opt, 1)
	if err != nil {
		return nil, nil, err
	}
	return cs[0], refused, nil
}

// ListenBatchUDPQueues opens n underlay sockets on local, bound together
// with SO_REUSEPORT: the kernel spreads the sending VTEPs' flows (their
// source ports) over them. They share the sending sockets of SendFlow, so
// that a flow keeps its source port whichever queue sends it. n = 1 is
// ListenBatchUDP.
func ListenBatchUDPQueues(local netip.AddrPort, opt BatchOptions, n int) (cs []*BatchUDPConn, refused []string, err error) {
	n = max(n, 1)
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	family, sa := sockaddrOf(local)
	if n > 1 && local.Port() != 0 {
		// SO_REUSEPORT would let us join another socket on the port
		// (a second vxland, say): make sure it is free first.
		fd, err := udpSocket(family, sa, false)
		if err != nil {
			return nil, nil, fmt.Errorf("listening on UDP %s: %w", local, err)
		}
		unix.Close(fd)
	}
	var fds []int
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	for i := range n {
		fd, err := udpSocket(family, sa, n > 1)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("listening on UDP %s: %w", local, err)
		}
		fds = append(fds, fd)
		if i > 0 {
			continue
		}
		// The first socket tells the port (when local asked for any)
		// that the others bind to.
		bound, err := unix.Getsockname(fd)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("listening on UDP %s: %w", local, err)
		}
		switch b := bound.(type) {
		case *unix.SockaddrInet4:
			local = netip.AddrPortFrom(netip.AddrFrom4(b.Addr), uint16(b.Port))
		case *unix.SockaddrInet6:
			local = netip.AddrPortFrom(netip.AddrFrom16(b.Addr), uint16(b.Port))
		}
		family, sa = sockaddrOf(local)
	}
	opt.Batch = max(opt.Batch, 1)
	if opt.GRO {
		for _, fd := range fds {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1); err != nil {
				opt.GRO = false
				refused = append(refused, fmt.Sprintf("UDP_GRO: %v", err))
				break
			}
		}
	}
	if opt.GSO {
		if _, err := unix.GetsockoptInt(fds[0], unix.IPPROTO_UDP, unix.UDP_SEGMENT); err != nil {
			opt.GSO = false
			refused = append(refused, fmt.Sprintf("UDP_SEGMENT: %v", err))
		}
	}
	var src []*poller.FD
	closeSrc := func() {
		for _, f := range src {
			f.Close()
		}
	}
	for range opt.SourcePorts {
		sw, err := openSourceSocket(family, local.Addr())
		if err != nil {
			closeSrc()
			closeAll()
			return nil, nil, err
		}
		src = append(src, sw)
	}
	for i, fd := range fds {
		pfd, err := poller.NewFD(fd)
		if err != nil {
			for _, c := range cs {
				c.Close()
			}
			closeSrc()
			for _, fd := range fds[i:] {
				unix.Close(fd)
			}
			return nil, nil, fmt.Errorf("listening on UDP %s: %w", local, err)
		}
		c := &BatchUDPConn{fd: pfd, src: src, local: local, v6: family == unix.AF_INET6, opt: opt}
		c.snameV4 = (*unix.RawSockaddrInet4)(unsafe.Pointer(&c.sname))
		c.initRecv()
		c.initSend()
		cs = append(cs, c)
	}
	return cs, refused, nil
}

func sockaddrOf(a netip.AddrPort) (family int, sa unix.Sockaddr) {
	if a.Addr().Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
}

// udpSocket opens a non-blocking UDP socket bound to sa, with SO_REUSEPORT
// when reuse is set.
func udpSocket(family int, sa unix.Sockaddr, reuse bool) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if family == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if reuse {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			unix.Close(fd)
			return -1, os.NewSyscallError("setsockopt SO_REUSEPORT", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	// Best effort: the kernel caps the sizes at net.core.[rw]mem_max.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
	return fd, nil
}

// openSourceSocket opens a sending socket on addr and a free port of the
// dynamic range.
func openSourceSocket(family int, addr netip.Addr) (*poller.FD, error) {
	fd := -1
	err := bindDynamicPort(addr, func(port uint16) (err error) {
		var sa unix.Sockaddr
		if family == unix.AF_INET6 {
			sa = &unix.SockaddrInet6{Port: int(port), Addr: addr.As16()}
		} else {
			sa = &unix.SockaddrInet4{Port: int(port), Addr: addr.Unmap().As4()}
		}
		fd, err = udpSocket(family, sa, false)
		return err
	})
	if err != nil {
		return nil, err
	}
	pfd, err := poller.NewFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return pfd, nil
}

// SourcePorts returns the ports SendFlow sends from.
func (c *BatchUDPConn) SourcePorts() []uint16 {
	var out []uint16
	for _, f := range c.src {
		_ = f.Control(func(fd int) error {
			sa, err := unix.Getsockname(fd)
			switch a := sa.(type) {
			case *unix.SockaddrInet4:
				out = append(out, uint16(a.Port))
			case *unix.SockaddrInet6:
				out = append(out, uint16(a.Port))
			}
			return err
		})
	}
	return out
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
			c.rbufs[i] = make([]byte, maxReadOffset+groBufSize)
		}
	}
}

func (c *BatchUDPConn) initSend() {
	n := c.opt.Batch
	c.smsgs = make([]unix.Mmsghdr, n)
	// A message has up to maxGSOSegments iovecs when GSO is on.
	c.siovs = make([]unix.Iovec, n*maxGSOSegments)
	c.soob = make([]byte, n*cmsgSpace)
}

// LocalAddr returns the address the socket is bound to.
func (c *BatchUDPConn) LocalAddr() netip.AddrPort { return c.local }

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

// Close implements PacketConn: it wakes a blocked Read, waits until no
// call uses the sockets and closes them. The sending sockets shared with
// the other queues are closed too: the queues of a data plane close
// together.
func (c *BatchUDPConn) Close() error {
	for _, f := range c.src {
		f.Close()
	}
	return c.fd.Close()
}

// recv receives up to c.rn messages into c.rmsgs, waiting for one if wait
// is set, else returning poller.ErrWouldBlock when none is queued.
func (c *BatchUDPConn) recv(wait bool) error {
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

// send sends the c.sn prepared messages through f.
func (c *BatchUDPConn) send(f *poller.FD) error {
	for done := 0; done < c.sn; {
		err := f.Write("sendmmsg", func(fd int) error {
			n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&c.smsgs[done])), uintptr(c.sn-done), 0, 0, 0)
			if errno == 0 {
				done += int(n)
			}
			return poller.Errno(errno)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// maxReadOffset is the most headroom Read leaves in its own buffers.
const maxReadOffset = 64

// Read implements PacketConn. Without GRO, datagrams land directly in the
// caller's buffers; with GRO, bufs[i] are replaced by views of the
// coalesced reads (no copy), datagram after datagram.
func (c *BatchUDPConn) Read(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (int, error) {
	return c.read(bufs, sizes, srcs, offset, true)
}

// TryRead is Read that returns poller.ErrWouldBlock instead of waiting.
func (c *BatchUDPConn) TryRead(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (int, error) {
	return c.read(bufs, sizes, srcs, offset, false)
}

// FD returns the socket's descriptor, for a poller.Set.
func (c *BatchUDPConn) FD() *poller.FD { return c.fd }

func (c *BatchUDPConn) read(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int, wait bool) (int, error) {
	if !c.opt.GRO {
		n := min(len(bufs), c.opt.Batch)
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
		for i := range c.opt.Batch {
			c.setRecvMsg(i, c.rbufs[i][maxReadOffset:])
		}
		c.rn = c.opt.Batch
		if err := c.recv(wait); err != nil {
			return 0, err
		}
		c.pendMsg, c.pendOff, c.pendCount = 0, 0, c.rn
	}
	return c.split(bufs, sizes, srcs, offset), nil
}

// split hands out the datagrams of the pending coalesced reads as views:
// bufs[i][offset:] is datagram i, and its headroom is the end of the
// datagram before it (or spare room in front of the first).
func (c *BatchUDPConn) split(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) int {
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
	return c.sendVia(c.fd, bufs, dst)
}

// SendFlow is Send from the source port that flow hashes to.
func (c *BatchUDPConn) SendFlow(bufs [][]byte, dst netip.AddrPort, flow uint32) error {
	if len(c.src) == 0 {
		return c.sendVia(c.fd, bufs, dst)
	}
	return c.sendVia(c.src[flow%uint32(len(c.src))], bufs, dst)
}

func (c *BatchUDPConn) sendVia(f *poller.FD, bufs [][]byte, dst netip.AddrPort) error {
	c.setDest(dst)
	for len(bufs) > 0 {
		used := c.prepare(bufs)
		bufs = bufs[used:]
		if err := c.send(f); err != nil {
			if c.opt.GSO && (errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL)) {
				// The path cannot segment (e.g. a device without
				// checksum offload): stop trying.
				c.opt.GSO = false
				return fmt.Errorf("%w: %w", ErrGSORefused, err)
			}
			return err
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
