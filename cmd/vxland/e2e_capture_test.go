package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/vxland/vxland/internal/netlab"
)

// runCapture runs `vxland capture args... -w FILE` in the background and
// returns the file and a wait for the command's exit status and stderr.
// It returns once the daemon has begun the capture (the pcap header is
// written).
func runCapture(t *testing.T, args ...string) (file string, wait func() (int, string)) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "capture.pcap")
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { done <- capture(append(args, "-w", file), noEnv, io.Discard, &stderr) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if fi, err := os.Stat(file); err == nil && fi.Size() >= 24 {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("vxland capture exited %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the capture did not start")
		}
	}
	return file, func() (int, string) {
		select {
		case code := <-done:
			return code, stderr.String()
		case <-time.After(30 * time.Second):
			t.Fatal("vxland capture did not end")
			return 0, ""
		}
	}
}

// readPcap returns the packets of a pcap file.
func readPcap(t *testing.T, file string) []gopacket.Packet {
	t.Helper()
	return readPcapFile(t, file, false)
}

// readPcapFile returns the packets of a pcap file; with growing, the file
// is still being written: a partial last record ends it.
func readPcapFile(t *testing.T, file string, growing bool) []gopacket.Packet {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("link type %v, want Ethernet", r.LinkType())
	}
	var out []gopacket.Packet
	for {
		data, _, err := r.ReadPacketData()
		if err == io.EOF || growing && errors.Is(err, io.ErrUnexpectedEOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default))
	}
}

// A capture filtered by a container's MAC holds exactly that container's
// frames, each way, while other containers talk across the same hosts;
// an outer capture holds the VXLAN packets a wire would carry.
func TestCaptureByMACAndOuter(t *testing.T) {
	tp := newTopo(t, 42)
	h1, h2 := tp.addHost(), tp.addHost()
	tp.startAll()
	c1, c3 := tp.addContainer(h1), tp.addContainer(h1)
	c2, c4 := tp.addContainer(h2), tp.addContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	macs := map[*testContainer]string{}
	for _, c := range []*testContainer{c1, c2, c3, c4} {
		mac, err := c.ns.HardwareAddr("eth0")
		if err != nil {
			t.Fatal(err)
		}
		macs[c] = mac.String()
	}
	// No IPv6 (its multicast listener reports and neighbour discovery
	// come and go) and permanent neighbours (no ARP): the only frames
	// between the containers are the test's own.
	for _, c := range []*testContainer{c1, c2, c3, c4} {
		for _, key := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.eth0.disable_ipv6"} {
			if err := c.ns.SetSysctl(key, "1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, pair := range [][2]*testContainer{{c1, c2}, {c2, c1}, {c3, c4}, {c4, c3}} {
		pair[0].ns.MustRun(t, "ip", "neigh", "replace", pair[1].ip, "lladdr", macs[pair[1]], "dev", "eth0", "nud", "permanent")
	}
	if _, err := netlab.Ping(ctx, c1.ns, c2.ip, 1); err != nil {
		t.Fatal(err)
	}

	file, wait := runCapture(t, "--control-socket", h1.sock, "--mac", macs[c2], "-c", "6")
	noise := make(chan error, 1)
	go func() { _, err := netlab.Ping(ctx, c3.ns, c4.ip, 5); noise <- err }()
	if _, err := netlab.Ping(ctx, c1.ns, c2.ip, 3); err != nil {
		t.Fatal(err)
	}
	if code, stderr := wait(); code != 0 || !strings.Contains(stderr, "6 packets captured, 0 dropped") {
		t.Fatalf("vxland capture: exit %d, %q", code, stderr)
	}
	if err := <-noise; err != nil {
		t.Fatal(err)
	}
	pkts := readPcap(t, file)
	if len(pkts) != 6 {
		t.Fatalf("%d packets in the capture, want 6", len(pkts))
	}
	var requests, replies int
	for _, p := range pkts {
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if eth == nil || icmp == nil {
			t.Fatalf("not an ICMP frame: %v", p)
		}
		switch {
		case eth.SrcMAC.String() == macs[c1] && eth.DstMAC.String() == macs[c2] && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoRequest:
			requests++
		case eth.SrcMAC.String() == macs[c2] && eth.DstMAC.String() == macs[c1] && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoReply:
			replies++
		default:
			t.Fatalf("a frame the filter should have kept out: %v", p)
		}
	}
	if requests != 3 || replies != 3 {
		t.Fatalf("%d echo requests and %d replies, want 3 and 3", requests, replies)
	}
	if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
		out, err := exec.Command(tcpdump, "-nr", file).Output()
		if err != nil {
			t.Fatalf("tcpdump -r: %v", err)
		}
		if n := strings.Count(string(out), "ICMP echo"); n != 6 {
			t.Fatalf("tcpdump reads %d ICMP echo packets, want 6:\n%s", n, out)
		}
	} else {
		t.Log("tcpdump is not installed: the capture was read with pcapgo only")
	}

	// Outer packets to and from h2, for one round trip of c1's.
	file, wait = runCapture(t, "--control-socket", h1.sock, "--outer", "--vtep", h2.ip, "--mac", macs[c1], "-c", "2")
	if _, err := netlab.Ping(ctx, c1.ns, c2.ip, 1); err != nil {
		t.Fatal(err)
	}
	if code, stderr := wait(); code != 0 {
		t.Fatalf("vxland capture --outer: exit %d, %q", code, stderr)
	}
	pkts = readPcap(t, file)
	if len(pkts) != 2 {
		t.Fatalf("%d outer packets, want 2", len(pkts))
	}
	for i, want := range [][2]string{{h1.ip, h2.ip}, {h2.ip, h1.ip}} {
		ip, _ := pkts[i].Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		vx, _ := pkts[i].Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		if ip == nil || vx == nil || ip.SrcIP.String() != want[0] || ip.DstIP.String() != want[1] || vx.VNI != 42 {
			t.Fatalf("outer packet %d: %v; want VXLAN VNI 42 from %s to %s", i, pkts[i], want[0], want[1])
		}
		if pkts[i].Layer(layers.LayerTypeICMPv4) == nil {
			t.Fatalf("outer packet %d carries no ICMP: %v", i, pkts[i])
		}
	}
}

// A bad capture flag names itself and exits 2; a missing daemon is an
// error (exit 1) that names the socket.
func TestCaptureBadFlagsAndNoDaemon(t *testing.T) {
	for _, args := range [][]string{
		{"--mac", "02:00"}, {"--vtep", "10.0.0"}, {"-c", "-1"}, {"--duration", "-1s"}, {"--snaplen", "-5"}, {"extra"},
	} {
		var stderr bytes.Buffer
		if code := capture(args, noEnv, io.Discard, &stderr); code != 2 {
			t.Errorf("capture %v: exit %d, want 2", args, code)
		}
		if flag := strings.TrimLeft(args[0], "-"); args[0] != "extra" && !strings.Contains(stderr.String(), flag) {
			t.Errorf("capture %v: %q does not name the flag", args, stderr.String())
		}
	}
	if code := capture([]string{"--vni", "99999999"}, noEnv, io.Discard, &bytes.Buffer{}); code != 2 {
		t.Errorf("capture --vni 99999999: exit %d, want 2", code)
	}
	sock := filepath.Join(t.TempDir(), "none.sock")
	var stderr bytes.Buffer
	if code := capture([]string{"--control-socket", sock, "-w", filepath.Join(t.TempDir(), "x.pcap")}, noEnv, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), sock) {
		t.Fatalf("capture without a daemon: exit %d, %q; want 1 naming %s", code, stderr.String(), sock)
	}
}

// noEnv is an environment without VXLAND_* variables.
func noEnv(string) string { return "" }
