package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay"
)

// SIGHUP with the --config file's section vnis rewritten from VNIs 42
// and 43 to 42 and 44 brings VNI 44 up and takes VNI 43 down (its TAP
// too, though --persist keeps TAPs across restarts), while a numbered UDP
// probe on VNI 42 loses nothing. A VNI that cannot be brought up changes
// nothing. The peer host has a kernel vxlan device per VNI.
func TestReloadAddsAndRemovesVNIs(t *testing.T) {
	tp, kh, vh := newKernelVNIsTopo(t, 42, 43, 44)
	path := filepath.Join(tp.dir, "vnis.yaml")
	writeFile(t, path, "vnis:\n  - {vni: 42}\n  - {vni: 43}\n")
	tp.launch(vh, tp.daemonCmd(vh.ns, "--config", path, "--local-ip", vh.ip, "--peer", kh.ip,
		"--control-socket", vh.sock, "--metrics-listen", metricsAddr(vh), "--state-dir", t.TempDir()))

	const kIP, vIP = "10.0.0.1", "10.0.0.2"
	container := func(h *testHost, br, name, ip string) *netlab.NS {
		t.Helper()
		ns, err := tp.lab.Container(h.ns, br, "c"+name, name, ip+"/24", tp.mtu)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	k42, v42 := container(kh, "br42", "k42", kIP), container(vh, "vxbr42", "v42", vIP)
	ctx := testCtx(t, 60*time.Second)
	if _, err := netlab.Ping(ctx, k42, vIP, 3); err != nil {
		t.Fatalf("VNI 42: ping: %v", err)
	}
	probe, err := netlab.StartUDPProbe(context.Background(), k42, v42, vIP, probeInterval)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { probe.Stop() })
	waitFor(t, 10*time.Second, "the probe on VNI 42 under way", func() bool { return probe.Sent() >= 100 })

	writeFile(t, path, "vnis:\n  - {vni: 42}\n  - {vni: 44}\n")
	vh.signal(t, syscall.SIGHUP)
	waitFor(t, 15*time.Second, "the reload that changes the VNIs logged", func() bool {
		return strings.Contains(vh.proc.Output(), `msg="VNIs changed" added=[44] removed=[43]`)
	})

	// VNI 44 carries traffic.
	k44 := container(kh, "br44", "k44", kIP)
	container(vh, "vxbr44", "v44", vIP)
	if _, err := netlab.Ping(ctx, k44, vIP, 3); err != nil {
		t.Fatalf("VNI 44, added by the reload: ping: %v\n%s", err, vh.proc.Output())
	}
	var s overlay.Stats
	ctxGet, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := control.Get(ctxGet, vh.sock, "/stats?vni=44", &s); err != nil || s.RxPackets == 0 {
		t.Errorf("/stats?vni=44: %v, %d frames received; want VNI 44's traffic", err, s.RxPackets)
	}

	// VNI 43 is gone: its TAP, its control-socket view, its metrics; its
	// datagrams are dropped as unclaimed.
	if out, err := vh.ns.Run("ip", "link", "show", "vxtap43"); err == nil {
		t.Errorf("vxtap43 is still there after VNI 43 was removed:\n%s", out)
	}
	if err := control.Get(ctxGet, vh.sock, "/stats?vni=43", &s); err == nil || !strings.Contains(err.Error(), "not served") {
		t.Errorf("/stats?vni=43: %v, want VNI 43 not served", err)
	}
	m := scrape(t, vh)
	for _, l := range m.Labels("vxland_rx_packets_total") {
		if l["vni"] == "43" {
			t.Errorf("vxland_rx_packets_total still has VNI 43: %v", l)
		}
	}
	if _, ok := m.Value("vxland_rx_packets_total", "vni", "44"); !ok {
		t.Errorf("vxland_rx_packets_total has no VNI 44")
	}
	before := value(t, m, "vxland_unclaimed_drops_total", "reason", "vni_mismatch")
	frame := forgedUDP(t, mustMAC(t, v42), vIP, 7000)
	if err := sendUDP(kh.ns, kh.ip, fmt.Sprintf("%s:%d", vh.ip, encap.DefaultPort), vxlanPacket(t, 43, frame)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a datagram of VNI 43 counted as unclaimed vni_mismatch", func() bool {
		return value(t, scrape(t, vh), "vxland_unclaimed_drops_total", "reason", "vni_mismatch") == before+1
	})

	// A VNI whose bridge cannot be made: named in the log, nothing
	// changes.
	writeFile(t, path, "vnis:\n  - {vni: 42}\n  - {vni: 44}\n  - {vni: 45, bridge: lo}\n")
	vh.signal(t, syscall.SIGHUP)
	waitFor(t, 15*time.Second, "the reload that cannot add VNI 45 logged", func() bool {
		return strings.Contains(vh.proc.Output(), `msg="VNIs not changed; the daemon serves those it served" key=vni err="VNI 45: `)
	})
	if out, err := vh.ns.Run("ip", "link", "show", "vxtap45"); err == nil {
		t.Errorf("vxtap45 is there after VNI 45 could not be added:\n%s", out)
	}
	if _, err := netlab.Ping(ctx, k44, vIP, 3); err != nil {
		t.Fatalf("VNI 44 after a reload that failed: ping: %v", err)
	}

	// VNI 42 lost nothing across the reloads.
	probeLostNothing(t, probe, "VNI 42's probe", "across the reloads")
}

// probeLostNothing fails t unless every datagram probe sent so far
// arrives, late ones given a few seconds.
func probeLostNothing(t *testing.T, probe *netlab.UDPProbe, name, when string) {
	t.Helper()
	w := netlab.ProbeWindow{From: 0, To: probe.Sent()}
	for deadline := time.Now().Add(5 * time.Second); probe.Lost(w) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if lost := probe.Lost(w); lost > 0 {
		t.Fatalf("%s lost %d of %d datagrams %s", name, lost, w.To, when)
	}
	t.Logf("%s: %d datagrams, none lost, %s", name, w.To, when)
}
