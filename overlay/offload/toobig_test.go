package offload

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var tapMAC = [6]byte{0x02, 0xaa, 0, 0, 0, 0x01}

// tooBigFrame returns an Ethernet frame holding an IP packet of ipLen
// bytes from the test sender, built with gopacket; edit changes the IP
// layer before it is serialized.
func tooBigFrame(t *testing.T, v6 bool, ipLen int, edit func(gopacket.SerializableLayer)) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}, DstMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}}
	var ip gopacket.SerializableLayer
	payload := gopacket.Payload(bytes.Repeat([]byte{0x5a}, ipLen-ipv4MinHeaderLen-udpHeaderLen))
	udp := &layers.UDP{SrcPort: 40000, DstPort: 5001}
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
			SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
		_ = udp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
		payload = payload[ipv6HeaderLen-ipv4MinHeaderLen:]
	} else {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, Flags: layers.IPv4DontFragment,
			SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2)}
		_ = udp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	}
	if edit != nil {
		edit(ip)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, payload); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// An IPv4 packet with DF gets "fragmentation needed" with the MTU, from
// the packet's destination to its sender, quoting its start; an IPv6
// packet gets "packet too big". Both have correct checksums.
func TestTooBigAnswers(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		frame := tooBigFrame(t, v6, 1500, nil)
		out := make([]byte, TooBigFrameLen)
		n := TooBig(out, frame, tapMAC, 1450)
		if n == 0 {
			t.Fatalf("v6=%v: no answer", v6)
		}
		p := gopacket.NewPacket(out[:n], layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("v6=%v: answer does not decode: %v", v6, el.Error())
		}
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if !bytes.Equal(eth.SrcMAC, tapMAC[:]) || !bytes.Equal(eth.DstMAC, frame[6:12]) {
			t.Errorf("v6=%v: Ethernet %s -> %s, want from the TAP to the sender", v6, eth.SrcMAC, eth.DstMAC)
		}
		ip := frame[ethHeaderLen:]
		if !v6 {
			ip4 := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if !ip4.SrcIP.Equal(net.IPv4(10, 0, 0, 2)) || !ip4.DstIP.Equal(net.IPv4(10, 0, 0, 1)) || int(ip4.Length) != n-ethHeaderLen {
				t.Errorf("IPv4 %s -> %s length %d", ip4.SrcIP, ip4.DstIP, ip4.Length)
			}
			if refSum(out[ethHeaderLen:ethHeaderLen+ipv4MinHeaderLen], 0) != 0xffff {
				t.Error("IPv4 header checksum does not verify")
			}
			if icmp.TypeCode != layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded) || icmp.Seq != 1450 {
				t.Errorf("ICMP %s, next-hop MTU %d; want fragmentation needed, 1450", icmp.TypeCode, icmp.Seq)
			}
			if refSum(out[ethHeaderLen+ipv4MinHeaderLen:n], 0) != 0xffff {
				t.Error("ICMP checksum does not verify")
			}
			if n-ethHeaderLen != 576 || !bytes.Equal(icmp.Payload, ip[:576-28]) {
				t.Errorf("answer of %d bytes does not quote the first %d bytes of the packet", n-ethHeaderLen, 576-28)
			}
			continue
		}
		ip6 := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		icmp := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		if !ip6.SrcIP.Equal(net.ParseIP("fd00::2")) || !ip6.DstIP.Equal(net.ParseIP("fd00::1")) {
			t.Errorf("IPv6 %s -> %s", ip6.SrcIP, ip6.DstIP)
		}
		if icmp.TypeCode != layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0) || binary.BigEndian.Uint32(icmp.Payload[0:4]) != 1450 {
			t.Errorf("ICMPv6 %s, MTU %d; want packet too big, 1450", icmp.TypeCode, binary.BigEndian.Uint32(icmp.Payload[0:4]))
		}
		l4 := out[ethHeaderLen+ipv6HeaderLen : n]
		ph := append(append([]byte{}, out[ethHeaderLen+8:ethHeaderLen+40]...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, protoICMPv6)
		if refSum(l4, uint32(refSum(ph, 0))) != 0xffff {
			t.Error("ICMPv6 checksum does not verify")
		}
		if n-ethHeaderLen != 1280 || !bytes.Equal(icmp.Payload[4:], ip[:1280-48]) {
			t.Errorf("answer of %d bytes does not quote the first %d bytes of the packet", n-ethHeaderLen, 1280-48)
		}
	}
}

// What gets no answer: the sender allowed fragments, or answering would
// break the rules of ICMP.
func TestTooBigNoAnswer(t *testing.T) {
	v4 := func(f func(*layers.IPv4)) func(gopacket.SerializableLayer) {
		return func(l gopacket.SerializableLayer) { f(l.(*layers.IPv4)) }
	}
	cases := []struct {
		name  string
		frame []byte
	}{
		{"IPv4 without DF", tooBigFrame(t, false, 1500, v4(func(ip *layers.IPv4) { ip.Flags = 0 }))},
		{"IPv4 later fragment", tooBigFrame(t, false, 1500, v4(func(ip *layers.IPv4) { ip.FragOffset = 185 }))},
		{"IPv4 group source", tooBigFrame(t, false, 1500, v4(func(ip *layers.IPv4) { ip.SrcIP = net.IPv4(224, 0, 0, 1) }))},
		{"IPv6 multicast source", tooBigFrame(t, true, 1500, func(l gopacket.SerializableLayer) {
			l.(*layers.IPv6).SrcIP = net.ParseIP("ff02::1")
		})},
		{"short", tooBigFrame(t, false, 1500, nil)[:ethHeaderLen+10]},
	}
	icmpErr := tooBigFrame(t, false, 1500, v4(func(ip *layers.IPv4) { ip.Protocol = layers.IPProtocolICMPv4 }))
	icmpErr[ethHeaderLen+ipv4MinHeaderLen] = 3 // destination unreachable
	cases = append(cases, struct {
		name  string
		frame []byte
	}{"ICMP error", icmpErr})
	out := make([]byte, TooBigFrameLen)
	for _, c := range cases {
		if n := TooBig(out, c.frame, tapMAC, 1450); n != 0 {
			t.Errorf("%s: answered with %d bytes", c.name, n)
		}
	}
}

func TestTooBigNoAllocs(t *testing.T) {
	frame := tooBigFrame(t, true, 1500, nil)
	out := make([]byte, TooBigFrameLen)
	if n := testing.AllocsPerRun(100, func() { TooBig(out, frame, tapMAC, 1450) }); n != 0 {
		t.Errorf("TooBig allocates %.0f times", n)
	}
}
