//go:build linux

package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
)

func TestVirtioNetHdrConstantsMatchLinux(t *testing.T) {
	for _, c := range []struct {
		name      string
		ours, sys int
	}{
		{"F_NEEDS_CSUM", VirtioNetHdrFNeedsCsum, unix.VIRTIO_NET_HDR_F_NEEDS_CSUM},
		{"F_DATA_VALID", VirtioNetHdrFDataValid, unix.VIRTIO_NET_HDR_F_DATA_VALID},
		{"GSO_NONE", VirtioNetHdrGSONone, unix.VIRTIO_NET_HDR_GSO_NONE},
		{"GSO_TCPV4", VirtioNetHdrGSOTCPv4, unix.VIRTIO_NET_HDR_GSO_TCPV4},
		{"GSO_UDP", VirtioNetHdrGSOUDP, unix.VIRTIO_NET_HDR_GSO_UDP},
		{"GSO_TCPV6", VirtioNetHdrGSOTCPv6, unix.VIRTIO_NET_HDR_GSO_TCPV6},
		{"GSO_UDP_L4", VirtioNetHdrGSOUDPL4, unix.VIRTIO_NET_HDR_GSO_UDP_L4},
		{"GSO_ECN", VirtioNetHdrGSOECN, unix.VIRTIO_NET_HDR_GSO_ECN},
	} {
		if c.ours != c.sys {
			t.Errorf("VIRTIO_NET_HDR_%s: ours %#x, Linux %#x", c.name, c.ours, c.sys)
		}
	}
}

// tapBench is a TAP opened as vxland's fast path opens it, whose frames the
// kernel forwards, through a bridge, to a veth that cannot segment or
// checksum; a packet socket captures them at the veth's peer in another
// namespace. What arrives there is the kernel's reading of what was written:
// a super-frame comes out cut by the kernel's own GSO, each segment with the
// checksum the kernel completed from the pseudo-header sum we left.
type tapBench struct {
	x       *netlab.NS
	tap     int // fd, IFF_VNET_HDR
	capture int // fd, AF_PACKET on the veth peer
}

const benchTAP = "vxgro0"

func newTAPBench(t *testing.T) *tapBench {
	lab := netlab.NewForTest(t)
	x, err := lab.Namespace("tap")
	if err != nil {
		t.Fatal(err)
	}
	y, err := lab.Namespace("wire")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Skip("skipping: ethtool is needed")
	}
	b := &tapBench{x: x, tap: -1, capture: -1}
	t.Cleanup(func() {
		if b.tap >= 0 {
			unix.Close(b.tap)
		}
		if b.capture >= 0 {
			unix.Close(b.capture)
		}
	})
	err = x.Do(func() error {
		var err error
		b.tap, err = openVnetTAP(benchTAP, 0, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6)
		return err
	})
	if err != nil {
		t.Fatalf("opening the TAP: %v", err)
	}
	if err := lab.Veth(x, "veth0", y, "veth1"); err != nil {
		t.Fatal(err)
	}
	for _, step := range []error{
		x.Bridge("br0"),
		x.SetMaster(benchTAP, "br0"),
		x.SetMaster("veth0", "br0"),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	// Without checksum offload (and so without TSO) on veth0, the bridge's
	// output runs software GSO and writes full checksums.
	x.MustRun(t, "ethtool", "-K", "veth0", "tx", "off", "tso", "off")
	y.MustRun(t, "ethtool", "-K", "veth1", "gro", "off")

	err = y.Do(func() error {
		ifi, err := net.InterfaceByName("veth1")
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		b.capture = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((2 * time.Second).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("opening the capture socket: %v", err)
	}
	return b
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// write writes one virtio-net header and frame to the TAP.
func (b *tapBench) write(frame []byte) error {
	n, err := unix.Write(b.tap, frame)
	if err == nil && n != len(frame) {
		return errors.New("short write")
	}
	return err
}

// receive returns the next n TCP frames to testDstPort captured on the wire.
func (b *tapBench) receive(t *testing.T, n int) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 1<<16)
	for len(got) < n {
		m, _, err := unix.Recvfrom(b.capture, buf, 0)
		if err != nil {
			t.Fatalf("after %d of %d frames: %v", len(got), n, err)
		}
		var s groSegment
		if parseGROSegment(buf[:m], &s) && binary.BigEndian.Uint16(s.flow.ports[2:]) == testDstPort {
			got = append(got, bytes.Clone(buf[:m]))
		}
	}
	return got
}

func (b *tapBench) rxStats(t *testing.T) netlab.LinkCounters {
	t.Helper()
	s, err := b.x.LinkStats(benchTAP)
	if err != nil {
		t.Fatal(err)
	}
	return s.RX
}

// TestGROKernelAcceptsSuperFrames writes GRO's output into a real TAP and
// checks that the kernel cuts it back into exactly the segments GRO was
// given: same headers, same payload, checksums the kernel completed from
// ours, which it could not have done had our pseudo-header sum been wrong.
func TestGROKernelAcceptsSuperFrames(t *testing.T) {
	b := newTAPBench(t)
	before := b.rxStats(t)
	var writes uint64

	mss6 := testMTU - 40 - 32
	for _, tc := range []struct {
		name    string
		segs    [][]byte
		partial bool
	}{
		{"ipv4-64KB", stream(t, frameSpec{tcpOptions: true, psh: true}, append(repeat(46, testMSS), 65483-46*testMSS)), true},
		{"ipv6-64KB", stream(t, frameSpec{ipv6: true, tcpOptions: true}, append(repeat(47, mss6), 65463-47*mss6)), false},
		{"ipv4-ecn", stream(t, frameSpec{tcpOptions: true, cwr: true, ece: true}, repeat(10, testMSS)), false},
		{"one-partial-segment", stream(t, frameSpec{ipv6: true, psh: true}, []int{999}), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGRO(4)
			for _, s := range tc.segs {
				s = bytes.Clone(s)
				if tc.partial {
					makePartial(t, s)
				}
				if !g.Add(s, tc.partial) {
					t.Fatal("Add refused a segment")
				}
			}
			frames := g.Frames()
			if len(frames) != 1 {
				t.Fatalf("%d frames, want 1", len(frames))
			}
			if err := b.write(frames[0]); err != nil {
				t.Fatalf("writing a %d-byte frame to the TAP: %v", len(frames[0]), err)
			}
			writes++
			got := b.receive(t, len(tc.segs))
			for i, seg := range got {
				if !bytes.Equal(seg, tc.segs[i]) {
					l := readLayout(t, seg)
					t.Fatalf("segment %d on the wire differs from the one given to GRO (checksum verifies: %v):\n got % x\nwant % x",
						i, refL4Valid(seg, l), seg[:min(len(seg), 80)], tc.segs[i][:min(len(tc.segs[i]), 80)])
				}
			}
		})
	}

	// The same check fails when the pseudo-header sum is off by one: the
	// kernel builds on what it is given.
	t.Run("wrong-pseudo-header-sum", func(t *testing.T) {
		segs := stream(t, frameSpec{tcpOptions: true}, repeat(4, testMSS))
		g := NewGRO(1)
		for _, s := range segs {
			g.Add(s, false)
		}
		frame := g.Frames()[0]
		l := readLayout(t, frame[VirtioNetHdrLen:])
		field := frame[VirtioNetHdrLen+l.field:]
		binary.BigEndian.PutUint16(field, binary.BigEndian.Uint16(field)+1)
		if err := b.write(frame); err != nil {
			t.Fatal(err)
		}
		writes++
		for i, seg := range b.receive(t, len(segs)) {
			if refL4Valid(seg, readLayout(t, seg)) {
				t.Fatalf("segment %d verifies although the super-frame's pseudo-header sum was wrong", i)
			}
		}
	})

	// The kernel parses our header: one it cannot accept is refused.
	t.Run("malformed-header", func(t *testing.T) {
		segs := stream(t, frameSpec{tcpOptions: true}, repeat(2, testMSS))
		g := NewGRO(1)
		for _, s := range segs {
			g.Add(s, false)
		}
		good := g.Frames()[0]
		for _, tc := range []struct {
			name string
			edit func(*VirtioNetHdr)
		}{
			{"checksum-field-past-the-end", func(h *VirtioNetHdr) { h.CsumStart = uint16(len(good)) }},
			{"unknown-gso-type", func(h *VirtioNetHdr) { h.GSOType = 2 }},
			{"checksum-offset-not-tcp", func(h *VirtioNetHdr) { h.CsumOffset = 6 }},
		} {
			frame := bytes.Clone(good)
			var h VirtioNetHdr
			if err := h.Decode(frame); err != nil {
				t.Fatal(err)
			}
			tc.edit(&h)
			if err := h.Encode(frame); err != nil {
				t.Fatal(err)
			}
			if err := b.write(frame); !errors.Is(err, unix.EINVAL) {
				t.Errorf("%s: write = %v, want EINVAL", tc.name, err)
			}
		}
	})

	after := b.rxStats(t)
	t.Logf("TAP rx counters before %+v, after %+v", before, after)
	if after.Packets-before.Packets != writes || after.Dropped != before.Dropped {
		t.Errorf("TAP counted %d packets and %d drops for %d good writes", after.Packets-before.Packets, after.Dropped-before.Dropped, writes)
	}
}

// TestGROKernelAcceptsUDPSuperFrames is TestGROKernelAcceptsSuperFrames for
// UDP: the kernel cuts a USO super-frame from GRO back into exactly the
// datagrams GRO was given, checksums included.
func TestGROKernelAcceptsUDPSuperFrames(t *testing.T) {
	b := newTAPBench(t)
	for _, tc := range []struct {
		name string
		ds   [][]byte
	}{
		{"ipv4-64B", datagrams(t, frameSpec{}, repeat(64, 64))},
		{"ipv4-1400B-short-last", datagrams(t, frameSpec{}, append(repeat(40, 1400), 7))},
		{"ipv6", datagrams(t, frameSpec{ipv6: true}, repeat(10, 1000))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGRO(4)
			g.UDP = true
			for _, d := range tc.ds {
				if !g.Add(d, false) {
					t.Fatal("Add refused a datagram")
				}
			}
			frames := g.Frames()
			if len(frames) != 1 {
				t.Fatalf("%d frames, want 1", len(frames))
			}
			if err := b.write(frames[0]); err != nil {
				t.Fatalf("writing a %d-byte USO frame to the TAP: %v", len(frames[0]), err)
			}
			for i, d := range b.receive(t, len(tc.ds)) {
				if !bytes.Equal(d, tc.ds[i]) {
					l := readLayout(t, d)
					t.Fatalf("datagram %d on the wire differs from the one given to GRO (checksum verifies: %v):\n got % x\nwant % x",
						i, refL4Valid(d, l), d[:min(len(d), 80)], tc.ds[i][:min(len(tc.ds[i]), 80)])
				}
			}
		})
	}
}

// TestSegmentGSOKernelFrames reads what the kernel's TCP sends into a TAP
// with checksum and segmentation offload on, and checks that Decode,
// Complete and SegmentGSO turn it into frames a wire would carry. The peer
// is faked: a SYN-ACK written into the TAP completes the handshake.
func TestSegmentGSOKernelFrames(t *testing.T) {
	lab := netlab.NewForTest(t)
	x, err := lab.Namespace("tcp")
	if err != nil {
		t.Fatal(err)
	}
	const tapName, local, peer, port = "vxgro1", "10.99.0.1", "10.99.0.2", 5201
	peerMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	tap, err := openAddressedTAP(t, x, tapName, local, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6)
	if err != nil {
		t.Fatalf("opening the TAP: %v", err)
	}
	x.MustRun(t, "ip", "neigh", "add", peer, "lladdr", peerMAC.String(), "dev", tapName)

	// next returns the next TCP frame to or from port, with its header.
	buf := make([]byte, VirtioNetHdrLen+1<<16)
	next := func() (VirtioNetHdr, []byte) {
		t.Helper()
		return nextTAPFrame(t, tap, buf, func(s *groSegment) bool {
			return !s.flow.udp && binary.BigEndian.Uint16(s.flow.ports[2:]) == port
		})
	}

	type dialed struct {
		conn net.Conn
		err  error
	}
	done := make(chan dialed, 1)
	go func() {
		var d dialed
		d.err = x.Do(func() error {
			var err error
			d.conn, err = net.DialTimeout("tcp4", net.JoinHostPort(peer, "5201"), 5*time.Second)
			return err
		})
		done <- d
	}()

	// The SYN, checksum left to us.
	h, syn := next()
	if h.GSOType != VirtioNetHdrGSONone {
		t.Fatalf("SYN with header %+v", h)
	}
	if err := h.Complete(syn); err != nil {
		t.Fatal(err)
	}
	pkt := gopacket.NewPacket(syn, layers.LayerTypeEthernet, gopacket.Default)
	ip4, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip4 == nil || tcp == nil || !tcp.SYN {
		t.Fatalf("not a SYN: %v", pkt)
	}
	if err := tcp.SetNetworkLayerForChecksum(ip4); err != nil {
		t.Fatal(err)
	}
	if c, err := tcp.ComputeChecksum(); err != nil || c != 0 {
		t.Fatalf("completed SYN checksum off by %#04x (header %+v, %v)", c, h, err)
	}

	// The SYN-ACK: MSS 1000, no window scaling, so the kernel's first
	// flight is ten segments of 1000 bytes, sent as TSO frames.
	const mss = 1000
	eth := &layers.Ethernet{SrcMAC: peerMAC, DstMAC: pkt.LinkLayer().(*layers.Ethernet).SrcMAC, EthernetType: layers.EthernetTypeIPv4}
	rip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: ip4.DstIP, DstIP: ip4.SrcIP, Flags: layers.IPv4DontFragment}
	rtcp := &layers.TCP{SrcPort: tcp.DstPort, DstPort: tcp.SrcPort, Seq: 7000, Ack: tcp.Seq + 1, SYN: true, ACK: true, Window: 65535,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{mss >> 8, mss & 0xff}}}}
	if err := rtcp.SetNetworkLayerForChecksum(rip); err != nil {
		t.Fatal(err)
	}
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, rip, rtcp); err != nil {
		t.Fatal(err)
	}
	if _, err := tap.Write(append(make([]byte, VirtioNetHdrLen), sb.Bytes()...)); err != nil {
		t.Fatal(err)
	}
	d := <-done
	if d.err != nil {
		t.Fatalf("handshake: %v", d.err)
	}
	defer d.conn.Close()
	data := randomPayload(400, 10*mss)
	if _, err := d.conn.Write(data); err != nil {
		t.Fatal(err)
	}

	out, sizes := makeOut(groMaxSegments, testMTU)
	var got []byte
	var gsoFrames int
	for len(got) < len(data) {
		h, frame := next()
		if h.GSOType != VirtioNetHdrGSONone {
			gsoFrames++
			if h.GSOType != VirtioNetHdrGSOTCPv4 || h.GSOSize != mss {
				t.Fatalf("GSO header %+v, want TCPv4 with gso_size %d", h, mss)
			}
		}
		n, err := SegmentGSO(h, frame, out, sizes, testOffset)
		if err != nil {
			t.Fatalf("SegmentGSO(%+v): %v", h, err)
		}
		for i := range n {
			seg := out[i][testOffset : testOffset+sizes[i]]
			p := gopacket.NewPacket(seg, layers.LayerTypeEthernet, gopacket.Default)
			st, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if st == nil || p.ErrorLayer() != nil {
				t.Fatalf("segment %d does not decode", i)
			}
			if err := st.SetNetworkLayerForChecksum(p.NetworkLayer()); err != nil {
				t.Fatal(err)
			}
			if c, err := st.ComputeChecksum(); err != nil || c != 0 {
				t.Fatalf("segment %d of a frame with header %+v: checksum off by %#04x", i, h, c)
			}
			if len(st.Payload) > mss {
				t.Fatalf("segment %d: %d payload bytes, MSS %d", i, len(st.Payload), mss)
			}
			if want := tcp.Seq + 1 + uint32(len(got)); st.Seq != want && len(st.Payload) > 0 {
				t.Fatalf("segment %d: seq %d, want %d", i, st.Seq, want)
			}
			got = append(got, st.Payload...)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the payload cut from the kernel's frames differs from what was written")
	}
	if gsoFrames == 0 {
		t.Fatal("the kernel sent no GSO frame; nothing was tested")
	}
	t.Logf("%d bytes in %d GSO frame(s)", len(got), gsoFrames)
}

// TestSegmentGSOKernelUDPFrames has a UDP socket send one UDP_SEGMENT burst
// into a TAP with USO on: the TAP hands over the whole burst as one
// GSO_UDP_L4 frame, and SegmentGSO cuts it into the datagrams a wire would
// carry, each with a full checksum.
func TestSegmentGSOKernelUDPFrames(t *testing.T) {
	lab := netlab.NewForTest(t)
	x, err := lab.Namespace("udp")
	if err != nil {
		t.Fatal(err)
	}
	const tapName, local, peer, port = "vxuso0", "10.99.1.1", "10.99.1.2", 5202
	tap, err := openAddressedTAP(t, x, tapName, local, unix.TUN_F_CSUM|unix.TUN_F_USO4|unix.TUN_F_USO6)
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("this kernel has no TAP USO: %v", err)
	}
	if err != nil {
		t.Fatalf("opening the TAP: %v", err)
	}
	x.MustRun(t, "ip", "neigh", "add", peer, "lladdr", "02:00:00:00:00:02", "dev", tapName)

	const gsoSize, total = 100, 1000 - 1 // nine full datagrams and a short one
	sent := randomPayload(500, total)
	err = x.Do(func() error {
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		if err := unix.SetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_SEGMENT, gsoSize); err != nil {
			return err
		}
		return unix.Sendto(s, sent, 0, &unix.SockaddrInet4{Port: port, Addr: [4]byte{10, 99, 1, 2}})
	})
	if err != nil {
		t.Fatalf("sending a UDP_SEGMENT burst: %v", err)
	}

	// Skip IPv6 neighbour discovery and the like.
	h, frame := nextTAPFrame(t, tap, make([]byte, VirtioNetHdrLen+1<<16), func(s *groSegment) bool {
		return s.flow.udp && binary.BigEndian.Uint16(s.flow.ports[2:]) == port
	})
	if h.GSOType != VirtioNetHdrGSOUDPL4 || h.GSOSize != gsoSize {
		t.Fatalf("the TAP handed over header %+v, want a GSO_UDP_L4 burst of gso_size %d", h, gsoSize)
	}
	out, sizes := makeOut(16, 1500)
	cnt, err := SegmentGSO(h, frame, out, sizes, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cnt != 10 {
		t.Fatalf("%d datagrams, want 10", cnt)
	}
	var joined []byte
	for i := range cnt {
		d := out[i][:sizes[i]]
		l := readLayout(t, d)
		if !refL4Valid(d, l) {
			t.Fatalf("datagram %d: bad UDP checksum", i)
		}
		if refSum(d[l.ip:l.l4], 0) != 0xffff {
			t.Fatalf("datagram %d: bad IPv4 header checksum", i)
		}
		joined = append(joined, d[l.hdrLen:l.end]...)
	}
	if !bytes.Equal(joined, sent) {
		t.Fatal("the datagrams do not give back what was sent")
	}
}

// openAddressedTAP opens, in ns, a non-blocking TAP with the virtio-net
// header and the given TUNSETOFFLOAD flags, gives it local/24, and returns
// it as an os.File, which reads through the poller with deadlines and is
// closed when the test ends.
func openAddressedTAP(t *testing.T, ns *netlab.NS, name, local string, offloads int) (*os.File, error) {
	t.Helper()
	fd := -1
	err := ns.Do(func() error {
		var err error
		fd, err = openVnetTAP(name, unix.O_NONBLOCK, offloads)
		return err
	})
	if err != nil {
		return nil, err
	}
	tap := os.NewFile(uintptr(fd), name)
	t.Cleanup(func() { tap.Close() })
	if err := ns.Addr(name, local+"/24"); err != nil {
		t.Fatal(err)
	}
	return tap, nil
}

// nextTAPFrame reads frames from tap into buf until one of a flow that match
// accepts, and returns it with its virtio-net header.
func nextTAPFrame(t *testing.T, tap *os.File, buf []byte, match func(*groSegment) bool) (VirtioNetHdr, []byte) {
	t.Helper()
	for {
		if err := tap.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := tap.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var h VirtioNetHdr
		if err := h.Decode(buf[:n]); err != nil {
			t.Fatal(err)
		}
		frame := buf[VirtioNetHdrLen:n]
		var s groSegment
		if parseGROSegment(frame, &s) && match(&s) {
			return h, frame
		}
	}
}

// openVnetTAP opens the TAP name in the calling thread's namespace with the
// virtio-net header and the given TUNSETOFFLOAD flags; flags are extra
// open(2) flags. On error nothing stays open.
func openVnetTAP(name string, flags, offloads int) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return -1, err
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err == nil {
		err = unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VirtioNetHdrLen)
	}
	if err == nil {
		err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
