package fdb

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func macN(i int) MAC { return MAC{0x02, 0, 0, 0, byte(i >> 8), byte(i)} }

func TestFDBLearnedEntriesCapped(t *testing.T) {
	f := New(4789, time.Minute)
	f.LimitLearned(3)
	f.AddFlood(1, vtepA, SourceStatic)
	f.AddFlood(1, vtepB, SourceStatic)
	f.AddFlood(2, vtepA, SourceStatic)
	for i := range 3 {
		if got := f.Learn(1, macN(i), vtepA); got != LearnNew {
			t.Fatalf("MAC %d of 3: Learn = %d, want LearnNew", i, got)
		}
	}
	if got := f.Learn(1, macN(3), vtepA); got != LearnFull {
		t.Fatalf("a fourth MAC: Learn = %d, want LearnFull", got)
	}
	if _, ok := f.Lookup(1, macN(3)); ok {
		t.Fatal("a MAC beyond the cap was learned")
	}
	if got := f.Learn(1, macN(0), vtepB); got != LearnNew {
		t.Fatalf("a learned MAC moving to another VTEP: Learn = %d, want LearnNew", got)
	}
	if got := f.Learn(2, macN(3), vtepA); got != LearnNew {
		t.Fatalf("another VNI: Learn = %d, want LearnNew (the cap is per VNI)", got)
	}
	// The control plane's and the operator's entries are never refused
	// and take no learned place.
	if !f.Set(1, macN(10), vtepB, OriginRemote) || !f.Set(1, macN(11), vtepB, OriginStatic) {
		t.Fatal("a full VNI refused an etcd or static entry")
	}
	// An entry the control plane takes over frees its learned place.
	f.Set(1, macN(1), vtepB, OriginRemote)
	if got := f.Learn(1, macN(4), vtepA); got != LearnNew {
		t.Fatalf("after a learned entry became etcd's: Learn = %d, want LearnNew", got)
	}
	f.Delete(1, macN(2), OriginLearned)
	if got := f.Learn(1, macN(5), vtepA); got != LearnNew {
		t.Fatalf("after a delete: Learn = %d, want LearnNew", got)
	}
	if c := f.CountEntries(1); c[OriginLearned] != 3 || c[OriginRemote] != 2 || c[OriginStatic] != 1 {
		t.Fatalf("counts %v, want 3 learned, 2 remote, 1 static", c)
	}
}

func TestFDBCapFreedByAgeing(t *testing.T) {
	f := New(4789, time.Millisecond)
	f.LimitLearned(1)
	f.AddFlood(1, vtepA, SourceStatic)
	f.Learn(1, macN(0), vtepA)
	deadline := time.Now().Add(10 * time.Second)
	for f.Expire() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the learned entry never aged out")
		}
		time.Sleep(time.Millisecond)
	}
	if got := f.Learn(1, macN(1), vtepA); got != LearnNew {
		t.Fatalf("after ageing: Learn = %d, want LearnNew", got)
	}
}

func TestFDBAllYieldsEntriesInOrder(t *testing.T) {
	f := New(4789, time.Minute)
	f.AddFlood(7, vtepA, SourceStatic)
	f.AddFlood(3, vtepA, SourceStatic)
	// More than one chunk, in two VNIs, of every origin.
	for i := range 3*entryChunk + 17 {
		switch vni := uint32(3 + 4*(i%2)); i % 3 {
		case 0:
			f.Learn(vni, macN(i), vtepA)
		case 1:
			f.Set(vni, macN(i), vtepB, OriginRemote)
		default:
			f.Set(vni, macN(i), vtepB, OriginStatic)
		}
	}
	var got []Entry
	for e := range f.All() {
		got = append(got, e)
	}
	want := f.Entries()
	if len(got) != len(want) || len(got) != 3*entryChunk+17 {
		t.Fatalf("All yielded %d entries, Entries has %d, want %d", len(got), len(want), 3*entryChunk+17)
	}
	same := func(a, b Entry) bool {
		return a.VNI == b.VNI && a.MAC == b.MAC && a.VTEP == b.VTEP && a.Origin == b.Origin
	}
	if !slices.EqualFunc(got, want, same) {
		t.Fatal("All and Entries differ")
	}
	n := 0
	for range f.All() {
		if n++; n == 10 {
			break
		}
	}
}

func TestLocalTableLimits(t *testing.T) {
	l := NewLocalTable(LocalLimits{Max: 3})
	ip := netip.MustParseAddr("10.0.0.1")
	for i := range 3 {
		if got := l.Observe(macN(i), netip.Addr{}); got != ObserveKept {
			t.Fatalf("MAC %d of 3: %d", i, got)
		}
	}
	if got := l.Observe(macN(3), netip.Addr{}); got != ObserveFull {
		t.Fatalf("a fourth MAC: Observe = %d, want ObserveFull", got)
	}
	if got := l.Observe(macN(0), ip); got != ObserveKept {
		t.Fatalf("a new address of a held MAC: Observe = %d, want ObserveKept", got)
	}
	l.Forget(macN(1))
	if got := l.Observe(macN(3), netip.Addr{}); got != ObserveKept {
		t.Fatalf("after Forget: Observe = %d, want ObserveKept", got)
	}
	if n := len(l.Snapshot()); n != 3 {
		t.Fatalf("%d MACs held, want 3", n)
	}
}
