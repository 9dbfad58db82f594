package control

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
)

func TestTrace(t *testing.T) {
	peer1, peer2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	static, remote, learned := fdb.MAC{2, 0, 0, 0, 0, 1}, fdb.MAC{2, 0, 0, 0, 0, 2}, fdb.MAC{2, 0, 0, 0, 0, 3}
	withFlood := func() *source {
		src := &source{fdb: fdb.New(4789, time.Minute), neigh: fdb.NewNeighbors(),
			stats: overlay.Stats{TxFlooded: 5, ARPAnswered: 3, ARPFlooded: 2, Drops: map[string]uint64{"no_destination": 1}}}
		src.fdb.AddFlood(42, peer1, fdb.SourceStatic)
		src.fdb.AddFlood(42, peer2, fdb.SourceEtcd)
		src.fdb.Set(42, static, peer1, fdb.OriginStatic)
		src.fdb.Set(42, remote, peer2, fdb.OriginRemote)
		src.fdb.Learn(42, learned, peer2)
		src.neigh.Set(netip.MustParseAddr("10.200.0.2"), remote)
		return src
	}
	empty := func() *source {
		return &source{fdb: fdb.New(4789, time.Minute), stats: overlay.Stats{Drops: map[string]uint64{}}}
	}
	for _, tc := range []struct {
		name, to      string
		src           func() *source
		arp, verdict  string
		origin, vtep  string
		flood         int
		wantErr, peer bool
	}{
		{"static MAC", "02:00:00:00:00:01", withFlood, "", VerdictUnicast, "static", "192.0.2.1:4789", 0, false, true},
		{"etcd MAC", "02:00:00:00:00:02", withFlood, "", VerdictUnicast, "remote", "192.0.2.2:4789", 0, false, true},
		{"learned MAC", "02-00-00-00-00-03", withFlood, "", VerdictUnicast, "learned", "192.0.2.2:4789", 0, false, true},
		{"unknown MAC", "02:00:00:00:00:09", withFlood, "", VerdictFlood, "", "", 2, false, false},
		{"broadcast", "ff:ff:ff:ff:ff:ff", withFlood, "", VerdictFlood, "", "", 2, false, false},
		{"unknown MAC, no flood list", "02:00:00:00:00:09", empty, "", VerdictDrop, "", "", 0, false, false},
		{"suppressed IP", "10.200.0.2", withFlood, VerdictAnswered, VerdictUnicast, "remote", "192.0.2.2:4789", 0, false, true},
		{"unknown IP", "10.200.0.9", withFlood, VerdictFlood, "", "", "", 2, false, false},
		{"IP without a neighbour table", "10.200.0.2", empty, VerdictDrop, "", "", "", 0, false, false},
		{"IPv6", "fd00::1", withFlood, "", "", "", "", 0, true, false},
		{"nonsense", "02:00", withFlood, "", "", "", "", 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := trace(tc.src(), tc.to)
			if (err != nil) != tc.wantErr {
				t.Fatalf("trace(%q) error %v, want error %v", tc.to, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got.ARP != tc.arp || got.Verdict != tc.verdict || len(got.Flood) != tc.flood || (got.Peer != nil) != tc.peer {
				t.Fatalf("trace(%q) = arp %q verdict %q flood %v peer %v; want %q %q, %d VTEPs, peer %v",
					tc.to, got.ARP, got.Verdict, got.Flood, got.Peer, tc.arp, tc.verdict, tc.flood, tc.peer)
			}
			if tc.origin != "" && (got.Entry == nil || got.Entry.Origin != tc.origin || got.Entry.VTEP.String() != tc.vtep) {
				t.Fatalf("trace(%q) entry %+v, want %s to %s", tc.to, got.Entry, tc.origin, tc.vtep)
			}
			if tc.arp == VerdictAnswered && got.MAC != "02:00:00:00:00:02" {
				t.Fatalf("trace(%q) MAC %s, want the neighbour table's", tc.to, got.MAC)
			}
			if len(got.Counters) != 4 {
				t.Fatalf("counters %v, want no_destination, tx_flooded, arp_answered and arp_flooded", got.Counters)
			}
		})
	}
}
