package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
)

// outerFields are the fields of an outer header that the flags set.
type outerFields struct {
	TTL, TOS uint8
	DF       bool
	Checksum bool // the UDP checksum is not zero
}

// sendMarked sends count UDP datagrams holding payload from ns to dst
// (ip:port), with the IP TTL, TOS and DF given: the inner headers that an
// outer header may inherit.
func sendMarked(ns *netlab.NS, dst string, ttl, tos int, df bool, count int, payload []byte) error {
	ap := netip.MustParseAddrPort(dst)
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, ttl); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, tos); err != nil {
			return err
		}
		pmtu := unix.IP_PMTUDISC_DONT
		if df {
			pmtu = unix.IP_PMTUDISC_DO
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, pmtu); err != nil {
			return err
		}
		for range count {
			if err := unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
}

// awaitDatagram reads from rx until a datagram holding want arrives, or
// for at most d.
func awaitDatagram(rx net.PacketConn, want []byte, d time.Duration) error {
	rx.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	for {
		n, _, err := rx.ReadFrom(buf)
		if err != nil {
			return err
		}
		if bytes.Equal(buf[:n], want) {
			return nil
		}
	}
}

// vxlanSent returns the outer fields of the VXLAN datagrams that src sent
// in pkts, split by what the inner frame carries: IPv4 packets whose
// payload starts with marker, and ARP.
func vxlanSent(t *testing.T, pkts []gopacket.Packet, src string, marker []byte) (marked, arp []outerFields) {
	t.Helper()
	for _, pkt := range pkts {
		ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok || ip.SrcIP.String() != src {
			continue
		}
		udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok || udp.DstPort != 4789 || len(udp.Payload) < 8 {
			continue
		}
		f := outerFields{TTL: ip.TTL, TOS: ip.TOS, DF: ip.Flags&layers.IPv4DontFragment != 0, Checksum: udp.Checksum != 0}
		inner := gopacket.NewPacket(udp.Payload[8:], layers.LayerTypeEthernet, gopacket.Default)
		switch {
		case inner.Layer(layers.LayerTypeARP) != nil:
			arp = append(arp, f)
		case inner.ApplicationLayer() != nil && bytes.HasPrefix(inner.ApplicationLayer().Payload(), marker):
			marked = append(marked, f)
		}
	}
	return marked, arp
}

// The outer header's TTL, TOS, DF bit and UDP checksum, as the flags set
// them, read from the underlay: fixed values, then values inherited from
// the inner IPv4 header (the defaults for ARP, which has none). Each run
// sends inner IPv4 with DF and without: with --df inherit the outer DF
// follows, in the same run, and ARP leaves without DF, as the kernel's
// vxlan does.
func TestOuterHeaderOnTheWire(t *testing.T) {
	if err := haveTools("tcpdump"); err != nil {
		t.Skip(err)
	}
	tp := newTopo(t, 45)
	h1, h2 := tp.addHost(), tp.addHost()
	tp.start(h2, []string{h1.ip})
	// h1's vxland starts with each setting below; its bridge stays.
	if err := h1.ns.Bridge("br0"); err != nil {
		t.Fatal(err)
	}
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	rx := listenUDP(t, c2, 7000)
	const innerTTL, innerTOS = 33, 0x88
	for i, tc := range []struct {
		flags []string
		// marked and noDF: IPv4 with DF and without.
		marked, noDF, arp outerFields
	}{
		{[]string{"--ttl", "9", "--tos", "0x20", "--df", "unset", "--udp-csum=false"},
			outerFields{TTL: 9, TOS: 0x20}, outerFields{TTL: 9, TOS: 0x20}, outerFields{TTL: 9, TOS: 0x20}},
		{[]string{"--ttl", "inherit", "--tos", "inherit"},
			outerFields{TTL: innerTTL, TOS: innerTOS, DF: true, Checksum: true}, outerFields{TTL: innerTTL, TOS: innerTOS, DF: true, Checksum: true},
			outerFields{TTL: 64, TOS: 0, DF: true, Checksum: true}},
		{[]string{"--df", "inherit"},
			outerFields{TTL: 64, DF: true, Checksum: true}, outerFields{TTL: 64, DF: false, Checksum: true},
			outerFields{TTL: 64, DF: false, Checksum: true}},
	} {
		t.Run(fmt.Sprint(tc.flags), func(t *testing.T) {
			// Short, to fit the capture's 128 bytes.
			marker, noDFMarker := []byte(fmt.Sprintf("mark%d", i)), []byte(fmt.Sprintf("nodf%d", i))
			if h1.proc != nil {
				stop(t, h1, "")
			}
			tp.start(h1, []string{h2.ip}, tc.flags...)
			c1.ns.MustRun(t, "ip", "neigh", "flush", "all") // an ARP request goes out
			packets, stopCapture := tcpdumpUnderlay(t, h1)
			for _, m := range []struct {
				marker []byte
				df     bool
			}{{marker, true}, {noDFMarker, false}, {marker, true}} {
				if err := sendMarked(c1.ns, c2.ip+":7000", innerTTL, innerTOS, m.df, 5, m.marker); err != nil {
					t.Fatal(err)
				}
			}
			// Delivered: the far end takes what these settings send.
			for _, m := range [][]byte{marker, noDFMarker} {
				if err := awaitDatagram(rx, m, 10*time.Second); err != nil {
					t.Fatalf("c2 received no %q sent with %v: %v", m, tc.flags, err)
				}
			}
			var marked, noDF, arp []outerFields
			waitFor(t, 10*time.Second, "the datagrams sent in the capture", func() bool {
				marked, arp = vxlanSent(t, packets(), h1.ip, marker)
				noDF, _ = vxlanSent(t, packets(), h1.ip, noDFMarker)
				return len(marked) == 10 && len(noDF) == 5 && len(arp) > 0
			})
			t.Log(stopCapture())
			for _, f := range marked {
				if f != tc.marked {
					t.Fatalf("a datagram carrying IPv4 (TTL %d, TOS %#x, DF) left with %+v, want %+v", innerTTL, innerTOS, f, tc.marked)
				}
			}
			for _, f := range noDF {
				if f != tc.noDF {
					t.Fatalf("a datagram carrying IPv4 (TTL %d, TOS %#x, no DF) left with %+v, want %+v", innerTTL, innerTOS, f, tc.noDF)
				}
			}
			for _, f := range arp {
				if f != tc.arp {
					t.Fatalf("a datagram carrying ARP left with %+v, want %+v", f, tc.arp)
				}
			}
			t.Logf("%v: %d datagrams of IPv4 with DF left with %+v, %d without DF with %+v, %d of ARP with %+v",
				tc.flags, len(marked), marked[0], len(noDF), noDF[0], len(arp), arp[0])
		})
	}
}

// With --learning=false a daemon learns no source MAC from what it
// receives, and delivers it all the same; its answers to the unknown MAC
// are flooded.
func TestLearningOff(t *testing.T) {
	tp := newTopo(t, 45)
	h1, h2 := tp.addHost(), tp.addHost()
	tp.start(h1, []string{h2.ip})
	tp.start(h2, []string{h1.ip}, "--learning=false")
	c1, c2 := tp.addContainer(h1), tp.addContainer(h2)
	ctx := testCtx(t, 30*time.Second)
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}
	rx := listenUDP(t, c2, 7000)
	if err := sendUDP(c1.ns, c1.ip, c2.ip+":7000", []byte("unlearned")); err != nil {
		t.Fatal(err)
	}
	rx.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	if n, _, err := rx.ReadFrom(buf); err != nil || string(buf[:n]) != "unlearned" {
		t.Fatalf("c2 received %q, %v; want the datagram", buf[:n], err)
	}
	if n := tp.learnedCount(h2); n != 0 {
		t.Errorf("h2 runs with --learning=false and learned %d MACs: %+v", n, tp.fdb(h2).Entries)
	}
	if n := tp.learnedCount(h1); n == 0 {
		t.Errorf("h1 learns, and learned nothing from c2's answers")
	}
	if s := tp.stats(h2); s.TxFlooded == 0 {
		t.Errorf("h2 flooded nothing: its answers to c1, whose MAC it did not learn, must be flooded")
	}
}
