package overlay

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/offload"
)

var (
	ndMAC1    = fdb.MAC{0x02, 0xbb, 0, 0, 0, 1}
	ndMAC2    = fdb.MAC{0x02, 0xbb, 0, 0, 0, 2}
	ndIP1     = netip.MustParseAddr("fd00::1")
	ndIP2     = netip.MustParseAddr("fd00::2")
	unspec6   = netip.IPv6Unspecified()
	solicited = netip.MustParseAddr("ff02::1:ff00:2") // of ndIP2
)

// ndFrame builds an Ethernet frame holding a neighbour solicitation
// (typ 135) or advertisement (136) from ethSrc, with a correct checksum
// and hop limit 255, with a link-layer address option of the message's
// kind when ll is not nil.
func ndFrame(t testing.TB, typ uint8, ethSrc fdb.MAC, src, dst, target netip.Addr, flags uint8, ll *fdb.MAC) []byte {
	t.Helper()
	ethDst := net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 2}
	if !dst.IsMulticast() {
		ethDst = net.HardwareAddr{0x02, 0xbb, 0, 0, 0, 9}
	}
	eth := &layers.Ethernet{SrcMAC: ethSrc[:], DstMAC: ethDst, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	var opts layers.ICMPv6Options
	var msg gopacket.SerializableLayer
	if typ == layers.ICMPv6TypeNeighborSolicitation {
		if ll != nil {
			opts = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: ll[:]}}
		}
		msg = &layers.ICMPv6NeighborSolicitation{TargetAddress: target.AsSlice(), Options: opts}
	} else {
		if ll != nil {
			opts = layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: ll[:]}}
		}
		msg = &layers.ICMPv6NeighborAdvertisement{Flags: flags, TargetAddress: target.AsSlice(), Options: opts}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, icmp, msg); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// resum recomputes the ICMPv6 checksum of an IPv6 frame changed by hand,
// so that a test reaches the check it is about.
func resum(f []byte) []byte {
	ip := f[14:]
	icmp := ip[40 : 40+int(binary.BigEndian.Uint16(ip[4:6]))]
	clear(icmp[2:4])
	sum := offload.PseudoHeaderSum(58, ip[8:24], ip[24:40], uint32(len(icmp)))
	binary.BigEndian.PutUint16(icmp[2:4], ^offload.Checksum(icmp, uint32(sum)))
	return f
}

func TestParseND(t *testing.T) {
	ns := func(src, dst netip.Addr, ll *fdb.MAC) []byte {
		return ndFrame(t, layers.ICMPv6TypeNeighborSolicitation, ndMAC1, src, dst, ndIP2, 0, ll)
	}
	na := func(dst netip.Addr, flags uint8, ll *fdb.MAC) []byte {
		return ndFrame(t, layers.ICMPv6TypeNeighborAdvertisement, ndMAC1, ndIP1, dst, ndIP1, flags, ll)
	}
	other := ndMAC2
	for _, c := range []struct {
		name  string
		frame []byte
		nd    bool       // a valid NS or NA
		claim netip.Addr // what ndMAC1 claims; invalid: nothing
	}{
		{"NS with source option", ns(ndIP1, solicited, &ndMAC1), true, ndIP1},
		{"unicast NS without options", ns(ndIP1, ndIP2, nil), true, netip.Addr{}},
		{"NS whose option names another MAC", ns(ndIP1, solicited, &other), true, netip.Addr{}},
		{"DAD NS from ::", ns(unspec6, solicited, nil), true, netip.Addr{}},
		{"NS from :: with a source option", ns(unspec6, solicited, &ndMAC1), false, netip.Addr{}},
		{"NS from :: not to a solicited-node address", ns(unspec6, ndIP2, nil), false, netip.Addr{}},
		{"NA with target option", na(ndIP2, 0x60, &ndMAC1), true, ndIP1},
		{"NA without options", na(ndIP2, 0x60, nil), true, ndIP1},
		{"NA whose option names another MAC", na(ndIP2, 0x60, &other), true, netip.Addr{}},
		{"unsolicited NA to all nodes", na(netip.MustParseAddr("ff02::1"), 0x20, &ndMAC1), true, ndIP1},
		{"NA to all nodes with S set", na(netip.MustParseAddr("ff02::1"), 0x60, &ndMAC1), false, netip.Addr{}},
		{"NS with Ethernet padding", append(ns(ndIP1, solicited, &ndMAC1), 0, 0, 0, 0), true, ndIP1},
		{"hop limit 64", func() []byte { f := ns(ndIP1, solicited, &ndMAC1); f[21] = 64; return f }(), false, netip.Addr{}},
		{"bad checksum", func() []byte { f := ns(ndIP1, solicited, &ndMAC1); f[56] ^= 1; return f }(), false, netip.Addr{}},
		{"code 1", func() []byte { f := ns(ndIP1, solicited, &ndMAC1); f[55] = 1; return resum(f) }(), false, netip.Addr{}},
		{"multicast target", func() []byte { f := ns(ndIP1, solicited, &ndMAC1); f[62] = 0xff; return resum(f) }(), false, netip.Addr{}},
		{"option of length 0", func() []byte { f := ns(ndIP1, solicited, &ndMAC1); f[79] = 0; return resum(f) }(), false, netip.Addr{}},
		{"option longer than the packet", func() []byte { f := ns(ndIP1, solicited, &ndMAC1); f[79] = 2; return resum(f) }(), false, netip.Addr{}},
		{"option cut after its type", func() []byte {
			f := ns(ndIP1, solicited, &ndMAC1)
			binary.BigEndian.PutUint16(f[18:20], 25)
			return resum(f[:14+40+25])
		}(), false, netip.Addr{}},
		{"payload length beyond the frame", func() []byte { f := ns(ndIP1, solicited, &ndMAC1); return f[:len(f)-1] }(), false, netip.Addr{}},
		{"payload length below a message", func() []byte {
			f := ns(ndIP1, solicited, &ndMAC1)
			binary.BigEndian.PutUint16(f[18:20], 20)
			return f
		}(), false, netip.Addr{}},
		{"router solicitation", func() []byte { f := ns(ndIP1, solicited, &ndMAC1); f[54] = 133; return resum(f) }(), false, netip.Addr{}},
		{"not ICMPv6", func() []byte { f := ns(ndIP1, solicited, &ndMAC1); f[20] = 17; return f }(), false, netip.Addr{}},
		{"short frame", ns(ndIP1, solicited, &ndMAC1)[:60], false, netip.Addr{}},
		{"IPv4", make([]byte, 100), false, netip.Addr{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := parseND(c.frame)
			if (m.ip != nil) != c.nd {
				t.Fatalf("parsed as neighbour discovery: %v, want %v", m.ip != nil, c.nd)
			}
			if m.ip == nil {
				return
			}
			claim, ok := m.claim(ndMAC1)
			if ok != c.claim.IsValid() || claim != c.claim && ok {
				t.Fatalf("claim %v %v, want %v", claim, ok, c.claim)
			}
		})
	}
}

// The advertisement answerNS writes is what gopacket decodes as one, with
// the checksum gopacket computes itself, for a solicitation of each kind.
func TestAnswerNSIsAValidAdvertisement(t *testing.T) {
	allNodes := netip.MustParseAddr("ff02::1")
	for _, c := range []struct {
		name      string
		src, dst  netip.Addr
		ll        *fdb.MAC
		wantDst   netip.Addr
		wantFlags uint8
	}{
		{"multicast", ndIP1, solicited, &ndMAC1, ndIP1, 0x60},
		{"unicast", ndIP1, ndIP2, nil, ndIP1, 0x60},
		{"duplicate address detection", unspec6, solicited, nil, allNodes, 0x20},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := ndFrame(t, layers.ICMPv6TypeNeighborSolicitation, ndMAC1, c.src, c.dst, ndIP2, 0, c.ll)
			if parseND(ns).ip == nil {
				t.Fatal("test solicitation does not parse")
			}
			buf := make([]byte, 256)
			frame := buf[:copy(buf, ns)]
			out := answerNS(frame, ndMAC2)
			if len(out) != ndAnswerLen {
				t.Fatalf("answer of %d bytes, want %d", len(out), ndAnswerLen)
			}
			p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
			eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
			na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
			if eth == nil || ip == nil || icmp == nil || na == nil {
				t.Fatalf("not decoded as an advertisement: %v", p)
			}
			switch {
			case !bytes.Equal(eth.DstMAC, ndMAC1[:]) || !bytes.Equal(eth.SrcMAC, ndMAC2[:]):
				t.Errorf("Ethernet %v -> %v, want %v -> %v", eth.SrcMAC, eth.DstMAC, ndMAC2, ndMAC1)
			case !ip.SrcIP.Equal(ndIP2.AsSlice()) || !ip.DstIP.Equal(c.wantDst.AsSlice()):
				t.Errorf("IPv6 %v -> %v, want %v -> %v", ip.SrcIP, ip.DstIP, ndIP2, c.wantDst)
			case ip.HopLimit != 255:
				t.Errorf("hop limit %d, want 255", ip.HopLimit)
			case na.Flags != c.wantFlags:
				t.Errorf("flags %#x, want %#x", na.Flags, c.wantFlags)
			case !na.TargetAddress.Equal(ndIP2.AsSlice()):
				t.Errorf("target %v, want %v", na.TargetAddress, ndIP2)
			case len(na.Options) != 1 || na.Options[0].Type != layers.ICMPv6OptTargetAddress || !bytes.Equal(na.Options[0].Data, ndMAC2[:]):
				t.Errorf("options %v, want the target link-layer address %v", na.Options, ndMAC2)
			}
			// gopacket serializes the decoded layers with the checksum it
			// computes: the same bytes if ours is right.
			if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
				t.Fatal(err)
			}
			re := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(re, gopacket.SerializeOptions{ComputeChecksums: true}, eth, ip, icmp, na); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(re.Bytes(), out) {
				t.Errorf("checksum %#04x, gopacket computes %#04x", out[56:58], re.Bytes()[56:58])
			}
		})
	}
}

func TestNDNoAllocs(t *testing.T) {
	ns := ndFrame(t, layers.ICMPv6TypeNeighborSolicitation, ndMAC1, ndIP1, solicited, ndIP2, 0, &ndMAC1)
	buf := make([]byte, 256)
	if a := testing.AllocsPerRun(1000, func() {
		frame := buf[:copy(buf, ns)]
		m := parseND(frame)
		if _, ok := m.claim(ndMAC1); !ok || answerNS(frame, ndMAC2) == nil {
			t.Fatal("solicitation not parsed or answered")
		}
	}); a != 0 {
		t.Fatalf("%v allocs per solicitation parsed and answered, want 0", a)
	}
}

// FuzzND feeds frames to the parser and answers every solicitation it
// accepts: nothing panics, what it returns is a view of the frame, and
// each answer is an advertisement the parser accepts, for the same
// target, from the given MAC, to the solicitor.
func FuzzND(f *testing.F) {
	f.Add(ndFrame(f, layers.ICMPv6TypeNeighborSolicitation, ndMAC1, ndIP1, solicited, ndIP2, 0, &ndMAC1))
	f.Add(ndFrame(f, layers.ICMPv6TypeNeighborSolicitation, ndMAC1, unspec6, solicited, ndIP2, 0, nil))
	f.Add(ndFrame(f, layers.ICMPv6TypeNeighborAdvertisement, ndMAC1, ndIP1, ndIP2, ndIP1, 0x60, &ndMAC1))
	f.Fuzz(func(t *testing.T, frame []byte) {
		m := parseND(frame)
		if m.ip == nil {
			return
		}
		if len(m.ip) > len(frame)-14 || &m.ip[0] != &frame[14] {
			t.Fatal("the packet is not a view of the frame")
		}
		_, _ = m.claim(fdb.MAC(frame[6:12]))
		if !m.isSolicitation() {
			return
		}
		solicitor, from, target := fdb.MAC(frame[6:12]), ndSource(m.ip), ndTarget(m.ip)
		buf := make([]byte, max(len(frame), ndAnswerLen))
		out := answerNS(buf[:copy(buf, frame)], ndMAC2)
		a := parseND(out)
		switch {
		case a.ip == nil || a.isSolicitation():
			t.Fatalf("answer % x is no valid advertisement", out)
		case ndTarget(a.ip) != target || ndSource(a.ip) != target:
			t.Fatalf("answer for %v from %v, want %v", ndTarget(a.ip), ndSource(a.ip), target)
		case !a.hasLL || a.ll != ndMAC2 || fdb.MAC(out[6:12]) != ndMAC2 || fdb.MAC(out[0:6]) != solicitor:
			t.Fatal("answer not from the target's MAC to the solicitor")
		case from.IsUnspecified() != (netip.AddrFrom16([16]byte(a.ip[24:40])) == netip.MustParseAddr("ff02::1")):
			t.Fatalf("answer to a solicitation from %v goes to % x", from, a.ip[24:40])
		}
	})
}
