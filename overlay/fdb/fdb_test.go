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
	if f.Learn(1, macX, vtepA) {
		t.Fatal("learned from a VTEP that is not in any flood list")
	}
	if _, ok := f.Lookup(1, macX); ok {
		t.Fatal("lookup found an entry learned from an unknown VTEP")
	}
	f.AddFlood(1, vtepA)
	if !f.Learn(1, macX, vtepA) {
		t.Fatal("did not learn from a known VTEP")
	}
	got, ok := f.Lookup(1, macX)
	if want := netip.AddrPortFrom(vtepA, 4789); !ok || got != want {
		t.Fatalf("Lookup = %v, %v; want %v", got, ok, want)
	}
	if _, ok := f.Lookup(2, macX); ok {
		t.Fatal("entry leaked into another VNI")
	}
	if f.Learn(1, macX, vtepA) {
		t.Fatal("relearning the same place reported a change")
	}
}

func TestFDBLearnedEntryMoves(t *testing.T) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepA)
	f.AddFlood(1, vtepB)
	f.Learn(1, macX, vtepA)
	if !f.Learn(1, macX, netip.MustParseAddr("::ffff:192.0.2.2")) {
		t.Fatal("a MAC seen behind another VTEP did not move")
	}
	if got, _ := f.Lookup(1, macX); got.Addr() != vtepB {
		t.Fatalf("Lookup after move = %v, want %v", got, vtepB)
	}
}

func TestFDBStaticBeatsLearned(t *testing.T) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepB)
	f.Set(1, macX, vtepA, OriginStatic)
	if f.Learn(1, macX, vtepB) {
		t.Fatal("learning replaced a static entry")
	}
	if got, _ := f.Lookup(1, macX); got.Addr() != vtepA {
		t.Fatalf("Lookup = %v, want the static %v", got, vtepA)
	}
	if f.Set(1, macX, vtepB, OriginRemote) {
		t.Fatal("a remote entry replaced a static one")
	}
	if f.IsKnownVTEP(vtepA) {
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
	f.AddFlood(1, vtepA)
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
	f.AddFlood(7, vtepA)
	f.AddFlood(7, vtepB)
	if f.AddFlood(7, vtepA) {
		t.Fatal("adding a member twice reported a change")
	}
	if f.RemoveFlood(7, vtepA) || len(f.Flood(7)) != 2 {
		t.Fatal("one RemoveFlood undid both AddFloods of a member")
	}
	held := f.Flood(7)
	want := []netip.AddrPort{netip.AddrPortFrom(vtepA, 8472), netip.AddrPortFrom(vtepB, 8472)}
	if !slices.Equal(held, want) {
		t.Fatalf("Flood = %v, want %v", held, want)
	}
	f.Learn(7, macX, vtepA)
	f.RemoveFlood(7, vtepA)
	if !slices.Equal(held, want) {
		t.Fatal("RemoveFlood modified a slice handed out earlier")
	}
	if got := f.Flood(7); !slices.Equal(got, want[1:]) {
		t.Fatalf("Flood after remove = %v, want %v", got, want[1:])
	}
	if f.IsKnownVTEP(vtepA) {
		t.Fatal("removed VTEP is still accepted")
	}
	if _, ok := f.Lookup(7, macX); ok {
		t.Fatal("entries learned from a removed VTEP survive it")
	}
	if len(f.Flood(8)) != 0 {
		t.Fatal("flood list leaked into another VNI")
	}
}

func TestFDBNoAllocs(t *testing.T) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepA)
	f.Learn(1, macX, vtepA)
	for name, fn := range map[string]func(){
		"Lookup":      func() { f.Lookup(1, macX) },
		"LookupMiss":  func() { f.Lookup(1, MAC{2}) },
		"Flood":       func() { f.Flood(1) },
		"IsKnownVTEP": func() { f.IsKnownVTEP(vtepA) },
		"LearnKnown":  func() { f.Learn(1, macX, vtepA) },
	} {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
}

func BenchmarkFDBLookup(b *testing.B) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepA)
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
	f.Allow(vtepA)
	if !f.IsKnownVTEP(vtepA) || len(f.Flood(1)) != 0 {
		t.Fatalf("Allow: known %v, flood %v; want known and no flood list", f.IsKnownVTEP(vtepA), f.Flood(1))
	}
	f.AddFlood(1, vtepA)
	f.Disallow(vtepA)
	if !f.IsKnownVTEP(vtepA) {
		t.Fatal("Disallow removed a VTEP that a flood list still names")
	}
	f.RemoveFlood(1, vtepA)
	if f.IsKnownVTEP(vtepA) {
		t.Fatal("VTEP still known after its last reference went")
	}
	f.Disallow(vtepA) // unbalanced: must not go negative or panic
	f.Allow(vtepA)
	if !f.IsKnownVTEP(vtepA) {
		t.Fatal("Allow after an unbalanced Disallow did not take")
	}
}

// The counts agree with Entries and the flood lists: by VNI and origin,
// without aged entries, and the known VTEPs include those only allowed.
func TestFDBCounts(t *testing.T) {
	f := New(4789, time.Minute)
	f.AddFlood(1, vtepA)
	f.AddFlood(2, vtepA)
	f.Allow(vtepB)
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
	f.Disallow(vtepB)
	if n := f.KnownVTEPs(); n != 1 {
		t.Errorf("KnownVTEPs after Disallow = %d, want 1", n)
	}
}
