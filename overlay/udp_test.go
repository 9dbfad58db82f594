package overlay

import (
	"net/netip"
	"testing"
	"time"
)

// flowPortSender is a socket whose SendFlow picks a source port by flow.
type flowPortSender interface {
	FlowSender
	SourcePorts() []uint16
}

// checkFlowSourcePorts sends one datagram for each of 64 flows, twice, to
// rx, and checks from the source each arrives from that tx sends from its
// n ports of the dynamic range, each flow always from the same one, and
// that the flows spread over them.
func checkFlowSourcePorts(t *testing.T, tx flowPortSender, rx interface {
	PacketConn
	LocalAddr() netip.AddrPort
}, n int) {
	t.Helper()
	if ports := tx.SourcePorts(); len(ports) != n {
		t.Fatalf("%d source ports, want %d", len(ports), n)
	}
	bufs := [][]byte{make([]byte, 64)}
	sizes, srcs := make([]int, 1), make([]netip.AddrPort, 1)
	timeout := time.AfterFunc(5*time.Second, func() { rx.Close() })
	defer timeout.Stop()
	portOf := map[uint32]uint16{}
	used := map[uint16]bool{}
	for round := range 2 {
		for flow := range uint32(64) {
			if err := tx.SendFlow([][]byte{{byte(flow)}}, rx.LocalAddr(), flow*2654435761); err != nil {
				t.Fatal(err)
			}
			if _, err := rx.Read(bufs, sizes, srcs, 0); err != nil {
				t.Fatal(err)
			}
			p := srcs[0].Port()
			if p < srcPortMin {
				t.Fatalf("source port %d outside %d-%d", p, srcPortMin, srcPortMax)
			}
			if round == 1 && portOf[flow] != p {
				t.Fatalf("flow %d moved from port %d to %d", flow, portOf[flow], p)
			}
			portOf[flow] = p
			used[p] = true
		}
	}
	if len(used) < n/2 {
		t.Fatalf("64 flows used only %d of %d source ports", len(used), n)
	}
}

// TestPlainSendFlowSourcePorts: without the fast path (--offload none),
// flows still leave from hashed source ports, as RFC 7348 §5 asks.
func TestPlainSendFlowSourcePorts(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			local := netip.MustParseAddrPort(addr)
			rx, err := ListenUDP(local)
			if err != nil {
				t.Skipf("no %s here: %v", local.Addr(), err)
			}
			defer rx.Close()
			tx, err := ListenUDP(local)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			if err := OpenSourcePorts([]*UDPConn{tx}, 8); err != nil {
				t.Fatal(err)
			}
			checkFlowSourcePorts(t, tx, rx, 8)
		})
	}
}
