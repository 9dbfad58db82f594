package fdb

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	vtepA = netip.MustParseAddr("192.0.2.1")
	vtepB = netip.MustParseAddr("192.0.2.2")
	macX  = MAC{0x02, 0, 0, 0, 0, 0x0a}
)

func TestFDBLearnOnlyFromKnownVTEPs(t *testing.T) {
	f := New(4789, time.Minute)
	if f.Learn(1, macX, vtepA) == LearnNew {
		t.Fatal("learned from a VTEP that is not in any flood list")
	}
	if _, ok := f.Lookup(1, macX); ok {
		t.Fatal("lookup found an entry learned from an unknown VTEP")
	}
	f.AddFlood(1, vtepA, SourceStatic)
	if f.Learn(1, macX, vtepA) != LearnNew {
		t.Fatal("did not learn from a known VTEP")
	}
	got, ok := f.Lookup(1, macX)
	if want := netip.AddrPortFrom(vtepA, 4789); !ok || got.AddrPort() != want {
		t.Fatalf("Lookup = %v, %v; want %v", got, ok, want)
	}
	if _, ok := f.Lookup(2, macX); ok {
		t.Fatal("entry leaked into another VNI")
	}
	if f.Learn(1, macX, vtepA) == LearnNew {
		t.Fatal("relearning the same place reported a change")
	}
}

func TestFDBLearnedEntryMoves(t *testing.T) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepA, SourceStatic)
	f.AddFlood(1, vtepB, SourceStatic)
	f.Learn(1, macX, vtepA)
	if f.Learn(1, macX, netip.MustParseAddr("::ffff:192.0.2.2")) != LearnNew {
		t.Fatal("a MAC seen behind another VTEP did not move")
	}
	if got, _ := f.Lookup(1, macX); got.AddrPort().Addr() != vtepB {
		t.Fatalf("Lookup after move = %v, want %v", got, vtepB)
	}
}

func TestFDBStaticBeatsLearned(t *testing.T) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepB, SourceStatic)
	f.Set(1, macX, vtepA, OriginStatic)
	if f.Learn(1, macX, vtepB) == LearnNew {
		t.Fatal("learning replaced a static entry")
	}
	if got, _ := f.Lookup(1, macX); got.AddrPort().Addr() != vtepA {
		t.Fatalf("Lookup = %v, want the static %v", got, vtepA)
	}
	if f.Set(1, macX, vtepB, OriginRemote) {
		t.Fatal("a remote entry replaced a static one")
	}
	if known(f, vtepA) {
		t.Fatal("an entry made its VTEP known: only flood list membership does")
	}
	if !f.Delete(1, macX, OriginStatic) {
		t.Fatal("Delete of the static entry failed")
	}
	if _, ok := f.Lookup(1, macX); ok {
		t.Fatal("deleted entry still found")
	}
}

func TestFDBAgeing(t *testing.T) {
	f := New(4789, 50*time.Millisecond)
	f.AddFlood(1, vtepA, SourceStatic)
	f.Learn(1, macX, vtepA)
	f.Set(1, MAC{2, 0, 0, 0, 0, 0x0b}, vtepA, OriginStatic)
	// Move the entry's last sighting into the past rather than sleeping.
	f.mu.RLock()
	f.entries[fdbKey{1, macX}].seen.Add(-int64(time.Second))
	f.mu.RUnlock()
	if _, ok := f.Lookup(1, macX); ok {
		t.Fatal("an aged entry is still found")
	}
	if n := f.Expire(); n != 1 {
		t.Fatalf("Expire removed %d entries, want 1 (static entries never age)", n)
	}
	if len(f.Entries()) != 1 {
		t.Fatalf("Entries = %v, want only the static one", f.Entries())
	}
}

func TestFDBFloodList(t *testing.T) {
	f := New(8472, 0)
	f.AddFlood(7, vtepA, SourceStatic)
	f.AddFlood(7, vtepB, SourceStatic)
	if f.AddFlood(7, vtepA, SourceStatic) {
		t.Fatal("adding a member twice reported a change")
	}
	if f.RemoveFlood(7, vtepA, SourceStatic) || len(f.Flood(7)) != 2 {
		t.Fatal("one RemoveFlood undid both AddFloods of a member")
	}
	held := f.Flood(7)
	want := []netip.AddrPort{netip.AddrPortFrom(vtepA, 8472), netip.AddrPortFrom(vtepB, 8472)}
	if !slices.Equal(addrs(held), want) {
		t.Fatalf("Flood = %v, want %v", addrs(held), want)
	}
	f.Learn(7, macX, vtepA)
	f.RemoveFlood(7, vtepA, SourceStatic)
	if !slices.Equal(addrs(held), want) {
		t.Fatal("RemoveFlood modified a slice handed out earlier")
	}
	if got := addrs(f.Flood(7)); !slices.Equal(got, want[1:]) {
		t.Fatalf("Flood after remove = %v, want %v", got, want[1:])
	}
	if known(f, vtepA) {
		t.Fatal("removed VTEP is still accepted")
	}
	if _, ok := f.Lookup(7, macX); ok {
		t.Fatal("entries learned from a removed VTEP survive it")
	}
	if len(f.Flood(8)) != 0 {
		t.Fatal("flood list leaked into another VNI")
	}
}

// A VNI with a multicast group floods to the group alone; the members of
// its flood list stay accepted.
func TestFDBGroupReplacesFloodList(t *testing.T) {
	f := New(4789, 0)
	group := netip.MustParseAddr("239.1.1.1")
	f.AddFlood(7, vtepA, SourceStatic)
	f.SetGroup(7, group)
	if got, want := addrs(f.Flood(7)), []netip.AddrPort{netip.AddrPortFrom(group, 4789)}; !slices.Equal(got, want) {
		t.Fatalf("Flood = %v, want %v", got, want)
	}
	if !known(f, vtepA) || known(f, group) {
		t.Fatal("the flood list's member is no longer accepted, or the group is")
	}
	f.AddFlood(8, vtepB, SourceStatic)
	if got := addrs(f.Flood(8)); !slices.Equal(got, []netip.AddrPort{netip.AddrPortFrom(vtepB, 4789)}) {
		t.Fatalf("the group leaked into another VNI: %v", got)
	}
}

func TestFDBNoAllocs(t *testing.T) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepA, SourceStatic)
	f.Learn(1, macX, vtepA)
	for name, fn := range map[string]func(){
		"Lookup":     func() { f.Lookup(1, macX) },
		"LookupMiss": func() { f.Lookup(1, MAC{2}) },
		"Flood":      func() { f.Flood(1) },
		"KnownVTEP":  func() { f.KnownVTEP(vtepA) },
		"LearnKnown": func() { f.Learn(1, macX, vtepA) },
	} {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
}

func BenchmarkFDBLookup(b *testing.B) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepA, SourceStatic)
	for i := range 1024 {
		f.Learn(1, MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}, vtepA)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, ok := f.Lookup(1, MAC{2, 0, 0, 0, byte(i>>8) & 3, byte(i)}); !ok {
			b.Fatal("miss")
		}
	}
}

func TestFDBAllowWithoutFlooding(t *testing.T) {
	f := New(8472, 0)
	f.Allow(vtepA, SourceFlannel)
	if !known(f, vtepA) || len(f.Flood(1)) != 0 {
		t.Fatalf("Allow: known %v, flood %v; want known and no flood list", known(f, vtepA), f.Flood(1))
	}
	f.AddFlood(1, vtepA, SourceStatic)
	f.Disallow(vtepA, SourceFlannel)
	if !known(f, vtepA) {
		t.Fatal("Disallow removed a VTEP that a flood list still names")
	}
	f.RemoveFlood(1, vtepA, SourceStatic)
	if known(f, vtepA) {
		t.Fatal("VTEP still known after its last reference went")
	}
	f.Disallow(vtepA, SourceFlannel) // unbalanced: must not go negative or panic
	f.Allow(vtepA, SourceFlannel)
	if !known(f, vtepA) {
		t.Fatal("Allow after an unbalanced Disallow did not take")
	}
}

// The counts agree with Entries and the flood lists: by VNI and origin,
// without aged entries, and the known VTEPs include those only allowed.
func TestFDBCounts(t *testing.T) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepA, SourceStatic)
	f.AddFlood(2, vtepA, SourceEtcd)
	f.Allow(vtepB, SourceFlannel)
	f.Learn(1, macX, vtepA)
	f.Learn(1, MAC{2, 0, 0, 0, 0, 0x0c}, vtepA)
	f.Set(1, MAC{2, 0, 0, 0, 0, 0x0b}, vtepB, OriginRemote)
	f.Set(2, MAC{2, 0, 0, 0, 0, 0x0d}, vtepB, OriginStatic)
	f.mu.RLock()
	f.entries[fdbKey{1, MAC{2, 0, 0, 0, 0, 0x0c}}].seen.Add(-int64(time.Hour))
	f.mu.RUnlock()
	if got, want := f.CountEntries(1), [NumOrigins]int{OriginLearned: 1, OriginRemote: 1}; got != want {
		t.Errorf("CountEntries(1) = %v, want %v (the aged entry not counted)", got, want)
	}
	if got, want := f.CountEntries(2), [NumOrigins]int{OriginStatic: 1}; got != want {
		t.Errorf("CountEntries(2) = %v, want %v", got, want)
	}
	if n := f.KnownVTEPs(); n != 2 {
		t.Errorf("KnownVTEPs = %d, want 2 (a flood list member and an allowed one)", n)
	}
	f.Disallow(vtepB, SourceFlannel)
	if n := f.KnownVTEPs(); n != 1 {
		t.Errorf("KnownVTEPs after Disallow = %d, want 1", n)
	}
}

func known(f *Table, a netip.Addr) bool {
	_, ok := f.KnownVTEP(a)
	return ok
}

func addrs(vs []*VTEP) []netip.AddrPort {
	out := make([]netip.AddrPort, len(vs))
	for i, v := range vs {
		out[i] = v.AddrPort()
	}
	return out
}

// A VTEP's record says why it is known, every reason counted apart, and
// which entries name it; it leaves the table with the last of them.
func TestFDBVTEPSourcesAndMACs(t *testing.T) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepA, SourceStatic)
	f.AddFlood(1, vtepA, SourceEtcd)
	f.Allow(vtepB, SourceFlannel)
	f.Set(1, macX, vtepB, OriginRemote)
	f.Learn(1, MAC{2, 0, 0, 0, 0, 0x0c}, vtepA)

	vs := f.VTEPs()
	if len(vs) != 2 || vs[0].VTEP.Addr() != vtepA || vs[1].VTEP.Addr() != vtepB {
		t.Fatalf("VTEPs = %+v, want %v and %v", vs, vtepA, vtepB)
	}
	a, b := vs[0], vs[1]
	if !slices.Equal(a.Sources, []string{"static", "etcd"}) || !slices.Equal(a.Flood, []uint32{1}) {
		t.Errorf("%v: sources %v, flood %v; want static and etcd, flood list of VNI 1", vtepA, a.Sources, a.Flood)
	}
	if len(a.MACs) != 1 || a.MACs[0].Origin != "learned" || !a.Seen {
		t.Errorf("%v: MACs %+v, seen %v; want the learned MAC, seen", vtepA, a.MACs, a.Seen)
	}
	if !slices.Equal(b.Sources, []string{"flannel"}) || len(b.Flood) != 0 || len(b.MACs) != 1 || b.MACs[0].MAC != macX.String() {
		t.Errorf("%v: %+v; want known through flannel, not flooded to, with %v", vtepB, b, macX)
	}

	// One source going leaves the VTEP known through the other.
	f.RemoveFlood(1, vtepA, SourceEtcd)
	if vs := f.VTEPs(); !slices.Equal(vs[0].Sources, []string{"static"}) || !known(f, vtepA) {
		t.Fatalf("after etcd left: %+v", vs[0])
	}
	// A source that never named the VTEP takes nothing away.
	if f.RemoveFlood(1, vtepA, SourceEtcd) || !known(f, vtepA) {
		t.Fatal("RemoveFlood of a source that was not there removed the VTEP")
	}
	f.RemoveFlood(1, vtepA, SourceStatic)
	// Unknown, it leaves with what was learned from it; vtepB is
	// unknown but stays while an entry names it.
	f.Disallow(vtepB, SourceFlannel)
	vs = f.VTEPs()
	if len(vs) != 1 || vs[0].VTEP.Addr() != vtepB || len(vs[0].Sources) != 0 {
		t.Fatalf("VTEPs = %+v, want only %v, named by an entry, known for no reason", vs, vtepB)
	}
	f.Delete(1, macX, OriginRemote)
	if vs := f.VTEPs(); len(vs) != 0 {
		t.Fatalf("VTEPs = %+v after the last reference went", vs)
	}
}

// Lookup, Flood and KnownVTEP hand out the same record, whose counters
// the snapshot reports.
func TestFDBVTEPCounters(t *testing.T) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepA, SourceStatic)
	f.Set(1, macX, vtepA, OriginStatic)
	v, _ := f.Lookup(1, macX)
	k, _ := f.KnownVTEP(vtepA)
	if v != k || f.Flood(1)[0] != v {
		t.Fatal("Lookup, KnownVTEP and Flood return different records for one VTEP")
	}
	v.CountTx(3, 300)
	v.CountRx(2, 120)
	v.CountTx(1, 100)
	s := f.VTEPs()[0]
	if s.TxPackets != 4 || s.TxBytes != 400 || s.RxPackets != 2 || s.RxBytes != 120 {
		t.Fatalf("counters %+v, want tx 4/400, rx 2/120", s)
	}
}

func TestParseMAC(t *testing.T) {
	want := MAC{0x02, 0x42, 0x0a, 0, 0, 2}
	for _, s := range []string{"02:42:0a:00:00:02", "02-42-0A-00-00-02", "0242.0a00.0002"} {
		if m, err := ParseMAC(s); err != nil || m != want {
			t.Errorf("ParseMAC(%q) = %v, %v; want %v", s, m, err, want)
		}
	}
	for _, s := range []string{"", "02:42:0a:00:00", "02:42:0a:00:00:zz", "02:42:0a:ff:fe:00:00:02"} {
		if m, err := ParseMAC(s); err == nil {
			t.Errorf("ParseMAC(%q) = %v, want an error", s, m)
		}
	}
}
