//go:build linux

package udp_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/udp"
)

// outerRx is a plain socket that reports the TTL (hop limit) and TOS
// (traffic class) of the IP header of each datagram it receives.
type outerRx struct {
	c  *net.UDPConn
	v6 bool
}

func listenOuter(t *testing.T, addr string) *outerRx {
	t.Helper()
	a := netip.MustParseAddrPort(addr)
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	err = rc.Control(func(sfd uintptr) {
		fd := int(sfd)
		if a.Addr().Is4() {
			serr = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTTL, 1)
			if serr == nil {
				serr = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
			}
			return
		}
		serr = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1)
		}
	})
	if err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return &outerRx{c: c, v6: a.Addr().Is6()}
}

func (r *outerRx) addr() netip.AddrPort {
	return r.c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// read returns the next datagram's first byte, TTL and TOS.
func (r *outerRx) read(t *testing.T) (first byte, ttl, tos int) {
	t.Helper()
	buf, oob := make([]byte, 2048), make([]byte, 256)
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, oobn, _, _, err := r.c.ReadMsgUDP(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	ttl, tos = -1, -1
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TTL,
			m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_HOPLIMIT:
			ttl = int(m.Data[0])
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS,
			m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_TCLASS:
			tos = int(m.Data[0])
		}
	}
	return buf[0], ttl, tos
}

// fieldsOf takes a datagram's TTL and TOS from its second and third bytes.
func fieldsOf(datagram []byte) (ttl, tos uint8) { return datagram[1], datagram[2] }

// TestOuterTTLAndTOS: datagrams leave with the fixed TTL and TOS of
// Outer, or with each datagram's own through PerDatagram, also when GSO
// sends them in runs and from the source ports of SendFlow.
func TestOuterTTLAndTOS(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			rx := listenOuter(t, addr)
			fixed := listen(t, addr, 1, udp.Options{Batch: 8, GSO: true, SourcePorts: 2, Outer: udp.Outer{TTL: 7, TOS: 0x28}})[0]
			pkts := datagrams(4, 500, 0)
			if err := fixed.SendFlow(pkts, rx.addr(), 1); err != nil {
				t.Fatal(err)
			}
			for range pkts {
				if b, ttl, tos := rx.read(t); ttl != 7 || tos != 0x28 {
					t.Errorf("fixed, datagram %d: TTL %d TOS %#x, want 7 and 0x28", b, ttl, tos)
				}
			}

			per := listen(t, addr, 1, udp.Options{Batch: 8, GSO: true, SourcePorts: 2, Outer: udp.Outer{TTL: 7, PerDatagram: fieldsOf}})[0]
			// Six equal-sized datagrams: GSO would send them as one
			// run but for their fields, which change twice.
			want := [][2]int{{10, 0x04}, {10, 0x04}, {20, 0x04}, {20, 0xb8}, {20, 0xb8}, {255, 0}}
			pkts = datagrams(len(want), 500, 0)
			for i, w := range want {
				pkts[i][1], pkts[i][2] = byte(w[0]), byte(w[1])
			}
			if err := per.SendFlow(pkts, rx.addr(), 1); err != nil {
				t.Fatal(err)
			}
			for i, w := range want {
				b, ttl, tos := rx.read(t)
				if int(b) != i || ttl != w[0] || tos != w[1] {
					t.Errorf("per datagram: datagram %d has TTL %d TOS %#x, want datagram %d with TTL %d TOS %#x", b, ttl, tos, i, w[0], w[1])
				}
			}
		})
	}
}

// TestOuterDontFragmentAndChecksum: "df unset" clears DF and lets the
// kernel fragment; no UDP checksum sets SO_NO_CHECK on IPv4 and turns GSO
// off, which the kernel would refuse.
func TestOuterDontFragmentAndChecksum(t *testing.T) {
	for _, tc := range []struct {
		addr       string
		level, opt int
		want       int
		name       string
	}{
		{"127.0.0.1:0", unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT, "IP_MTU_DISCOVER"},
		{"127.0.0.1:0", unix.SOL_SOCKET, unix.SO_NO_CHECK, 1, "SO_NO_CHECK"},
		{"[::1]:0", unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DONT, "IPV6_MTU_DISCOVER"},
		{"[::1]:0", unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 0, "IPV6_DONTFRAG"},
	} {
		cs, err := udp.Listen(netip.MustParseAddrPort(tc.addr), 1, udp.Options{Batch: 8, SourcePorts: 1,
			Outer: udp.Outer{NoDontFragment: true, NoChecksum: true}})
		if err != nil {
			t.Fatal(err)
		}
		c := cs[0]
		defer c.Close()
		if got, err := sockopt(c, tc.level, tc.opt); err != nil || got != tc.want {
			t.Errorf("%s on %s: %d, %v; want %d", tc.name, tc.addr, got, err, tc.want)
		}
	}

	// Without checksum, GSO is off from the start: a run leaves
	// unsegmented, without the refusal and its warning.
	var log netlab.LockedBuffer
	cs, err := udp.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 1, udp.Options{Batch: 8, GSO: true,
		Outer: udp.Outer{NoChecksum: true}, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tx := cs[0]
	defer tx.Close()
	rx := listenOuter(t, "127.0.0.1:0")
	if err := tx.Send(datagrams(4, 500, 0), rx.addr()); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if b, _, _ := rx.read(t); int(b) != i {
			t.Fatalf("datagram %d arrived as %d", i, b)
		}
	}
	if l := log.String(); strings.Contains(l, "refused") || !strings.Contains(l, "UDP segmentation offload is off") {
		t.Fatalf("log %q: want GSO turned off when the socket opened, not refused on send", l)
	}
}

// TestOuterDontFragmentPerDatagram: with DontFragment, each datagram
// leaves with its own DF, in the same batch and the same run of GSO, from
// the listening port and from the source ports: on a loopback whose MTU
// is 1300, a larger datagram without DF arrives in fragments, one with DF
// is refused, and smaller ones with DF around them arrive whole.
func TestOuterDontFragmentPerDatagram(t *testing.T) {
	lab := netlab.NewForTest(t)
	ns, err := lab.Namespace("df")
	if err != nil {
		t.Fatal(err)
	}
	ns.MustRun(t, "ip", "link", "set", "lo", "mtu", "1300", "up")
	// DF is the datagram's second byte.
	dfOf := func(d []byte) bool { return d[1] != 0 }
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			var tx *udp.Conn
			var rx *outerRx
			err := ns.Do(func() error {
				cs, err := udp.Listen(netip.MustParseAddrPort(addr), 1, udp.Options{Batch: 8, GSO: true, SourcePorts: 2,
					Outer: udp.Outer{DontFragment: dfOf}})
				if err != nil {
					return err
				}
				tx = cs[0]
				c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
				rx = &outerRx{c: c}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tx.Close(); rx.c.Close() })
			for _, send := range []struct {
				name string
				fn   func([][]byte) error
			}{
				{"Send", func(b [][]byte) error { return tx.Send(b, rx.addr()) }},
				{"SendFlow", func(b [][]byte) error { return tx.SendFlow(b, rx.addr(), 7) }},
			} {
				// Sizes and DF: the two small ones with DF are one run
				// of GSO. The kernel refuses a run of segments larger
				// than the MTU, DF or not, so the large ones grow.
				want := []struct {
					size int
					df   bool
				}{{500, true}, {500, true}, {1900, false}, {2000, false}, {500, true}, {2000, false}}
				pkts := make([][]byte, len(want))
				for i, w := range want {
					pkts[i] = bytes.Repeat([]byte{byte(i)}, w.size)
					if w.df {
						pkts[i][1] = 1
					} else {
						pkts[i][1] = 0
					}
				}
				if err := send.fn(pkts); err != nil {
					t.Fatalf("%s: %v", send.name, err)
				}
				buf := make([]byte, 4096)
				for i, w := range want {
					rx.c.SetReadDeadline(time.Now().Add(5 * time.Second))
					n, err := rx.c.Read(buf)
					if err != nil || n != w.size || buf[0] != byte(i) {
						t.Fatalf("%s: datagram %d (%d bytes, DF %v): read %d bytes of %d, %v", send.name, i, w.size, w.df, n, buf[0], err)
					}
				}
				big := bytes.Repeat([]byte{9, 1}, 1000)
				if err := send.fn([][]byte{big}); !errors.Is(err, unix.EMSGSIZE) {
					t.Fatalf("%s: 2000 bytes with DF on a path of 1300: %v, want EMSGSIZE", send.name, err)
				}
			}
		})
	}
}
