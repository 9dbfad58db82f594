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
func tooBigFrame(t testing.TB, v6 bool, ipLen int, edit func(gopacket.SerializableLayer)) []byte {
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
		checkTooBigAnswer(t, frame, out[:n], 1450)
		if want := map[bool]int{false: 576, true: 1280}[v6]; n-ethHeaderLen != want {
			t.Errorf("v6=%v: answer of %d bytes, want %d", v6, n-ethHeaderLen, want)
		}
	}
}

// checkTooBigAnswer checks, as gopacket reads it, that answer is the ICMP
// "too big" answer to frame for mtu: from the TAP to the sender, from the
// packet's destination to its source, with the MTU, valid checksums and
// as much of the packet quoted as the answer's size limit allows.
func checkTooBigAnswer(t *testing.T, frame, answer []byte, mtu int) {
	t.Helper()
	p := gopacket.NewPacket(answer, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("answer does not decode: %v", el.Error())
	}
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.SrcMAC, tapMAC[:]) || !bytes.Equal(eth.DstMAC, frame[6:12]) {
		t.Errorf("Ethernet %s -> %s, want from the TAP to the sender", eth.SrcMAC, eth.DstMAC)
	}
	ip := frame[ethHeaderLen:]
	if eth.EthernetType == layers.EthernetTypeIPv4 {
		ip4, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if ip4 == nil || icmp == nil {
			t.Fatalf("answer is not ICMP over IPv4: %v", p)
		}
		if !ip4.SrcIP.Equal(net.IP(ip[16:20])) || !ip4.DstIP.Equal(net.IP(ip[12:16])) || int(ip4.Length) != len(answer)-ethHeaderLen {
			t.Errorf("IPv4 %s -> %s length %d", ip4.SrcIP, ip4.DstIP, ip4.Length)
		}
		if refSum(answer[ethHeaderLen:ethHeaderLen+ipv4MinHeaderLen], 0) != 0xffff {
			t.Error("IPv4 header checksum does not verify")
		}
		if icmp.TypeCode != layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded) || icmp.Seq != uint16(mtu) {
			t.Errorf("ICMP %s, next-hop MTU %d; want fragmentation needed, %d", icmp.TypeCode, icmp.Seq, mtu)
		}
		if refSum(answer[ethHeaderLen+ipv4MinHeaderLen:], 0) != 0xffff {
			t.Error("ICMP checksum does not verify")
		}
		if quoted := min(len(ip), 576-28); len(answer)-ethHeaderLen != 28+quoted || !bytes.Equal(icmp.Payload, ip[:quoted]) {
			t.Errorf("answer of %d bytes does not quote the first %d bytes of the packet", len(answer)-ethHeaderLen, quoted)
		}
		return
	}
	ip6, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if ip6 == nil || icmp == nil {
		t.Fatalf("answer is not ICMPv6 over IPv6: %v", p)
	}
	if !ip6.SrcIP.Equal(net.IP(ip[24:40])) || !ip6.DstIP.Equal(net.IP(ip[8:24])) || int(ip6.Length) != len(answer)-ethHeaderLen-ipv6HeaderLen {
		t.Errorf("IPv6 %s -> %s length %d", ip6.SrcIP, ip6.DstIP, ip6.Length)
	}
	if icmp.TypeCode != layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0) || binary.BigEndian.Uint32(icmp.Payload[0:4]) != uint32(mtu) {
		t.Errorf("ICMPv6 %s, MTU %d; want packet too big, %d", icmp.TypeCode, binary.BigEndian.Uint32(icmp.Payload[0:4]), mtu)
	}
	l4 := answer[ethHeaderLen+ipv6HeaderLen:]
	ph := append(append([]byte{}, answer[ethHeaderLen+8:ethHeaderLen+40]...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, protoICMPv6)
	if refSum(l4, uint32(refSum(ph, 0))) != 0xffff {
		t.Error("ICMPv6 checksum does not verify")
	}
	if quoted := min(len(ip), 1280-48); len(answer)-ethHeaderLen != 48+quoted || !bytes.Equal(icmp.Payload[4:], ip[:quoted]) {
		t.Errorf("answer of %d bytes does not quote the first %d bytes of the packet", len(answer)-ethHeaderLen, quoted)
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

// FuzzTooBig gives TooBig any frame and MTU. An answer must be one that
// checkTooBigAnswer accepts, and only to a packet that may be answered:
// IPv4 with DF, not a later fragment, from a unicast sender, not itself
// an ICMP error; or IPv6 from a unicast sender, not an ICMPv6 error.
func FuzzTooBig(f *testing.F) {
	v4 := func(e func(*layers.IPv4)) func(gopacket.SerializableLayer) {
		return func(l gopacket.SerializableLayer) { e(l.(*layers.IPv4)) }
	}
	for _, frame := range [][]byte{
		tooBigFrame(f, false, 1500, nil),
		tooBigFrame(f, true, 1500, nil),
		tooBigFrame(f, false, 100, v4(func(ip *layers.IPv4) { ip.Protocol = layers.IPProtocolICMPv4 })),
		tooBigFrame(f, false, 100, v4(func(ip *layers.IPv4) { ip.Flags = 0 })),
		tooBigFrame(f, false, 100, v4(func(ip *layers.IPv4) {
			ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}}
		})),
	} {
		f.Add(frame, uint16(1450))
	}
	out := make([]byte, TooBigFrameLen)
	f.Fuzz(func(t *testing.T, frame []byte, mtu uint16) {
		orig := bytes.Clone(frame)
		n := TooBig(out, frame, tapMAC, int(mtu))
		if !bytes.Equal(frame, orig) {
			t.Fatal("TooBig modified the frame")
		}
		if n == 0 {
			return
		}
		if n > TooBigFrameLen {
			t.Fatalf("answer of %d bytes, more than TooBigFrameLen", n)
		}
		ip := frame[ethHeaderLen:]
		switch binary.BigEndian.Uint16(frame[12:14]) {
		case etherTypeIPv4:
			ihl := int(ip[0]&0x0f) * 4
			if ip[0]>>4 != 4 || ip[6]&0x40 == 0 || binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 ||
				ip[12] >= 224 || ip[12] == 0 || (ip[9] == protoICMP && isICMPError(ip[ihl])) {
				t.Fatalf("answered an IPv4 packet that must not be answered: % x", ip[:min(len(ip), 24)])
			}
		case etherTypeIPv6:
			if ip[0]>>4 != 6 || ip[8] == 0xff || [16]byte(ip[8:24]) == [16]byte{} ||
				(ip[6] == protoICMPv6 && len(ip) > ipv6HeaderLen && ip[ipv6HeaderLen] < 128) {
				t.Fatalf("answered an IPv6 packet that must not be answered: % x", ip[:40])
			}
		default:
			t.Fatalf("answered a frame of type %#04x", frame[12:14])
		}
		checkTooBigAnswer(t, frame, out[:n], int(mtu))
	})
}
