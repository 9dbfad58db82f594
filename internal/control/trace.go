package control

import (
	"fmt"
	"net/netip"

	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
)

// What the data plane does with a frame, as Trace reports it.
const (
	VerdictUnicast = "unicast" // sent to the VTEP that owns the MAC
	VerdictFlood   = "flood"   // sent to every VTEP of the flood list
	VerdictDrop    = "drop"    // nowhere to send it: counted as no_destination
	// VerdictAnswered: an ARP request answered on this host from the
	// neighbour table (ARP suppression); nothing crosses the underlay.
	VerdictAnswered = "answered"
)

// Trace is the body of GET /trace?to=MAC|IPv4: what the data plane would
// do, with the tables as they are now, with a frame to a MAC, or with a
// container's ARP request for an IPv4 address and then the frames to the
// MAC it learns.
type Trace struct {
	To string `json:"to"`
	// ARP is the verdict on the ARP request, for an IPv4 address:
	// answered, flood or drop.
	ARP string `json:"arp,omitempty"`
	// MAC is the destination: the one asked about, or the one the
	// neighbour table answers ARP with ("" when it has none).
	MAC string `json:"mac,omitempty"`
	// Verdict is what happens to a frame to MAC: unicast, flood or drop;
	// "" when MAC is not known.
	Verdict string `json:"verdict,omitempty"`
	// Entry is the FDB entry that sends it (unicast), and Peer the record
	// of its VTEP, when the table has one.
	Entry *fdb.Entry     `json:"entry,omitempty"`
	Peer  *fdb.VTEPState `json:"peer,omitempty"`
	// Flood is the flood list a flooded frame or ARP request goes to.
	Flood []netip.AddrPort `json:"flood"`
	// Counters are the data plane's counters that bear on the verdict.
	Counters map[string]uint64 `json:"counters"`
}

// ParseTraceTarget parses the argument of a trace: a MAC address
// (02:00:00:00:00:0a) or an IPv4 address.
func ParseTraceTarget(s string) (fdb.MAC, netip.Addr, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		if !ip.Unmap().Is4() {
			return fdb.MAC{}, netip.Addr{}, fmt.Errorf("%q: only IPv4 addresses are resolved by ARP; give a MAC address", s)
		}
		return fdb.MAC{}, ip.Unmap(), nil
	}
	mac, err := fdb.ParseMAC(s)
	if err != nil {
		return fdb.MAC{}, netip.Addr{}, fmt.Errorf("%q is neither a MAC address (02:00:00:00:00:0a) nor an IPv4 address", s)
	}
	return mac, netip.Addr{}, nil
}

// trace answers from the live tables, never from the data path.
func trace(src Source, to string) (Trace, error) {
	mac, ip, err := ParseTraceTarget(to)
	if err != nil {
		return Trace{}, err
	}
	table, vni := src.FDB(), src.VNI()
	stats := src.Stats()
	t := Trace{To: to, Flood: []netip.AddrPort{}, Counters: map[string]uint64{
		overlay.DropNoDestination.String(): stats.Drops[overlay.DropNoDestination.String()],
		"tx_flooded":                       stats.TxFlooded,
		"arp_answered":                     stats.ARPAnswered,
		"arp_flooded":                      stats.ARPFlooded,
	}}
	flood := func() string {
		for _, v := range table.Flood(vni) {
			t.Flood = append(t.Flood, v.AddrPort())
		}
		if len(t.Flood) == 0 {
			return VerdictDrop
		}
		return VerdictFlood
	}
	if ip.IsValid() {
		var ok bool
		if n := src.Neighbors(); n != nil {
			mac, ok = n.Lookup(ip)
		}
		if !ok {
			t.ARP = flood()
			return t, nil
		}
		t.ARP = VerdictAnswered
	}
	t.MAC = mac.String()
	if mac.IsMulticast() {
		t.Verdict = flood()
		return t, nil
	}
	e, ok := table.Entry(vni, mac)
	if !ok {
		t.Verdict = flood()
		return t, nil
	}
	t.Verdict, t.Entry = VerdictUnicast, &e
	for _, v := range table.VTEPs() {
		if v.VTEP == e.VTEP {
			t.Peer = &v
		}
	}
	return t, nil
}
