//go:build linux

package overlay

import (
	"bytes"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
)

// TestOffloadTAPWritesUDPRunAsOne writes a run of small UDP datagrams of
// one flow, as the decapsulator hands them over, to an OffloadTAP on a
// bridge: the TAP takes them in one write (one packet on its counters) and
// a container's socket receives every datagram, intact and in order.
func TestOffloadTAPWritesUDPRunAsOne(t *testing.T) {
	lab := netlab.NewForTest(t)
	h, err := lab.Namespace("h")
	if err != nil {
		t.Fatal(err)
	}
	const name = "vxuw0"
	var tap *OffloadTAP
	if err := h.Do(func() error {
		var err error
		tap, err = OpenOffloadTAP(name, 1450)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	if !tap.USO() {
		t.Skip("the kernel refused UDP segmentation offload on the TAP")
	}
	if err := h.Bridge("br0"); err != nil {
		t.Fatal(err)
	}
	if err := h.SetMaster(name, "br0"); err != nil {
		t.Fatal(err)
	}
	h.MustRun(t, "ip", "link", "set", name, "up")
	c, err := lab.Container(h, "br0", "vc0", "c", "10.77.0.2/24", 1450)
	if err != nil {
		t.Fatal(err)
	}
	cmac, err := c.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	var sock int
	if err := c.Do(func() error {
		var err error
		if sock, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((3 * time.Second).Nanoseconds())
		_ = unix.SetsockoptTimeval(sock, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		_ = unix.SetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
		return unix.Bind(sock, &unix.SockaddrInet4{Port: 6000, Addr: [4]byte{10, 77, 0, 2}})
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sock)

	const n, size = 64, 64
	bufs := make([][]byte, n)
	var payloads [][]byte
	for i := range bufs {
		payload := bytes.Repeat([]byte{byte(i)}, size)
		payloads = append(payloads, payload)
		bufs[i] = append(make([]byte, Headroom), udpFrame(t, cmac, uint16(100+i), payload)...)
	}
	before := tapRxPackets(t, h, name)
	if written, err := tap.Write(bufs, Headroom); err != nil || written != n {
		t.Fatalf("Write = %d, %v", written, err)
	}
	buf := make([]byte, 2048)
	for i := range n {
		m, _, err := unix.Recvfrom(sock, buf, 0)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, n, err)
		}
		if !bytes.Equal(buf[:m], payloads[i]) {
			t.Fatalf("datagram %d: got % x, want % x", i, buf[:m], payloads[i])
		}
	}
	if got := tapRxPackets(t, h, name) - before; got != 1 {
		t.Fatalf("the TAP took %d packets for a run of %d datagrams, want 1", got, n)
	}
}

// udpFrame returns an Ethernet frame with a UDP datagram from 10.77.0.1:5000
// to 10.77.0.2:6000, with DF, the given IPv4 ID and valid checksums.
func udpFrame(t *testing.T, dst net.HardwareAddr, id uint16, payload []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0x02, 0, 0, 0, 0x77, 1}, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: id, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IPv4(10, 77, 0, 1), DstIP: net.IPv4(10, 77, 0, 2)}
	udp := &layers.UDP{SrcPort: 5000, DstPort: 6000}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func tapRxPackets(t *testing.T, ns *netlab.NS, dev string) uint64 {
	t.Helper()
	out := ns.MustRun(t, "ip", "-s", "-j", "link", "show", "dev", dev)
	var links []struct {
		Stats64 struct{ Rx struct{ Packets uint64 } } `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link: %v: %s", err, out)
	}
	return links[0].Stats64.Rx.Packets
}
