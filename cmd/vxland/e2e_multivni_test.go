package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay"
)

// One vxland serves VNIs 42 and 43 on one port, each on its own bridge,
// against two kernel vxlan devices on port 4789 on the other host. The
// containers of both VNIs have the same MAC and IP addresses: only the VNI
// tells them apart, and nothing crosses from one to the other.
func TestSeveralVNIsIsolated(t *testing.T) {
	vnis := []int{42, 43}
	tp, kh, vh := newKernelVNIsTopo(t, vnis...)
	tp.launch(vh, tp.daemonCmd(vh.ns, "--vni", "42", "--vni", "43", "--local-ip", vh.ip, "--peer", kh.ip,
		"--control-socket", vh.sock, "--metrics-listen", metricsAddr(vh), "--persist=false", "--log-level", "debug",
		"--state-dir", t.TempDir()))

	// k<VNI> on the kernel's host, v<VNI> on vxland's: the same two
	// addresses in each VNI.
	const kIP, vIP = "10.0.0.1", "10.0.0.2"
	ctrs := map[string]*netlab.NS{}
	for _, vni := range vnis {
		for _, side := range []struct {
			name, ip, mac, br string
			h                 *testHost
		}{
			{"k", kIP, "02:00:00:00:00:01", fmt.Sprintf("br%d", vni), kh},
			{"v", vIP, "02:00:00:00:00:02", fmt.Sprintf("vxbr%d", vni), vh},
		} {
			name := fmt.Sprintf("%s%d", side.name, vni)
			ns, err := tp.lab.Container(side.h.ns, side.br, "c"+name, name, side.ip+"/24", tp.mtu)
			if err != nil {
				t.Fatal(err)
			}
			ns.MustRun(t, "ip", "link", "set", "eth0", "address", side.mac)
			ctrs[name] = ns
		}
	}
	ctx := testCtx(t, 60*time.Second)
	for _, vni := range vnis {
		if _, err := netlab.Ping(ctx, ctrs[fmt.Sprintf("k%d", vni)], vIP, 3); err != nil {
			t.Fatalf("VNI %d: ping: %v", vni, err)
		}
	}

	// TCP in both VNIs at once, each way, of different sizes, each to a
	// port that only its own VNI listens on: a frame that crossed would
	// reach no listener, or bytes that do not match.
	size := map[int]int{42: 3 << 20, 43: 7 << 20}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(vnis))
	for _, vni := range vnis {
		k, v := ctrs[fmt.Sprintf("k%d", vni)], ctrs[fmt.Sprintf("v%d", vni)]
		wg.Go(func() {
			if err := netlab.TCPTransfer(ctx, k, v, fmt.Sprintf("%s:%d", vIP, 5000+vni), size[vni]); err != nil {
				errs <- fmt.Errorf("VNI %d, kernel -> vxland: %w", vni, err)
			}
		})
		wg.Go(func() {
			if err := netlab.TCPTransfer(ctx, v, k, fmt.Sprintf("%s:%d", kIP, 6000+vni), size[vni]); err != nil {
				errs <- fmt.Errorf("VNI %d, vxland -> kernel: %w", vni, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Each VNI's counters on both sides carry its own transfer, and not
	// the other's: the other is more than twice as large.
	for _, vni := range vnis {
		var s control.Stats
		tp.query(vh, &s, "show", "stats", "--vni", strconv.Itoa(vni))
		k := kernelCounters(t, kh, vni)
		kRx, kTx := k.RX.Bytes, k.TX.Bytes
		t.Logf("VNI %d: vxland rx %d frames %d bytes, tx %d datagrams %d bytes; kernel vx%d rx %d bytes, tx %d bytes; transfer %d bytes each way",
			vni, s.RxPackets, s.RxBytes, s.TxPackets, s.TxBytes, vni, kRx, kTx, size[vni])
		for what, n := range map[string]uint64{"vxland rx": s.RxBytes, "vxland tx": s.TxBytes, "kernel rx": kRx, "kernel tx": kTx} {
			if n < uint64(size[vni]) || n > uint64(size[vni])*3/2 {
				t.Errorf("VNI %d: %s %d bytes for a transfer of %d each way", vni, what, n, size[vni])
			}
		}
	}

	// UDP to the same address and port in both VNIs: each datagram
	// reaches its own VNI's container only.
	sent := map[int]int{42: 20, 43: 30}
	listeners := map[int]*testContainer{}
	for _, vni := range vnis {
		listeners[vni] = &testContainer{ns: ctrs[fmt.Sprintf("v%d", vni)], ip: vIP}
	}
	counts := map[int]int{}
	var mu sync.Mutex
	for _, vni := range vnis {
		pc := listenUDP(t, listeners[vni], 7000)
		wg.Go(func() {
			buf := make([]byte, 2048)
			for {
				pc.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if string(buf[:n]) != fmt.Sprintf("vni %d", vni) {
					t.Errorf("VNI %d's container received %q", vni, buf[:n])
				}
				mu.Lock()
				counts[vni]++
				mu.Unlock()
			}
		})
	}
	for _, vni := range vnis {
		for range sent[vni] {
			if err := sendUDP(ctrs[fmt.Sprintf("k%d", vni)], kIP, vIP+":7000", []byte(fmt.Sprintf("vni %d", vni))); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	for _, vni := range vnis {
		if counts[vni] != sent[vni] {
			t.Errorf("VNI %d's container received %d datagrams, its VNI sent %d", vni, counts[vni], sent[vni])
		}
	}

	// Each VNI's FDB learned the kernel side's container, in that VNI only.
	for _, vni := range vnis {
		var f control.FDBState
		tp.query(vh, &f, "show", "fdb", "--vni", strconv.Itoa(vni))
		learned := 0
		for _, e := range f.Entries {
			if e.VNI != uint32(vni) {
				t.Errorf("show fdb --vni %d lists an entry of VNI %d: %+v", vni, e.VNI, e)
			}
			if e.MAC == "02:00:00:00:00:01" && e.Origin == "learned" {
				learned++
			}
		}
		if learned != 1 {
			t.Errorf("show fdb --vni %d: the kernel side's container learned %d times: %+v", vni, learned, f.Entries)
		}
	}

	// VNI 44 is not served: its datagram is dropped and counted.
	frame := forgedUDP(t, mustMAC(t, ctrs["v42"]), vIP, 7000)
	before := value(t, scrape(t, vh), "vxland_unclaimed_drops_total", "reason", "vni_mismatch")
	if err := sendUDP(kh.ns, kh.ip, fmt.Sprintf("%s:%d", vh.ip, encap.DefaultPort), vxlanPacket(t, 44, frame)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a datagram of VNI 44 counted as unclaimed vni_mismatch", func() bool {
		return value(t, scrape(t, vh), "vxland_unclaimed_drops_total", "reason", "vni_mismatch") == before+1
	})
	// One control socket answers for both VNIs; the VNI not served is
	// refused.
	var s overlay.Stats
	ctxGet, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := control.Get(ctxGet, vh.sock, "/stats?vni=44", &s); err == nil || !strings.Contains(err.Error(), "not served") {
		t.Errorf("/stats?vni=44: %v, want VNI 44 not served", err)
	}

	// vxland fdb --vni adds to that VNI's table only.
	const static = "02:00:00:00:00:99"
	if out, errOut, code := cli("fdb", "add", static, "dst", kh.ip, "--vni", "43", "--control-socket", vh.sock); code != 0 {
		t.Fatalf("vxland fdb add --vni 43: exit %d: %s%s", code, out, errOut)
	}
	for _, vni := range vnis {
		text := tp.text(vh, "show", "fdb", "--vni", strconv.Itoa(vni))
		if has := strings.Contains(text, static); has != (vni == 43) {
			t.Errorf("after fdb add --vni 43, show fdb --vni %d lists %s: %v\n%s", vni, static, has, text)
		}
	}
}

// newKernelVNIsTopo returns a topology of two hosts: kh with a kernel
// vxlan device vx<VNI> on the bridge br<VNI> for each of vnis, on port
// 4789, whose peer is vh, where vxland is to run.
func newKernelVNIsTopo(t *testing.T, vnis ...int) (tp *topo, kh, vh *testHost) {
	t.Helper()
	tp = newTopo(t, vnis[0])
	kh, vh = tp.addHost(), tp.addHost()
	for _, vni := range vnis {
		tp.kernelVNI(kh, vni, fmt.Sprintf("vx%d", vni), fmt.Sprintf("br%d", vni), encap.DefaultPort, vh.ip)
	}
	return tp, kh, vh
}

// kernelCounters reads the counters of h's kernel vxlan device of vni.
func kernelCounters(t *testing.T, h *testHost, vni int) netlab.LinkStats {
	t.Helper()
	s, err := h.ns.LinkStats(fmt.Sprintf("vx%d", vni))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustMAC(t *testing.T, ns *netlab.NS) []byte {
	t.Helper()
	mac, err := ns.HardwareAddr("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return mac
}
