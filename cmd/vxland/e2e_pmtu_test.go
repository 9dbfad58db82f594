package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/internal/netlab"
)

// Path MTU discovery across the overlay, as with the kernel's vxlan with
// "df set" and a device MTU above what the path carries: containers of MTU
// 1500 on the bridge, vxland's overlay MTU 1450 (a 1500-byte underlay)
// and --tap-mtu 1500, so that the bridge hands their 1500-byte packets to
// vxland. A DF probe of 1500 bytes gets ICMP "fragmentation needed" (and
// ICMPv6 "packet too big") with MTU 1450, and the container's route learns
// it; TCP learns it by itself and its transfers arrive whole; the underlay
// carries no IP fragment and no datagram larger than its MTU.
func TestPathMTUDiscovery(t *testing.T) {
	tp := newTopo(t, 45)
	tp.mtu = 1500 // the containers'
	h1, h2 := tp.addHost(), tp.addHost()
	// A wire segments what it carries; a veth passes UDP_SEGMENT
	// super-datagrams whole, which a capture would see as datagrams
	// larger than the MTU that no wire ever carries.
	capture := haveTools("tcpdump", "ethtool") == nil
	if capture {
		for _, h := range tp.hosts {
			h.ns.MustRun(t, "ethtool", "-K", "eth0", "tx-udp-segmentation", "off")
		}
	}
	tp.startAll("--tap-mtu", "1500")
	if link := h1.ns.MustRun(t, "ip", "link", "show", "vxtap0"); !strings.Contains(link, "mtu 1500 ") {
		t.Fatalf("the TAP's link MTU is not --tap-mtu 1500:\n%s", link)
	}
	c1, c2, c3 := tp.addContainer(h1), tp.addContainer(h2), tp.addContainer(h2)
	for _, c := range []*testContainer{c1, c3} {
		c.ns.MustRun(t, "ip", "addr", "add", c.ipv6()+"/64", "dev", "eth0", "nodad")
	}

	var stopCapture func() string
	if capture {
		stopCapture = captureUnderlay(t, h1)
	} else {
		t.Logf("no underlay capture: %v", haveTools("tcpdump", "ethtool"))
	}

	ctx := testCtx(t, 60*time.Second)
	const size = 4 << 20
	if err := netlab.TCPTransfer(ctx, c1.ns, c2.ns, c2.ip+":5001", size); err != nil {
		t.Fatalf("c1 -> c2: %v", err)
	}
	// From another container: c1 now advertises the MSS of the MTU it
	// learned for c2 to c2, which would then send nothing too big.
	if err := netlab.TCPTransfer(ctx, c3.ns, c1.ns, c1.ip+":5002", size); err != nil {
		t.Fatalf("c3 -> c1: %v", err)
	}
	t.Logf("TCP: %d bytes each way arrived intact", size)
	for _, p := range [][2]*testContainer{{c1, c2}, {c3, c1}} {
		if route := p[0].ns.MustRun(t, "ip", "route", "get", p[1].ip); !strings.Contains(route, "mtu 1450") {
			t.Errorf("after TCP to %s, the route of %s did not learn MTU 1450:\n%s", p[1].ip, p[0].ns, route)
		}
	}

	for _, dst := range []string{c3.ip, c3.ipv6()} {
		mtu, err := probeDF(c1.ns, dst, 1500)
		if err != nil {
			t.Fatalf("DF probe of 1500 bytes to %s: %v", dst, err)
		}
		if mtu != 1450 {
			t.Fatalf("DF probe of 1500 bytes to %s: the answer says MTU %d, want 1450", dst, mtu)
		}
		route := c1.ns.MustRun(t, "ip", "route", "get", dst)
		if !strings.Contains(route, "mtu 1450") {
			t.Fatalf("after the probe, c1's route to %s did not learn MTU 1450:\n%s", dst, route)
		}
		t.Logf("DF probe of 1500 bytes to %s: too big, mtu = %d; route: %s", dst, mtu, strings.Join(strings.Fields(route), " "))
	}

	// The healer keeps the TAP at its link MTU, not the overlay's.
	heals := tp.heals(h1)
	h1.ns.MustRun(t, "ip", "link", "set", "vxtap0", "mtu", "1450")
	waitFor(t, 10*time.Second, "the TAP's MTU back to 1500", func() bool {
		return strings.Contains(h1.ns.MustRun(t, "ip", "link", "show", "vxtap0"), "mtu 1500 ") && tp.heals(h1) > heals
	})

	s1, s2 := tp.stats(h1), tp.stats(h2)
	for _, h := range []struct {
		name string
		sent uint64
		too  uint64
	}{{"h1", s1.ICMPTooBigSent, s1.Drops["too_big"]}, {"h2", s2.ICMPTooBigSent, s2.Drops["too_big"]}} {
		if h.sent == 0 || h.too == 0 {
			t.Errorf("%s counted %d too_big drops and %d ICMP answers; want both", h.name, h.too, h.sent)
		}
		t.Logf("%s: %d packets too big, %d ICMP answers", h.name, h.too, h.sent)
	}
	if stopCapture != nil {
		t.Log(stopCapture())
	}

	// A restart adopts the persistent TAP and gives it the link MTU now
	// asked for: without --tap-mtu, the overlay's.
	stop(t, h1, "")
	tp.start(h1, []string{h2.ip})
	if link := h1.ns.MustRun(t, "ip", "link", "show", "vxtap0"); !strings.Contains(link, "mtu 1450 ") ||
		!strings.Contains(h1.proc.Output(), "adopting the existing TAP") {
		t.Fatalf("the adopted TAP did not take the overlay MTU 1450:\n%s", link)
	}
}

// ipv6 is the container's IPv6 address, fd00:200::N for 10.200.0.N.
func (c *testContainer) ipv6() string {
	return "fd00:200::" + c.ip[strings.LastIndexByte(c.ip, '.')+1:]
}

// haveTools returns an error naming the first of tools not installed.
func haveTools(tools ...string) error {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed", tool)
		}
	}
	return nil
}

// captureUnderlay captures h's underlay (eth0) with tcpdump until the
// returned function is called, which checks that the capture holds VXLAN
// datagrams, no IPv4 fragment and nothing larger than the underlay's MTU,
// and says what it saw.
func captureUnderlay(t *testing.T, h *testHost) func() string {
	t.Helper()
	packets, stopCapture := tcpdumpUnderlay(t, h)
	return func() string {
		t.Helper()
		out := stopCapture()
		pkts := packets()
		var vxlan, fragments, oversize, noDF, largest int
		for _, pkt := range pkts {
			ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if !ok {
				continue
			}
			if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
				fragments++
			}
			if ip.Length > 1500 {
				oversize++
			}
			largest = max(largest, int(ip.Length))
			if udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && udp.DstPort == encap.DefaultPort {
				vxlan++
				if ip.Flags&layers.IPv4DontFragment == 0 {
					noDF++
				}
			}
		}
		if vxlan < (4<<20)/1500 {
			t.Errorf("the underlay capture holds %d VXLAN datagrams, too few for the transfers:\n%s", vxlan, out)
		}
		if fragments != 0 || oversize != 0 || noDF != 0 {
			t.Errorf("the underlay carried %d IPv4 fragments, %d packets over its MTU 1500 and %d VXLAN datagrams without DF; want none",
				fragments, oversize, noDF)
		}
		return fmt.Sprintf("underlay capture: %d VXLAN datagrams, the largest IP packet %d bytes, %d fragments, %d over MTU 1500 (%s)",
			vxlan, largest, fragments, oversize, strings.Join(strings.Fields(lastLine(out, "dropped by kernel")), " "))
	}
}

// tcpdumpUnderlay captures h's underlay (eth0), the first 128 bytes of
// each packet, with tcpdump until stop is called, which returns what
// tcpdump said; packets returns what it captured so far.
func tcpdumpUnderlay(t *testing.T, h *testHost) (packets func() []gopacket.Packet, stop func() string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "underlay.pcap")
	p, err := h.ns.Start("tcpdump", "-i", "eth0", "-n", "-U", "-Z", "root", "-s", "128", "-w", file)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "tcpdump listening", func() bool { return strings.Contains(p.Output(), "listening on") })
	packets = func() []gopacket.Packet { return readPcapFile(t, file, true) }
	stop = func() string {
		p.Stop(5 * time.Second)
		return p.Output()
	}
	return packets, stop
}

func lastLine(out, containing string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, containing) {
			return l
		}
	}
	return ""
}

// probeDF sends UDP datagrams of size bytes (IP packet) with DF from ns to
// dst, as ping -M do does, until an ICMP "fragmentation needed" or ICMPv6
// "packet too big" comes back, and returns the MTU it carries, read from
// the socket's error queue (IP_RECVERR) as ping reads it.
func probeDF(ns *netlab.NS, dst string, size int) (mtu int, err error) {
	addr, err := netip.ParseAddr(dst)
	if err != nil {
		return 0, err
	}
	err = ns.Do(func() error {
		family, level, recvErr, origin, icmpType, icmpCode := unix.AF_INET, unix.SOL_IP, unix.IP_RECVERR, unix.SO_EE_ORIGIN_ICMP, 3, 4
		headers := 20 + 8
		var sa unix.Sockaddr
		if addr.Is6() {
			family, level, recvErr, origin, icmpType, icmpCode = unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_RECVERR, unix.SO_EE_ORIGIN_ICMP6, 2, 0
			headers = 40 + 8
			sa = &unix.SockaddrInet6{Port: 9, Addr: addr.As16()}
		} else {
			sa = &unix.SockaddrInet4{Port: 9, Addr: addr.As4()}
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if addr.Is6() {
			err = unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO)
		} else {
			err = unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
		}
		if err == nil {
			err = unix.SetsockoptInt(fd, level, recvErr, 1)
		}
		if err == nil {
			err = unix.Connect(fd, sa)
		}
		if err != nil {
			return err
		}
		payload := make([]byte, size-headers)
		buf, oob := make([]byte, 2048), make([]byte, 512)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			// Sent while the route still allows it; once it learned
			// the MTU the kernel refuses (EMSGSIZE), and the answer
			// is in the error queue already.
			if _, err := unix.Write(fd, payload); err != nil && !errors.Is(err, unix.EMSGSIZE) {
				return err
			}
			for {
				_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
				if err != nil {
					break // nothing (more) queued
				}
				msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
				if err != nil {
					return err
				}
				for _, m := range msgs {
					if m.Header.Level != int32(level) || m.Header.Type != int32(recvErr) || len(m.Data) < int(unsafe.Sizeof(unix.SockExtendedErr{})) {
						continue
					}
					ee := (*unix.SockExtendedErr)(unsafe.Pointer(&m.Data[0]))
					if int(ee.Origin) == origin && int(ee.Type) == icmpType && int(ee.Code) == icmpCode {
						mtu = int(ee.Info)
						return nil
					}
				}
			}
		}
		return errors.New("no ICMP too-big answer came back")
	})
	return mtu, err
}
