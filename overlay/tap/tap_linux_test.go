//go:build linux

package tap_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/poller"
	"github.com/vxland/vxland/overlay/tap"
)

const testMTU = 1450

var modes = []struct {
	name    string
	offload bool
}{{"offload", true}, {"plain", false}}

// openTAP opens the TAP name in ns; it is closed when the test ends.
func openTAP(t *testing.T, ns *netlab.NS, name string, opt tap.Options) *tap.Device {
	t.Helper()
	var dev *tap.Device
	if err := ns.Do(func() error {
		var err error
		dev, err = tap.Open(name, opt)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

// namespace returns a new namespace of a new lab, without IPv6, so that
// the kernel sends nothing of its own through the test's devices.
func namespace(t *testing.T, name string) (*netlab.Lab, *netlab.NS) {
	t.Helper()
	lab := netlab.NewForTest(t)
	ns, err := lab.Namespace(name)
	if err != nil {
		t.Fatal(err)
	}
	ns.MustRun(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	return lab, ns
}

func TestQueuesShareOneDevice(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			_, ns := namespace(t, "mq")
			qs := openTAP(t, ns, "vxmq0", tap.Options{Queues: 3, Offload: mode.offload, MTU: testMTU}).Queues()
			if len(qs) != 3 {
				t.Fatalf("%d queues, want 3", len(qs))
			}
			link := ns.MustRun(t, "ip", "-d", "link", "show", "vxmq0")
			if !strings.Contains(link, "multi_queue") || !strings.Contains(link, "numqueues 3") {
				t.Fatalf("vxmq0 is not a TAP with 3 queues:\n%s", link)
			}
			// The device lives while any queue is open.
			qs[0].Close()
			qs[2].Close()
			if out, err := ns.Run("ip", "link", "show", "vxmq0"); err != nil {
				t.Fatalf("vxmq0 gone with one queue still open: %v %s", err, out)
			}
			qs[1].Close()
			if out, err := ns.Run("ip", "link", "show", "vxmq0"); err == nil {
				t.Fatalf("vxmq0 still there after its last queue closed:\n%s", out)
			}
		})
	}
}

func TestOneQueueIsNotMultiQueue(t *testing.T) {
	_, ns := namespace(t, "sq")
	openTAP(t, ns, "vxsq0", tap.Options{Queues: 1, Offload: true, MTU: testMTU})
	// A single queue opens the device as before, so that it can attach to
	// a TAP that was created without IFF_MULTI_QUEUE.
	if link := ns.MustRun(t, "ip", "-d", "link", "show", "vxsq0"); strings.Contains(link, "multi_queue") {
		t.Fatalf("one queue opened a multi-queue TAP:\n%s", link)
	}
}

// A failing queue closes the ones opened before it: the device is gone.
func TestOpenClosesTheOpenedQueuesOnError(t *testing.T) {
	_, ns := namespace(t, "oq")
	openTAP(t, ns, "vxoq0", tap.Options{Queues: 1, MTU: testMTU}) // single-queue: a multi-queue attach fails
	err := ns.Do(func() error {
		_, err := tap.Open("vxoq1", tap.Options{Queues: 2, MTU: testMTU})
		if err != nil {
			return err
		}
		_, err = tap.Open("vxoq0", tap.Options{Queues: 2, MTU: testMTU})
		return err
	})
	if err == nil {
		t.Fatal("attached two queues to a single-queue TAP")
	}
	if out, err := ns.Run("ip", "link", "show", "vxoq1"); err != nil {
		t.Fatalf("vxoq1 should stay open: %v %s", err, out)
	}
	if _, err := tap.Open("vxoq2", tap.Options{MTU: 10}); err == nil {
		t.Fatal("Open took an MTU of 10")
	}
}

func TestWriteNeedsHeadroom(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			_, ns := namespace(t, "hr")
			q := openTAP(t, ns, "vxhr0", tap.Options{Offload: mode.offload, MTU: testMTU}).Queues()[0]
			if _, err := q.Write([][]byte{make([]byte, 64)}, tap.Headroom-1); !errors.Is(err, tap.ErrNoHeadroom) {
				t.Fatalf("Write with offset %d: %v, want ErrNoHeadroom", tap.Headroom-1, err)
			}
		})
	}
}

var (
	hostMAC = net.HardwareAddr{0x02, 0, 0, 0, 0x77, 1}
	hostIP  = net.IPv4(10, 77, 0, 1)
	peerIP  = net.IPv4(10, 77, 0, 2)
)

type transport interface {
	gopacket.SerializableLayer
	SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
}

// ipv4Frame returns an Ethernet frame from hostMAC to dst with an IPv4
// packet from hostIP to peerIP, DF set, carrying l4 and payload, with
// valid lengths and checksums.
func ipv4Frame(t testing.TB, dst net.HardwareAddr, id uint16, l4 transport, payload []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: hostMAC, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	proto := layers.IPProtocolTCP
	if _, ok := l4.(*layers.UDP); ok {
		proto = layers.IPProtocolUDP
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: id, Flags: layers.IPv4DontFragment, Protocol: proto, SrcIP: hostIP, DstIP: peerIP}
	if err := l4.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, l4, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// udpFrame returns a frame with a UDP datagram from 10.77.0.1:5000 to
// 10.77.0.2:6000.
func udpFrame(t testing.TB, dst net.HardwareAddr, id uint16, payload []byte) []byte {
	return ipv4Frame(t, dst, id, &layers.UDP{SrcPort: 5000, DstPort: 6000}, payload)
}

// withHeadroom returns frame behind tap.Headroom bytes, as Write takes it.
func withHeadroom(frame []byte) []byte {
	return append(make([]byte, tap.Headroom), frame...)
}

func rxPackets(t *testing.T, ns *netlab.NS, dev string) uint64 {
	t.Helper()
	s, err := ns.LinkStats(dev)
	if err != nil {
		t.Fatal(err)
	}
	return s.RX.Packets
}

// drops returns the queue's drop counts by reason.
func drops(q *tap.Queue) map[string]uint64 {
	m := map[string]uint64{}
	q.ReportDrops(func(reason string, n uint64) { m[reason] += n })
	return m
}

// container returns a TAP on a bridge in a host namespace, and a container
// 10.77.0.2 on the same bridge that knows 10.77.0.1 at hostMAC.
func container(t *testing.T, name string, opt tap.Options) (*tap.Device, *netlab.NS, *netlab.NS) {
	t.Helper()
	lab, h := namespace(t, "h")
	dev := openTAP(t, h, name, opt)
	if err := h.Bridge("br0"); err != nil {
		t.Fatal(err)
	}
	if err := h.SetMaster(name, "br0"); err != nil {
		t.Fatal(err)
	}
	h.MustRun(t, "ip", "link", "set", name, "mtu", "1450", "up")
	c, err := lab.Container(h, "br0", "vc0", "c", "10.77.0.2/24", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	c.MustRun(t, "ip", "neigh", "add", "10.77.0.1", "lladdr", hostMAC.String(), "dev", "eth0")
	// Like a wire: the bridge's port to the container finishes
	// checksums and cuts super-frames in software, and the container's
	// stack verifies every segment.
	if err := h.Do(func() error { return ethtoolOff("vc0", ethtoolSTSO, ethtoolSTXCSUM) }); err != nil {
		t.Fatal(err)
	}
	return dev, h, c
}

// ethtool commands (linux/ethtool.h) that switch an offload off.
const (
	ethtoolSTXCSUM = 0x17
	ethtoolSTSO    = 0x1f
)

// ethtoolOff switches the offloads cmds of the interface name off, as
// "ethtool -K name tx off tso off" does.
func ethtoolOff(name string, cmds ...uint32) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, cmd := range cmds {
		value := struct{ cmd, data uint32 }{cmd: cmd}
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data unsafe.Pointer
			_    [16]byte
		}
		copy(ifr.name[:], name)
		ifr.data = unsafe.Pointer(&value)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			return fmt.Errorf("SIOCETHTOOL %#x on %s: %w", cmd, name, errno)
		}
	}
	return nil
}

// TestOffloadWritesUDPRunAsOne writes a run of small UDP datagrams of one
// flow, as the decapsulator hands them over, to an offload TAP on a
// bridge: the TAP takes them in one write (one packet on its counters)
// and a container's socket receives every datagram, intact and in order.
func TestOffloadWritesUDPRunAsOne(t *testing.T) {
	const name = "vxuw0"
	dev, h, c := container(t, name, tap.Options{Offload: true, MTU: testMTU})
	q := dev.Queues()[0]
	if !q.USO() {
		t.Skip("the kernel refused UDP segmentation offload on the TAP")
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
		bufs[i] = withHeadroom(udpFrame(t, cmac, uint16(100+i), payload))
	}
	before := rxPackets(t, h, name)
	if written, err := q.Write(bufs, tap.Headroom); err != nil || written != n {
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
	if got := rxPackets(t, h, name) - before; got != 1 {
		t.Fatalf("the TAP took %d packets for a run of %d datagrams, want 1", got, n)
	}
}

// TestOversizeTCPReachesContainer writes one TCP frame of tens of KB, far
// over the MTU, to a TAP on a bridge: the container's TCP socket receives
// its bytes, in one write to the TAP with offloads (one super-frame the
// kernel cuts) and in one write per MTU-sized segment without. The
// connection's handshake is played through the same queue.
func TestOversizeTCPReachesContainer(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			const name, port = "vxbig0", 6001
			dev, h, c := container(t, name, tap.Options{Offload: mode.offload, MTU: testMTU})
			q := dev.Queues()[0]
			cmac, err := c.HardwareAddr("eth0")
			if err != nil {
				t.Fatal(err)
			}
			var ln net.Listener
			if err := c.Do(func() error {
				var err error
				ln, err = net.Listen("tcp4", "10.77.0.2:6001")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					close(accepted)
					return
				}
				accepted <- conn
			}()

			const isn = 1000
			write := func(tcp *layers.TCP, payload []byte) {
				t.Helper()
				tcp.SrcPort, tcp.DstPort, tcp.Window = 40000, port, 65535
				if n, err := q.Write([][]byte{withHeadroom(ipv4Frame(t, cmac, 0, tcp, payload))}, tap.Headroom); n != 1 || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			write(&layers.TCP{Seq: isn, SYN: true}, nil)
			synAck := nextTCP(t, q, func(tcp *layers.TCP) bool { return tcp.SrcPort == port && tcp.SYN && tcp.ACK })
			write(&layers.TCP{Seq: isn + 1, Ack: synAck.Seq + 1, ACK: true}, nil)
			conn, ok := <-accepted
			if !ok {
				t.Fatal("the container accepted no connection")
			}
			defer conn.Close()

			// As much as the container's window takes, at least
			// several segments.
			const mss = testMTU - 20 - 20
			size := min(int(synAck.Window), 40000)
			if size < 4*mss {
				t.Fatalf("the container's window is %d bytes", synAck.Window)
			}
			payload := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz"), size/36+1)[:size]
			capture := captureIPv4(t, c, "eth0")
			before := rxPackets(t, h, name)
			write(&layers.TCP{Seq: isn + 1, Ack: synAck.Seq + 1, ACK: true, PSH: true}, payload)
			after := rxPackets(t, h, name)

			got := make([]byte, size)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := io.ReadFull(conn, got); err != nil {
				t.Fatalf("the container read %d of %d bytes: %v", n, size, err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatal("the container received other bytes than were written")
			}
			var segments, bytesIn int
			for _, frame := range capture() {
				p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
				if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && tcp.DstPort == port && len(tcp.Payload) > 0 {
					if len(tcp.Payload) > mss {
						t.Fatalf("a segment of %d payload bytes reached the container; MSS %d", len(tcp.Payload), mss)
					}
					segments++
					bytesIn += len(tcp.Payload)
				}
			}
			if segments != (size+mss-1)/mss || bytesIn != size {
				t.Fatalf("the container received %d segments of %d bytes in all, want %d of %d", segments, bytesIn, (size+mss-1)/mss, size)
			}
			want := uint64(1)
			if !mode.offload {
				want = uint64((size + mss - 1) / mss)
			}
			if after-before != want {
				t.Fatalf("the TAP took %d packets for a frame of %d payload bytes, want %d", after-before, size, want)
			}
			if d := drops(q); d[tap.DropOversize] != 0 {
				t.Fatalf("drops %v", d)
			}
		})
	}
}

// captureIPv4 opens a packet socket on the interface name in ns and
// returns a function that returns the IPv4 frames it received so far.
func captureIPv4(t *testing.T, ns *netlab.NS, name string) func() [][]byte {
	t.Helper()
	proto := int(htons(unix.ETH_P_IP))
	var fd int
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return func() [][]byte {
		var frames [][]byte
		buf := make([]byte, 1<<16)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return frames
			}
			frames = append(frames, bytes.Clone(buf[:n]))
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// nextTCP reads from q until a TCP segment that match accepts arrives.
func nextTCP(t *testing.T, q *tap.Queue, match func(*layers.TCP) bool) *layers.TCP {
	t.Helper()
	bufs, sizes := readBuffers(q)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		n, err := q.TryRead(bufs, sizes, tap.Headroom)
		if errors.Is(err, poller.ErrWouldBlock) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			p := gopacket.NewPacket(bufs[i][tap.Headroom:tap.Headroom+sizes[i]], layers.LayerTypeEthernet, gopacket.Default)
			if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && match(tcp) {
				return tcp
			}
		}
	}
	t.Fatal("no matching TCP segment came out of the TAP")
	return nil
}

// readBuffers returns buffers for one Read of q, as small as Read allows.
func readBuffers(q *tap.Queue) ([][]byte, []int) {
	bufs := make([][]byte, q.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, tap.Headroom+q.FrameLen())
	}
	return bufs, make([]int, len(bufs))
}

// An oversize frame that is not TCP is dropped and counted, and the rest
// of the batch is written.
func TestOversizeNotTCPIsCounted(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			const name = "vxov0"
			_, ns := namespace(t, "ov")
			q := openTAP(t, ns, name, tap.Options{Offload: mode.offload, MTU: testMTU}).Queues()[0]
			ns.MustRun(t, "ip", "link", "set", name, "up")
			dst := net.HardwareAddr{0x02, 0, 0, 0, 0x77, 2}
			bigUDP := udpFrame(t, dst, 1, make([]byte, 3000))
			notIP := append(bytes.Clone(bigUDP[:12]), make([]byte, 3000)...) // EtherType 0
			bufs := [][]byte{withHeadroom(bigUDP), withHeadroom(notIP), withHeadroom(udpFrame(t, dst, 2, []byte("small")))}
			before := rxPackets(t, ns, name)
			if n, err := q.Write(bufs, tap.Headroom); n != len(bufs) || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(bufs))
			}
			if got := rxPackets(t, ns, name) - before; got != 1 {
				t.Fatalf("the TAP took %d packets, want the one small frame", got)
			}
			if d := drops(q); d[tap.DropOversize] != 2 || d[tap.DropMalformed] != 0 {
				t.Fatalf("drops %v, want 2 %s", d, tap.DropOversize)
			}
		})
	}
}

// bridged returns the queues of two TAPs on one bridge: what the first
// writes, the kernel floods to the second.
func bridged(t *testing.T, wopt, ropt tap.Options) (w, r *tap.Queue) {
	t.Helper()
	_, ns := namespace(t, "br")
	w = openTAP(t, ns, "vxw0", wopt).Queues()[0]
	r = openTAP(t, ns, "vxr0", ropt).Queues()[0]
	if err := ns.Bridge("br0"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vxw0", "vxr0"} {
		if err := ns.SetMaster(name, "br0"); err != nil {
			t.Fatal(err)
		}
	}
	return w, r
}

// A super-frame the kernel hands over that needs more segments than a
// batch holds is dropped and counted: a TAP of a tiny MTU writes one with
// a gso_size of 100 bytes, the bridge passes it whole to a TAP of the
// usual MTU, whose Read would need 600 frames.
func TestUncuttableSuperFrameIsCounted(t *testing.T) {
	w, r := bridged(t, tap.Options{Offload: true, MTU: 140}, tap.Options{Offload: true, MTU: testMTU})
	dst := net.HardwareAddr{0x02, 0, 0, 0, 0x77, 2}
	frame := ipv4Frame(t, dst, 0, &layers.TCP{SrcPort: 40000, DstPort: 6001, Seq: 1, ACK: true, Window: 65535}, make([]byte, 60000))
	if n, err := w.Write([][]byte{withHeadroom(frame)}, tap.Headroom); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	bufs, sizes := readBuffers(r)
	for deadline := time.Now().Add(5 * time.Second); drops(r)[tap.DropMalformed] == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the super-frame was not counted as a drop")
		}
		n, err := r.TryRead(bufs, sizes, tap.Headroom)
		if err != nil && !errors.Is(err, poller.ErrWouldBlock) {
			t.Fatal(err)
		}
		if n > 0 {
			t.Fatalf("Read returned %d frames of a super-frame it cannot cut whole", n)
		}
	}
	if d := drops(w); d[tap.DropOversize] != 0 {
		t.Fatalf("the writer dropped: %v", d)
	}
}

// A super-frame comes out of Read cut into its sender's segments when they
// fit the MTU, and whole when they do not: its sender has a larger MTU
// than the overlay, and each segment would be a packet too big. The
// writing TAP sends one super-frame with a gso_size for its MTU; the
// bridge passes it to the reading TAP whole.
func TestSuperFrameLargerSegmentsComeOutWhole(t *testing.T) {
	for _, tc := range []struct {
		name      string
		senderMTU int
		whole     bool
	}{{"segments-fit", testMTU, false}, {"segments-too-big", 1500, true}, {"jumbo-segments", 9000, true}} {
		t.Run(tc.name, func(t *testing.T) {
			w, r := bridged(t, tap.Options{Offload: true, MTU: tc.senderMTU}, tap.Options{Offload: true, MTU: testMTU})
			dst := net.HardwareAddr{0x02, 0, 0, 0, 0x77, 2}
			frame := ipv4Frame(t, dst, 0, &layers.TCP{SrcPort: 40000, DstPort: 6001, Seq: 1, ACK: true, Window: 65535}, make([]byte, 30000))
			if n, err := w.Write([][]byte{withHeadroom(frame)}, tap.Headroom); n != 1 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			bufs, sizes := readBuffers(r)
			var got []int
			for deadline := time.Now().Add(5 * time.Second); len(got) == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("nothing came out of the reading TAP")
				}
				n, err := r.TryRead(bufs, sizes, tap.Headroom)
				if err != nil && !errors.Is(err, poller.ErrWouldBlock) {
					t.Fatal(err)
				}
				// Only the test's frames: the namespace's own (an IPv6
				// router solicitation, say) may come through the bridge too.
				for i := range n {
					if bytes.Equal(bufs[i][tap.Headroom:tap.Headroom+6], dst) {
						got = append(got, sizes[i])
					}
				}
			}
			if tc.whole {
				if len(got) != 1 || got[0] != len(frame) {
					t.Fatalf("Read returned frames of %v bytes, want the %d-byte super-frame whole", got, len(frame))
				}
				return
			}
			mss := tc.senderMTU - 40
			want := (30000 + mss - 1) / mss
			if len(got) != want {
				t.Fatalf("Read returned %d frames, want %d segments", len(got), want)
			}
			for i, size := range got {
				if size > testMTU+14 {
					t.Fatalf("segment %d: %d bytes, longer than the MTU allows", i, size)
				}
			}
		})
	}
}

// Reading and writing, coalescing and cutting included, allocate nothing.
func TestReadWriteNoAllocs(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			opt := tap.Options{Offload: mode.offload, MTU: testMTU}
			w, r := bridged(t, opt, opt)
			dst := net.HardwareAddr{0x02, 0, 0, 0, 0x77, 2}
			const mss = testMTU - 40
			segments := make([][]byte, 8)
			for i := range segments {
				tcp := &layers.TCP{SrcPort: 40000, DstPort: 6001, Seq: uint32(1 + i*mss), ACK: true, Window: 65535}
				segments[i] = withHeadroom(ipv4Frame(t, dst, 0, tcp, make([]byte, mss)))
			}
			big := [][]byte{withHeadroom(ipv4Frame(t, dst, 0, &layers.TCP{SrcPort: 40001, DstPort: 6001, ACK: true, Window: 65535}, make([]byte, 30000)))}
			one := [][]byte{withHeadroom(udpFrame(t, dst, 1, []byte("one")))}
			bufs, sizes := readBuffers(r)
			for _, tc := range []struct {
				name string
				run  func() error
			}{
				{"write-segments", func() error { _, err := w.Write(segments, tap.Headroom); return err }},
				{"write-oversize", func() error { _, err := w.Write(big, tap.Headroom); return err }},
				{"write-read", func() error {
					if _, err := w.Write(one, tap.Headroom); err != nil {
						return err
					}
					_, err := r.Read(bufs, sizes, tap.Headroom)
					return err
				}},
			} {
				var err error
				allocs := testing.AllocsPerRun(50, func() {
					if e := tc.run(); e != nil {
						err = e
					}
				})
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if allocs != 0 {
					t.Errorf("%s: %.1f allocations per run", tc.name, allocs)
				}
			}
			if d := drops(w); d[tap.DropOversize] != 0 {
				t.Fatalf("the writer dropped: %v", d)
			}
		})
	}
}
