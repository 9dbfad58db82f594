package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay"
)

// printFDB prints st as "vxland show fdb" does, naming the container
// behind each MAC.
func (d *demo) printFDB(st control.FDBState) {
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	for _, line := range control.FDBLines(st) {
		mac, _, _ := strings.Cut(line, " ")
		if mac == "00:00:00:00:00:00" {
			// No cell: the flood lines come last, and need no padding.
			fmt.Fprintf(tw, "  %s\n", line)
			continue
		}
		who := "?"
		if c, ok := d.byMAC[mac]; ok {
			who = c.name
		}
		fmt.Fprintf(tw, "  %s\t%s\n", line, who)
	}
	tw.Flush()
}

// describeValue summarises a discovery record for a reader.
func describeValue(kv etcdKV) string {
	lease := fmt.Sprintf("lease %x", kv.Lease)
	switch {
	case strings.Contains(kv.Key, "/vtep/"):
		var m discovery.Member
		if err := json.Unmarshal([]byte(kv.Value), &m); err == nil {
			return fmt.Sprintf("host with VTEP %s, VXLAN on UDP port %d; %s", m.Addr, m.Port, lease)
		}
	case strings.Contains(kv.Key, "/mac/"):
		var r discovery.MACRecord
		if err := json.Unmarshal([]byte(kv.Value), &r); err == nil {
			ips := make([]string, len(r.IPs))
			for i, ip := range r.IPs {
				ips[i] = ip.String()
			}
			return fmt.Sprintf("behind VTEP %s, IP %s; %s", r.VTEP, strings.Join(ips, ","), lease)
		}
	}
	return kv.Value + "; " + lease
}

// txCounters returns ifname's transmit counters in ns.
func txCounters(ns *netlab.NS, ifname string) (netlab.LinkCounters, error) {
	s, err := ns.LinkStats(ifname)
	return s.TX, err
}

// ---- 6. counters ----

func (d *demo) showCounters(ctx context.Context) error {
	stats := make([]overlay.Stats, len(d.hosts))
	for i, h := range d.hosts {
		if err := control.Get(ctx, h.sock, "/stats", &stats[i]); err != nil {
			return fmt.Errorf("reading the counters of %s: %w", h.name, err)
		}
	}
	d.printf("What each vxland counted (\"vxland show stats\"). tx: VXLAN packets sent to other\n")
	d.printf("hosts; rx: packets received from them and written to the TAP. Bytes are those of\n")
	d.printf("the inner Ethernet frames, without the headers VXLAN adds.\n\n")
	d.printf("%-26s", "")
	for _, h := range d.hosts {
		d.printf("%12s", h.name)
	}
	d.printf("\n")
	row := func(label string, value func(overlay.Stats) uint64) {
		d.printf("%-26s", label)
		for _, s := range stats {
			d.printf("%12d", value(s))
		}
		d.printf("\n")
	}
	row("tx packets", func(s overlay.Stats) uint64 { return s.TxPackets })
	row("tx bytes", func(s overlay.Stats) uint64 { return s.TxBytes })
	row("tx flooded (broadcasts)", func(s overlay.Stats) uint64 { return s.TxFlooded })
	row("rx packets", func(s overlay.Stats) uint64 { return s.RxPackets })
	row("rx bytes", func(s overlay.Stats) uint64 { return s.RxBytes })
	row("ARP answered locally", func(s overlay.Stats) uint64 { return s.ARPAnswered })
	row("ARP requests flooded", func(s overlay.Stats) uint64 { return s.ARPFlooded })
	row("dropped", func(s overlay.Stats) uint64 {
		var n uint64
		for _, v := range s.Drops {
			n += v
		}
		return n
	})

	var drops []string
	for i, s := range stats {
		reasons := make([]string, 0, len(s.Drops))
		for r, n := range s.Drops {
			if n > 0 {
				reasons = append(reasons, fmt.Sprintf("%s %d", r, n))
			}
		}
		sort.Strings(reasons)
		if len(reasons) > 0 {
			drops = append(drops, fmt.Sprintf("%s: %s", d.hosts[i].name, strings.Join(reasons, ", ")))
		}
	}
	if len(drops) > 0 {
		d.printf("\nDrops by reason: %s\n", strings.Join(drops, "; "))
	}
	d.printf("\nh1 sent the %d MB to h2, and h2 the ACKs back. \"ARP requests flooded\" asked\n", d.opts.transferMB)
	d.printf("for an address etcd did not hold yet, and went to every host: h1-c1's in step\n")
	d.printf("4, before the others had talked. \"ARP answered locally\" were answered by the\n")
	d.printf("vxland of the asking container's host, from etcd's records.\n")
	return nil
}

// ---- 7. overhead and MTU ----

// Header sizes, in bytes.
const (
	ipv4Header     = 20
	udpHeader      = 8
	ethernetHeader = 14
	tcpHeader      = 20
	tcpTimestamps  = 12 // Linux puts the timestamp option in every segment
)

func (d *demo) showOverhead(context.Context) error {
	const overhead = ipv4Header + udpHeader + encap.HeaderLen + ethernetHeader
	if overhead != encap.OverheadIPv4 {
		return fmt.Errorf("internal error: header sizes add up to %d, encap.OverheadIPv4 is %d", overhead, encap.OverheadIPv4)
	}
	d.printf("A container's IP packet crosses the underlay wrapped in four headers:\n\n")
	d.printf("  outer IPv4 %d + UDP %d + VXLAN %d + the container's Ethernet header %d\n  = %d bytes\n\n",
		ipv4Header, udpHeader, encap.HeaderLen, ethernetHeader, overhead)
	d.printf("The underlay carries IP packets of at most %d bytes (its MTU), so a container\n", underlayMTU)
	d.printf("may send at most %d - %d = %d: the MTU of every container's eth0, and of\n%s.",
		underlayMTU, overhead, overlayMTU, tapName)
	d.printf(" (Over an IPv6 underlay the outer header is 40 bytes: %d bytes, MTU %d.)\n\n",
		encap.OverheadIPv6, underlayMTU-encap.OverheadIPv6)

	// A full-size TCP segment: IP and TCP headers with timestamps come off
	// the MTU; the rest is payload.
	tcpIP := ipv4Header + tcpHeader + tcpTimestamps
	plainPayload := underlayMTU - tcpIP
	overlayPayload := overlayMTU - tcpIP
	d.printf("For bulk TCP, what matters is the payload of a full-size segment (IPv4 %d +\n", ipv4Header)
	d.printf("TCP %d + timestamps %d = %d bytes of headers) per %d-byte packet on the\nunderlay:\n\n", tcpHeader, tcpTimestamps, tcpIP, underlayMTU)
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  \tpayload\tefficiency\n")
	fmt.Fprintf(tw, "  without VXLAN (MTU %d)\t%d B\t%.1f %%\n", underlayMTU, plainPayload, pct(plainPayload, underlayMTU))
	fmt.Fprintf(tw, "  over VXLAN (MTU %d)\t%d B\t%.1f %%\n", overlayMTU, overlayPayload, pct(overlayPayload, underlayMTU))
	tw.Flush()
	d.printf("\nVXLAN thus costs %d of %d payload bytes: %.1f %% of bulk throughput. Small\n",
		plainPayload-overlayPayload, plainPayload, pct(plainPayload-overlayPayload, plainPayload))
	d.printf("packets pay the same %d bytes, a larger share: a 100-byte packet becomes %d.\n", overhead, 100+overhead)

	t := d.transfer
	if t.underlay.Packets == 0 {
		return nil
	}
	// The link counters include each packet's own Ethernet header.
	perPacket := float64(t.underlay.Bytes) / float64(t.underlay.Packets)
	if perPacket > float64(underlayMTU+ethernetHeader) {
		// vxland's fast path sends a burst as one UDP_SEGMENT message,
		// and a veth carries it unsegmented: the counters see bursts.
		d.printf("\nMeasured on h1's underlay port (eth0) during the %d MB transfer: %d\n", t.bytes/1_000_000, t.underlay.Packets)
		d.printf("bursts averaging %.0f bytes. vxland hands the kernel whole bursts of\n", perPacket)
		d.printf("VXLAN datagrams (UDP segmentation offload) and a veth carries them as they\n")
		d.printf("are; a real NIC sends each burst as %d-byte packets, each paying the\n", underlayMTU)
		d.printf("%d bytes above: %d / %d = %.1f %% TCP payload per packet on the wire.\n",
			overhead, overlayPayload, underlayMTU+ethernetHeader, pct(overlayPayload, underlayMTU+ethernetHeader))
		return nil
	}
	d.printf("\nMeasured on h1's underlay port (eth0) during the %d MB transfer: %d\n", t.bytes/1_000_000, t.underlay.Packets)
	d.printf("packets, %d bytes with their outer Ethernet headers: %.0f bytes per\n", t.underlay.Bytes, perPacket)
	measured, ideal := pct(t.bytes, int(t.underlay.Bytes)), pct(overlayPayload, underlayMTU+ethernetHeader)
	d.printf("packet, of which %.1f %% TCP payload. Full-size segments alone give\n%d / %d = %.1f %%",
		measured, overlayPayload, underlayMTU+ethernetHeader, ideal)
	if ideal-measured >= 0.1 {
		d.printf(";\nthe difference is the odd smaller segment, and etcd's keep-alives")
	}
	d.printf(".\n")
	return nil
}

func pct(part, whole int) float64 { return 100 * float64(part) / float64(whole) }
