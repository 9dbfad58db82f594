//go:build linux

package udp

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"unsafe"

	"github.com/vxland/vxland/overlay/poller"
	"golang.org/x/sys/unix"
)

// Listen opens queues sockets on local (one when queues is 1 or less)
// with the offloads of opt that the kernel accepts; each it refuses is
// turned off and logged once through opt.Logger.
//
// More than one queue binds the sockets together with SO_REUSEPORT: the
// kernel spreads the sending VTEPs' flows (their source ports) over them.
// The queues share the sending sockets of SendFlow, so that a flow keeps
// its source port whichever queue sends it.
//
// With groups in opt.Multicast the queue sockets are bound to the
// wildcard address of local's family and the first joins the groups
// (Multicast); the sending sockets and LocalAddr keep local's address.
func Listen(local netip.AddrPort, queues int, opt Options) ([]*Conn, error) {
	queues = max(queues, 1)
	opt.Batch = max(opt.Batch, 1)
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	mc := opt.Multicast
	bind := local
	if len(mc.Groups) > 0 {
		// Only the wildcard address receives what is sent to a group
		// (Multicast).
		bind = netip.AddrPortFrom(netip.IPv6Unspecified(), local.Port())
		if local.Addr().Is4() {
			bind = netip.AddrPortFrom(netip.IPv4Unspecified(), local.Port())
		}
	}
	if queues > 1 && local.Port() != 0 {
		// SO_REUSEPORT would let us join another socket on the port
		// (a second vxland, say): make sure it is free first.
		f, err := openSocket(bind, false, opt.Outer, mc)
		if err != nil {
			return nil, fmt.Errorf("listening on UDP %s: %w", bind, err)
		}
		f.Close()
	}
	fds, err := openAll(queues, func(i int) (*poller.FD, error) {
		f, err := openSocket(bind, queues > 1, opt.Outer, mc)
		if err != nil {
			return nil, fmt.Errorf("listening on UDP %s: %w", bind, err)
		}
		if i == 0 {
			// The first socket tells the port (when local asked
			// for any) that the others bind to, and alone joins
			// the groups.
			bound, err := boundAddr(f)
			if err == nil {
				err = joinGroups(f, mc)
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("listening on UDP %s: %w", bind, err)
			}
			bind = bound
			local = netip.AddrPortFrom(local.Addr(), bound.Port())
		}
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	if opt.GRO {
		if err := setGRO(fds, 1); err != nil {
			// A socket that took it would hand over coalesced
			// reads that Read no longer splits.
			_ = setGRO(fds, 0)
			opt.GRO = false
			log.Warn("the kernel refused a socket offload; continuing without it", "offload", "UDP_GRO", "err", err)
		}
	}
	if opt.GSO && opt.Outer.NoChecksum && local.Addr().Is4() {
		// The kernel refuses to segment a send without checksum
		// (udp_send_skb: EINVAL).
		opt.GSO = false
		log.Info("UDP segmentation offload is off: the kernel does not segment datagrams sent without UDP checksum")
	}
	if opt.GSO {
		err := fds[0].Control(func(fd int) error {
			_, err := unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
			return err
		})
		if err != nil {
			opt.GSO = false
			log.Warn("the kernel refused a socket offload; continuing without it", "offload", "UDP_SEGMENT", "err", err)
		}
	}
	src, err := openAll(opt.SourcePorts, func(int) (*poller.FD, error) {
		return openSourceSocket(local.Addr(), opt.Outer, mc)
	})
	if err != nil {
		closeAll(fds)
		return nil, err
	}
	g := &group{src: src, srcMu: make([]sync.Mutex, len(src)), srcDF: make([]bool, len(src)), log: log}
	for i := range g.srcDF {
		g.srcDF[i] = !opt.Outer.NoDontFragment
	}
	g.gso.Store(opt.GSO)
	cs := make([]*Conn, len(fds))
	for i, f := range fds {
		cs[i] = newConn(f, g, local, opt)
	}
	return cs, nil
}

// setGRO sets UDP_GRO to on on every socket of fds, and returns the first
// refusal.
func setGRO(fds []*poller.FD, on int) error {
	var first error
	for _, f := range fds {
		err := f.Control(func(fd int) error {
			return unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, on)
		})
		if first == nil {
			first = err
		}
	}
	return first
}

// openAll calls open n times and returns what it opened; when one fails,
// it closes those opened before and returns the error.
func openAll[C io.Closer](n int, open func(i int) (C, error)) ([]C, error) {
	out := make([]C, 0, n)
	for i := range n {
		c, err := open(i)
		if err != nil {
			closeAll(out)
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func closeAll[C io.Closer](cs []C) {
	for _, c := range cs {
		c.Close()
	}
}

// openSocket opens a non-blocking UDP socket bound to local, with
// SO_REUSEPORT when reuse is set, that sends with the outer header
// settings of outer, to the groups of mc through its interface.
func openSocket(local netip.AddrPort, reuse bool, outer Outer, mc Multicast) (*poller.FD, error) {
	var family int
	var sa unix.Sockaddr
	if local.Addr().Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(local.Port()), Addr: local.Addr().As4()}
	} else {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(local.Port()), Addr: local.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if family == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err := setOuter(fd, family, outer); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := setMulticast(fd, family, mc, outer.TTL); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if reuse {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			unix.Close(fd)
			return nil, os.NewSyscallError("setsockopt SO_REUSEPORT", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	// Best effort: the kernel caps the sizes at net.core.[rw]mem_max.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
	f, err := poller.NewFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return f, nil
}

// setOuter sets the socket options of the outer header settings of o.
//
// By default the kernel sends every datagram whole, with DF set on IPv4
// (IP_PMTUDISC_DO) and never fragmented on IPv6, as kernel VXLAN does with
// "df set": a datagram larger than the path MTU is refused with EMSGSIZE
// instead of leaving as fragments, which the receiving VTEP would have to
// reassemble and which a lost fragment turns into a lost frame.
// o.NoDontFragment is "df unset": no DF, and the kernel fragments.
// o.DontFragment is "df inherit": on IPv4 the socket starts as
// NoDontFragment says and Conn switches it; IPv6 gets its DF per message.
func setOuter(fd, family int, o Outer) error {
	var opts []intOption
	if family == unix.AF_INET {
		pmtu := unix.IP_PMTUDISC_DO
		if o.NoDontFragment {
			pmtu = unix.IP_PMTUDISC_DONT
		}
		opts = append(opts, intOption{"IP_MTU_DISCOVER", unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, pmtu})
		if o.TTL > 0 {
			opts = append(opts, intOption{"IP_TTL", unix.IPPROTO_IP, unix.IP_TTL, o.TTL})
		}
		if o.TOS != 0 {
			opts = append(opts, intOption{"IP_TOS", unix.IPPROTO_IP, unix.IP_TOS, int(o.TOS)})
		}
		if o.NoChecksum {
			opts = append(opts, intOption{"SO_NO_CHECK", unix.SOL_SOCKET, unix.SO_NO_CHECK, 1})
		}
	} else {
		pmtu, dontFrag := unix.IPV6_PMTUDISC_DO, 1
		// With DF per datagram, the socket lets the kernel fragment
		// and IPV6_DONTFRAG forbids it per message: IPv6 sockets at
		// IPV6_PMTUDISC_DO never fragment, whatever the message says.
		if o.NoDontFragment || o.DontFragment != nil {
			pmtu, dontFrag = unix.IPV6_PMTUDISC_DONT, 0
		}
		opts = append(opts, intOption{"IPV6_MTU_DISCOVER", unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, pmtu},
			intOption{"IPV6_DONTFRAG", unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, dontFrag})
		if o.TTL > 0 {
			opts = append(opts, intOption{"IPV6_UNICAST_HOPS", unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, o.TTL})
		}
		if o.TOS != 0 {
			opts = append(opts, intOption{"IPV6_TCLASS", unix.IPPROTO_IPV6, unix.IPV6_TCLASS, int(o.TOS)})
		}
	}
	return setIntOptions(fd, opts)
}

// intOption is a socket option of an int value.
type intOption struct {
	name       string
	level, opt int
	value      int
}

// setIntOptions sets the options of opts in order, and stops at the
// first the kernel refuses.
func setIntOptions(fd int, opts []intOption) error {
	for _, op := range opts {
		if err := unix.SetsockoptInt(fd, op.level, op.opt, op.value); err != nil {
			return os.NewSyscallError("setsockopt "+op.name, err)
		}
	}
	return nil
}

// setMulticast has the socket send datagrams to a group through the
// interface of mc, with the TTL ttl (0: the kernel's 1), and not loop
// them back to this host; and receive only the groups it joins itself.
// It does nothing when mc names no group.
func setMulticast(fd, family int, mc Multicast, ttl int) error {
	if len(mc.Groups) == 0 {
		return nil
	}
	if family == unix.AF_INET {
		err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(mc.Iface)})
		if err != nil {
			return os.NewSyscallError("setsockopt IP_MULTICAST_IF", err)
		}
	}
	opts := []intOption{{"IP_MULTICAST_LOOP", unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0},
		{"IP_MULTICAST_ALL", unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0}}
	if ttl > 0 {
		opts = append(opts, intOption{"IP_MULTICAST_TTL", unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, ttl})
	}
	if family == unix.AF_INET6 {
		opts = []intOption{{"IPV6_MULTICAST_IF", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, mc.Iface},
			{"IPV6_MULTICAST_LOOP", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0},
			{"IPV6_MULTICAST_ALL", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0}}
		if ttl > 0 {
			opts = append(opts, intOption{"IPV6_MULTICAST_HOPS", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, ttl})
		}
	}
	return setIntOptions(fd, opts)
}

// joinGroups has the socket of f join the groups of mc on its interface
// (IP_ADD_MEMBERSHIP, IPV6_JOIN_GROUP).
func joinGroups(f *poller.FD, mc Multicast) error {
	return f.Control(func(fd int) error {
		for _, g := range mc.Groups {
			var err error
			if g.Is4() {
				err = unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, &unix.IPMreqn{Multiaddr: g.As4(), Ifindex: int32(mc.Iface)})
			} else {
				err = unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, &unix.IPv6Mreq{Multiaddr: g.As16(), Interface: uint32(mc.Iface)})
			}
			if err != nil {
				return fmt.Errorf("joining group %s on interface %d: %w", g, mc.Iface, os.NewSyscallError("setsockopt", err))
			}
		}
		return nil
	})
}

// discardReceived makes a sending socket drop whatever arrives on it, so
// that datagrams sent to its port do not fill a receive queue that nobody
// reads. shutdown(SHUT_RD) does not do it for UDP: Linux marks the socket
// but still queues the datagrams (measured: a full queue, no drops). A
// classic BPF filter that accepts nothing drops them before they are
// queued; the kernel counts them in the drops column of /proc/net/udp
// (SO_MEMINFO is not offered for UDP, so vxland does not count them
// itself). The smallest receive buffer bounds what could slip in while the
// filter is being attached.
func discardReceived(f *poller.FD) error {
	reject := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	return f.Control(func(fd int) error {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 0)
		err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &reject[0]})
		return os.NewSyscallError("setsockopt SO_ATTACH_FILTER", err)
	})
}

// boundAddr returns the address the socket of f is bound to.
func boundAddr(f *poller.FD) (netip.AddrPort, error) {
	var local netip.AddrPort
	err := f.Control(func(fd int) error {
		sa, err := unix.Getsockname(fd)
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			local = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			local = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
		}
		return err
	})
	if err != nil {
		return netip.AddrPort{}, os.NewSyscallError("getsockname", err)
	}
	return local, nil
}

// openSourceSocket opens a sending socket on addr and a free port of the
// dynamic range: it tries ports from a random one on, and gives up after
// 64 in use.
func openSourceSocket(addr netip.Addr, outer Outer, mc Multicast) (*poller.FD, error) {
	span := srcPortMax - srcPortMin + 1
	start := rand.IntN(span)
	for i := range 64 {
		port := uint16(srcPortMin + (start+i*7919)%span)
		f, err := openSocket(netip.AddrPortFrom(addr, port), false, outer, mc)
		if errors.Is(err, unix.EADDRINUSE) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("UDP source socket on %s: %w", addr, err)
		}
		if err := discardReceived(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("UDP source socket on %s: %w", addr, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("no free UDP source port on %s in %d-%d", addr, srcPortMin, srcPortMax)
}

func newConn(f *poller.FD, g *group, local netip.AddrPort, opt Options) *Conn {
	n := opt.Batch
	c := &Conn{
		fd:       f,
		group:    g,
		local:    local,
		v6:       local.Addr().Is6(),
		batch:    n,
		gro:      opt.GRO,
		fields:   opt.Outer.PerDatagram,
		dontFrag: opt.Outer.DontFragment,
		df:       !opt.Outer.NoDontFragment,
		rmsgs:    make([]unix.Mmsghdr, n),
		riovs:    make([]unix.Iovec, n),
		rnames:   make([]unix.RawSockaddrInet6, n),
		roob:     make([]byte, n*cmsgSpace),
		smsgs:    make([]unix.Mmsghdr, n),
		// A message has up to maxGSOSegments iovecs when GSO is on.
		siovs: make([]unix.Iovec, n*maxGSOSegments),
		soob:  make([]byte, n*sendOOBSpace),
	}
	c.snameV4 = (*unix.RawSockaddrInet4)(unsafe.Pointer(&c.sname))
	if c.gro {
		c.rbufs = make([][]byte, n)
		for i := range c.rbufs {
			c.rbufs[i] = make([]byte, maxReadOffset+groBufSize)
		}
	}
	return c
}
