//go:build linux

package udp_test

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vxland/vxland/overlay/udp"
	"golang.org/x/sys/unix"
)

// Every socket sends whole datagrams: DF on IPv4, no fragmentation on
// IPv6, so that a datagram too large for the path is refused instead of
// leaving as fragments.
func TestDontFragment(t *testing.T) {
	for _, tc := range []struct {
		addr        string
		level, opt  int
		want        int
		description string
	}{
		{"127.0.0.1:0", unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO, "IP_MTU_DISCOVER"},
		{"[::1]:0", unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO, "IPV6_MTU_DISCOVER"},
		{"[::1]:0", unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 1, "IPV6_DONTFRAG"},
	} {
		c := listen(t, tc.addr, 1, udp.Options{Batch: 8})[0]
		if got, err := sockopt(c, tc.level, tc.opt); err != nil || got != tc.want {
			t.Errorf("%s on %s: %d, %v; want %d", tc.description, tc.addr, got, err, tc.want)
		}
	}
}

// sockopt reads an integer socket option of c.
func sockopt(c *udp.Conn, level, opt int) (got int, err error) {
	err = c.FD().Control(func(fd int) (err error) {
		got, err = unix.GetsockoptInt(fd, level, opt)
		return err
	})
	return got, err
}

// Nothing sent to a source port of SendFlow is queued: the kernel drops
// it, and counts it, before it reaches the socket that nobody reads.
func TestSourcePortsDiscardWhatArrives(t *testing.T) {
	c := listen(t, "127.0.0.1:0", 1, udp.Options{Batch: 8, SourcePorts: 4})[0]
	ports := c.SourcePorts()
	if len(ports) != 4 {
		t.Fatalf("source ports %v, want 4", ports)
	}
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const sent = 50
	for _, p := range ports {
		for range sent {
			if _, err := s.WriteToUDP(make([]byte, 1000), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(p)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range ports {
		queued, drops := udpSocketState(t, p)
		if queued != 0 || drops < sent {
			t.Errorf("source port %d: %d bytes queued and %d drops, want 0 queued and %d drops", p, queued, drops, sent)
		}
	}
}

// udpSocketState reads the receive queue and drop count of the IPv4 UDP
// socket bound to port on 127.0.0.1 from /proc/net/udp.
func udpSocketState(t *testing.T, port uint16) (queued, drops uint64) {
	t.Helper()
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := "0100007F:" + strings.ToUpper(strconv.FormatUint(uint64(port)|0x10000, 16)[1:])
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 13 || fields[1] != want {
			continue
		}
		_, rx, _ := strings.Cut(fields[4], ":")
		queued, _ = strconv.ParseUint(rx, 16, 64)
		drops, _ = strconv.ParseUint(fields[len(fields)-1], 10, 64)
		return queued, drops
	}
	t.Fatalf("no UDP socket on 127.0.0.1:%d in /proc/net/udp", port)
	return 0, 0
}
