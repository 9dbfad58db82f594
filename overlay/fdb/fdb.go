package fdb

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MAC is an Ethernet address as a comparable value, usable as a map key
// without allocation (net.HardwareAddr is a slice and is not).
type MAC [6]byte

// ParseMAC parses an Ethernet address in any of the forms net.ParseMAC
// takes (02:42:0a:00:00:02, 02-42-0a-00-00-02, 0242.0a00.0002); a longer
// hardware address (EUI-64, InfiniBand) is refused.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != len(MAC{}) {
		return MAC{}, fmt.Errorf("%q is not an Ethernet address such as 02:42:0a:00:00:02", s)
	}
	return MAC(hw), nil
}

// IsMulticast reports whether the group bit is set; broadcast is multicast.
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

func (m MAC) String() string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 17)
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[x>>4], hex[x&0xf])
	}
	return string(b)
}

// Origin says where an FDB entry came from. An entry may only be replaced by
// one of the same or a higher origin: what an operator or the control plane
// said beats what the data plane guessed.
type Origin uint8

const (
	// OriginLearned entries come from the outer source address of received
	// packets, as the kernel's vxlan driver learns them, and age out.
	OriginLearned Origin = iota
	// OriginRemote entries come from the control plane (etcd).
	OriginRemote
	// OriginStatic entries were configured by the operator.
	OriginStatic

	// NumOrigins is the number of origins, for arrays indexed by Origin.
	NumOrigins = int(OriginStatic) + 1
)

func (o Origin) String() string {
	switch o {
	case OriginLearned:
		return "learned"
	case OriginRemote:
		return "remote"
	case OriginStatic:
		return "static"
	}
	return "unknown"
}

type fdbKey struct {
	vni uint32
	mac MAC
}

type floodKey struct {
	vni  uint32
	vtep netip.Addr
}

type fdbEntry struct {
	vtep   *VTEP
	origin Origin
	// seen is when a learned entry was last confirmed, in nanoseconds
	// since the table's epoch (monotonic clock).
	seen atomic.Int64
}

// Table is the forwarding database (FDB): which VTEP owns a (VNI, MAC), which VTEPs
// get the VNI's broadcast, multicast and unknown unicast (the flood list,
// for head-end replication), and which VTEPs we accept packets from.
//
// Lookups take a read lock and allocate nothing; they run on the data path
// in parallel with each other. Changes take the write lock; learning only
// takes it when an entry is new or has moved.
type Table struct {
	port   uint16
	ageing time.Duration
	epoch  time.Time

	mu      sync.RWMutex
	entries map[fdbKey]*fdbEntry
	// flood lists are replaced, never modified in place, so a slice handed
	// out by Flood stays valid without the lock.
	flood map[uint32][]*VTEP
	// group has, for each VNI with a multicast group, the group as a
	// list of one: Flood hands it out instead of the flood list.
	group map[uint32][]*VTEP
	// floodRefs counts the AddFlood calls per membership and source: a
	// VTEP that is both a --peer and registered in etcd stays when one of
	// them goes.
	floodRefs map[floodKey][numSources]int
	// vteps has the record of every VTEP that a flood list, an Allow or
	// an entry names. Those that a flood list or an Allow names (VTEP.refs)
	// are known: exactly the addresses we accept VXLAN packets from. An
	// entry that names a VTEP does not make it known: only membership
	// does, which is what registration in etcd and --peer say.
	vteps map[netip.Addr]*VTEP
	// learned counts the learned entries per VNI, live or not yet aged
	// out; maxLearned caps it (0: no cap).
	learned    map[uint32]int
	maxLearned int
}

// New returns an empty table. port is the UDP destination port of every
// VTEP; learned entries expire after ageing (0 disables ageing).
func New(port uint16, ageing time.Duration) *Table {
	return &Table{
		port:      port,
		ageing:    ageing,
		epoch:     time.Now(),
		entries:   make(map[fdbKey]*fdbEntry),
		flood:     make(map[uint32][]*VTEP),
		group:     make(map[uint32][]*VTEP),
		floodRefs: make(map[floodKey][numSources]int),
		vteps:     make(map[netip.Addr]*VTEP),
		learned:   make(map[uint32]int),
	}
}

// LimitLearned caps the learned entries of each VNI at n (0: no cap), as
// the kernel's vxlan maxaddress does: a sender of frames from ever new
// source MACs cannot grow the table without bound. Entries of the control
// plane and static ones do not count and are never refused. Call it
// before the table is used.
func (f *Table) LimitLearned(n int) {
	f.mu.Lock()
	f.maxLearned = n
	f.mu.Unlock()
}

// fullLocked reports whether vni has as many learned entries as it may.
// An entry that aged out but was not yet removed (Expire) still counts.
func (f *Table) fullLocked(vni uint32) bool {
	return f.maxLearned > 0 && f.learned[vni] >= f.maxLearned
}

func (f *Table) now() int64 { return int64(time.Since(f.epoch)) }

func (f *Table) expired(e *fdbEntry, now int64) bool {
	return e.origin == OriginLearned && f.ageing > 0 && now-e.seen.Load() > int64(f.ageing)
}

// Lookup returns the VTEP that owns mac in vni.
func (f *Table) Lookup(vni uint32, mac MAC) (*VTEP, bool) {
	f.mu.RLock()
	e, ok := f.entries[fdbKey{vni, mac}]
	f.mu.RUnlock()
	if !ok || f.expired(e, f.now()) {
		return nil, false
	}
	return e.vtep, true
}

// Flood returns the VTEPs that receive vni's broadcast, multicast and
// unknown unicast: its multicast group if it has one, else its flood
// list. The caller must not modify the slice.
func (f *Table) Flood(vni uint32) []*VTEP {
	f.mu.RLock()
	l := f.flood[vni]
	if g := f.group[vni]; g != nil {
		l = g
	}
	f.mu.RUnlock()
	return l
}

// SetGroup sends vni's broadcast, multicast and unknown unicast to the
// multicast group at addr, one datagram each, instead of a copy to each
// member of its flood list, as the kernel's VXLAN does with a group. The
// flood list's members stay known VTEPs: their packets are accepted and
// their entries used. The group is not a VTEP that sends: it is not
// known, and no entry names it.
func (f *Table) SetGroup(vni uint32, addr netip.Addr) {
	f.mu.Lock()
	f.group[vni] = []*VTEP{{addr: netip.AddrPortFrom(addr.Unmap(), f.port)}}
	f.mu.Unlock()
}

// KnownVTEP returns the VTEP at addr if it is one we accept packets from.
func (f *Table) KnownVTEP(addr netip.Addr) (*VTEP, bool) {
	f.mu.RLock()
	v := f.vteps[addr.Unmap()]
	ok := v != nil && v.known()
	f.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return v, true
}

// recordLocked returns the record of the VTEP at addr, creating it.
func (f *Table) recordLocked(addr netip.Addr) *VTEP {
	v := f.vteps[addr]
	if v == nil {
		v = &VTEP{addr: netip.AddrPortFrom(addr, f.port)}
		f.vteps[addr] = v
	}
	return v
}

// releaseLocked drops v from the table once nothing names it, and forgets
// what was learned from it once it is no longer known, so that traffic is
// not sent to a host that has left.
func (f *Table) releaseLocked(v *VTEP) {
	if v.known() {
		return
	}
	for k, e := range f.entries {
		if e.origin == OriginLearned && e.vtep == v {
			f.deleteEntryLocked(k)
		}
	}
	if v.entries == 0 && f.vteps[v.addr.Addr()] == v {
		delete(f.vteps, v.addr.Addr())
	}
}

// putEntryLocked installs e under key, keeping the records' entry counts.
func (f *Table) putEntryLocked(key fdbKey, e *fdbEntry) {
	old := f.entries[key]
	f.entries[key] = e
	e.vtep.entries++
	f.countLearnedLocked(key.vni, e, 1)
	if old != nil {
		old.vtep.entries--
		f.countLearnedLocked(key.vni, old, -1)
		f.releaseLocked(old.vtep)
	}
}

// countLearnedLocked adds d to vni's count of learned entries if e is
// one.
func (f *Table) countLearnedLocked(vni uint32, e *fdbEntry, d int) {
	if e.origin != OriginLearned {
		return
	}
	if f.learned[vni] += d; f.learned[vni] == 0 {
		delete(f.learned, vni)
	}
}

// deleteEntryLocked removes the entry under key, if any.
func (f *Table) deleteEntryLocked(key fdbKey) {
	old, ok := f.entries[key]
	if !ok {
		return
	}
	delete(f.entries, key)
	f.countLearnedLocked(key.vni, old, -1)
	if old.vtep.entries--; old.vtep.entries == 0 && !old.vtep.known() {
		delete(f.vteps, old.vtep.addr.Addr())
	}
}

// LearnResult says what Learn did.
type LearnResult uint8

const (
	// LearnKept: the FDB is unchanged (the entry was known and
	// refreshed, the VTEP is not known, or a higher origin owns the MAC).
	LearnKept LearnResult = iota
	// LearnNew: a new entry was added, or a learned one moved.
	LearnNew
	// LearnFull: the MAC is new and its VNI has as many learned entries
	// as LimitLearned allows; it was not learned.
	LearnFull
)

// Learn records that mac in vni was seen behind the VTEP at addr, as the
// kernel learns from the outer source address, and that the VTEP was seen
// now. It does nothing when addr is not a known VTEP, or when an entry of
// a higher origin owns the MAC. A new MAC is refused when the VNI is full
// (LimitLearned), without taking the write lock: a flood of new sources
// does not stall the other forwarding threads. A learned MAC that moves
// to another VTEP is never refused.
func (f *Table) Learn(vni uint32, mac MAC, addr netip.Addr) LearnResult {
	addr = addr.Unmap()
	key := fdbKey{vni, mac}
	now := f.now()
	f.mu.RLock()
	e, ok := f.entries[key]
	v := f.vteps[addr]
	known := v != nil && v.known()
	full := !ok && f.fullLocked(vni)
	f.mu.RUnlock()
	if !known {
		return LearnKept
	}
	// Refresh at most once a second: a store per packet would bounce
	// the cache line between the forwarding goroutines.
	if s := v.seen.Load(); s == 0 || now-s > int64(time.Second) {
		v.seen.Store(now)
	}
	if full {
		return LearnFull
	}
	if ok && (e.origin != OriginLearned || e.vtep == v) {
		if e.origin == OriginLearned && now-e.seen.Load() > int64(time.Second) {
			e.seen.Store(now)
		}
		return LearnKept
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.entries[key]
	if ok && cur.origin != OriginLearned {
		return LearnKept // lost a race with the control plane
	}
	if v = f.vteps[addr]; v == nil || !v.known() {
		return LearnKept // lost a race with its removal
	}
	if !ok && f.fullLocked(vni) {
		return LearnFull // lost a race with another new MAC
	}
	n := &fdbEntry{vtep: v, origin: OriginLearned}
	n.seen.Store(now)
	f.putEntryLocked(key, n)
	return LearnNew
}

// Set installs or replaces the entry for (vni, mac) with origin o, unless an
// entry of a higher origin owns it, and reports whether the FDB changed.
// Learned entries are added through Learn.
func (f *Table) Set(vni uint32, mac MAC, vtep netip.Addr, o Origin) bool {
	vtep = vtep.Unmap()
	f.mu.Lock()
	defer f.mu.Unlock()
	key := fdbKey{vni, mac}
	if cur, ok := f.entries[key]; ok {
		if cur.origin > o || (cur.origin == o && cur.vtep.addr.Addr() == vtep) {
			return false
		}
	}
	e := &fdbEntry{vtep: f.recordLocked(vtep), origin: o}
	e.seen.Store(f.now())
	f.putEntryLocked(key, e)
	return true
}

// Delete removes the entry for (vni, mac) if its origin is o.
func (f *Table) Delete(vni uint32, mac MAC, o Origin) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := fdbKey{vni, mac}
	cur, ok := f.entries[key]
	if !ok || cur.origin != o {
		return false
	}
	f.deleteEntryLocked(key)
	return true
}

// AddFlood adds vtep to vni's flood list, which also makes it a known VTEP
// for the reason src, and reports whether it was not a member before.
// Memberships are counted: each AddFlood is undone by one RemoveFlood of
// the same source.
func (f *Table) AddFlood(vni uint32, vtep netip.Addr, src Source) bool {
	vtep = vtep.Unmap()
	f.mu.Lock()
	defer f.mu.Unlock()
	key := floodKey{vni, vtep}
	refs := f.floodRefs[key]
	member := refs != [numSources]int{}
	refs[src]++
	f.floodRefs[key] = refs
	v := f.recordLocked(vtep)
	v.refs[src]++
	if member {
		return false
	}
	cur := f.flood[vni]
	next := make([]*VTEP, len(cur), len(cur)+1)
	copy(next, cur)
	f.flood[vni] = append(next, v)
	return true
}

// RemoveFlood undoes one AddFlood of source src and reports whether vtep
// left vni's flood list.
func (f *Table) RemoveFlood(vni uint32, vtep netip.Addr, src Source) bool {
	vtep = vtep.Unmap()
	f.mu.Lock()
	defer f.mu.Unlock()
	key := floodKey{vni, vtep}
	refs := f.floodRefs[key]
	if refs[src] == 0 {
		return false
	}
	refs[src]--
	v := f.vteps[vtep]
	v.refs[src]--
	defer f.releaseLocked(v)
	if refs != [numSources]int{} {
		f.floodRefs[key] = refs
		return false
	}
	delete(f.floodRefs, key)
	cur := f.flood[vni]
	i := slices.Index(cur, v)
	next := slices.Delete(slices.Clone(cur), i, i+1)
	if len(next) == 0 {
		delete(f.flood, vni)
	} else {
		f.flood[vni] = next
	}
	return true
}

// Allow makes vtep a known VTEP for the reason src without adding it to
// any flood list, and returns its record: the flannel mode accepts
// packets from every lease holder but floods nothing. Each Allow is
// undone by one Disallow.
func (f *Table) Allow(vtep netip.Addr, src Source) *VTEP {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.recordLocked(vtep.Unmap())
	v.refs[src]++
	return v
}

// Disallow undoes one Allow of source src. When no flood list or Allow
// names vtep any more, it is no longer accepted and what was learned from
// it is dropped.
func (f *Table) Disallow(vtep netip.Addr, src Source) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.vteps[vtep.Unmap()]
	if v == nil || v.refs[src] == 0 {
		return
	}
	v.refs[src]--
	f.releaseLocked(v)
}

// Expire removes learned entries not confirmed within the ageing time and
// returns how many it removed.
func (f *Table) Expire() int {
	if f.ageing <= 0 {
		return 0
	}
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k, e := range f.entries {
		if f.expired(e, now) {
			f.deleteEntryLocked(k)
			n++
		}
	}
	return n
}

// RunAgeing expires learned entries, a tenth of the ageing time apart,
// until ctx is done. It returns at once when ageing is off.
func (f *Table) RunAgeing(ctx context.Context, log *slog.Logger) {
	period := f.ageing / 10
	if period <= 0 {
		return
	}
	t := time.NewTicker(max(period, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := f.Expire(); n > 0 {
				log.Debug("fdb entries aged out", "count", n)
			}
		}
	}
}

// Entry is one entry as reported by Entries.
type Entry struct {
	VNI    uint32         `json:"vni"`
	MAC    string         `json:"mac"`
	VTEP   netip.AddrPort `json:"vtep"`
	Origin string         `json:"origin"`
	// Age is how long ago a learned entry was last confirmed.
	Age time.Duration `json:"age_ns,omitempty"`
}

// FloodList is one VNI's flood list as reported by Floods.
type FloodList struct {
	VNI   uint32           `json:"vni"`
	VTEPs []netip.AddrPort `json:"vteps"`
}

func (f *Table) entryLocked(k fdbKey, e *fdbEntry, now int64) Entry {
	fe := Entry{VNI: k.vni, MAC: k.mac.String(), VTEP: e.vtep.addr, Origin: e.origin.String()}
	if e.origin == OriginLearned {
		fe.Age = time.Duration(now - e.seen.Load())
	}
	return fe
}

// Entry returns the live entry for (vni, mac).
func (f *Table) Entry(vni uint32, mac MAC) (Entry, bool) {
	now := f.now()
	f.mu.RLock()
	defer f.mu.RUnlock()
	k := fdbKey{vni, mac}
	e, ok := f.entries[k]
	if !ok || f.expired(e, now) {
		return Entry{}, false
	}
	return f.entryLocked(k, e, now), true
}

// Entries returns a snapshot of the live entries, sorted by VNI and MAC.
func (f *Table) Entries() []Entry {
	now := f.now()
	f.mu.RLock()
	out := make([]Entry, 0, len(f.entries))
	for k, e := range f.entries {
		if !f.expired(e, now) {
			out = append(out, f.entryLocked(k, e, now))
		}
	}
	f.mu.RUnlock()
	slices.SortFunc(out, compareEntries)
	return out
}

// entryChunk is how many entries All reads under one hold of the lock.
const entryChunk = 256

// All yields the live entries, sorted by VNI and MAC, without copying the
// table: it sorts the keys (12 bytes an entry), then reads the entries a
// chunk at a time, taking the read lock per chunk and never while the
// caller has an entry, so that a slow reader (a control socket client)
// never holds up learning. An entry removed after the keys were taken is
// skipped.
func (f *Table) All() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		f.mu.RLock()
		keys := make([]fdbKey, 0, len(f.entries))
		for k := range f.entries {
			keys = append(keys, k)
		}
		f.mu.RUnlock()
		slices.SortFunc(keys, func(a, b fdbKey) int {
			if c := cmp.Compare(a.vni, b.vni); c != 0 {
				return c
			}
			return bytes.Compare(a.mac[:], b.mac[:])
		})
		var chunk [entryChunk]Entry
		for len(keys) > 0 {
			n := 0
			now := f.now()
			f.mu.RLock()
			for _, k := range keys[:min(len(keys), entryChunk)] {
				if e, ok := f.entries[k]; ok && !f.expired(e, now) {
					chunk[n] = f.entryLocked(k, e, now)
					n++
				}
			}
			f.mu.RUnlock()
			keys = keys[min(len(keys), entryChunk):]
			for _, e := range chunk[:n] {
				if !yield(e) {
					return
				}
			}
		}
	}
}

// CountEntries returns how many live entries vni has, by origin
// (counts[OriginLearned] and so on). It counts without copying, for a
// reader that wants the sizes and not the entries.
func (f *Table) CountEntries(vni uint32) (counts [NumOrigins]int) {
	now := f.now()
	f.mu.RLock()
	defer f.mu.RUnlock()
	for k, e := range f.entries {
		if k.vni == vni && !f.expired(e, now) {
			counts[e.origin]++
		}
	}
	return counts
}

// KnownVTEPs returns how many VTEPs packets are accepted from.
func (f *Table) KnownVTEPs() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := 0
	for _, v := range f.vteps {
		if v.known() {
			n++
		}
	}
	return n
}

func compareEntries(a, b Entry) int {
	if c := cmp.Compare(a.VNI, b.VNI); c != 0 {
		return c
	}
	return cmp.Compare(a.MAC, b.MAC)
}

// Floods returns a snapshot of the flood lists, sorted by VNI.
func (f *Table) Floods() []FloodList {
	f.mu.RLock()
	out := make([]FloodList, 0, len(f.flood))
	for vni, l := range f.flood {
		fl := FloodList{VNI: vni, VTEPs: make([]netip.AddrPort, len(l))}
		for i, v := range l {
			fl.VTEPs[i] = v.addr
		}
		out = append(out, fl)
	}
	f.mu.RUnlock()
	slices.SortFunc(out, func(a, b FloodList) int { return cmp.Compare(a.VNI, b.VNI) })
	return out
}

// VTEPState is one VTEP as reported by VTEPs.
type VTEPState struct {
	VTEP netip.AddrPort `json:"vtep"`
	// Sources says why the VTEP is known (Source), each once. Empty: only
	// entries name it, and its packets are not accepted.
	Sources []string `json:"sources"`
	// Flood lists the VNIs whose flood list has the VTEP.
	Flood []uint32 `json:"flood_vnis"`
	// MACs are the live entries that name the VTEP, sorted.
	MACs      []Entry `json:"macs"`
	TxPackets uint64  `json:"tx_packets"`
	TxBytes   uint64  `json:"tx_bytes"`
	RxPackets uint64  `json:"rx_packets"`
	RxBytes   uint64  `json:"rx_bytes"`
	// Seen says whether a frame from the VTEP was ever accepted;
	// SinceSeen is how long ago the last was (to a second).
	Seen      bool          `json:"seen"`
	SinceSeen time.Duration `json:"since_seen_ns,omitempty"`
}

// VTEPs returns a snapshot of every VTEP the table names, sorted by
// address.
func (f *Table) VTEPs() []VTEPState {
	now := f.now()
	f.mu.RLock()
	out := make([]VTEPState, 0, len(f.vteps))
	index := make(map[*VTEP]int, len(f.vteps))
	for _, v := range f.vteps {
		st := VTEPState{VTEP: v.addr, Sources: []string{}, Flood: []uint32{}, MACs: []Entry{},
			TxPackets: v.txPackets.Load(), TxBytes: v.txBytes.Load(),
			RxPackets: v.rxPackets.Load(), RxBytes: v.rxBytes.Load()}
		for s, n := range v.refs {
			if n > 0 {
				st.Sources = append(st.Sources, Source(s).String())
			}
		}
		if seen := v.seen.Load(); seen != 0 {
			st.Seen, st.SinceSeen = true, time.Duration(now-seen)
		}
		index[v] = len(out)
		out = append(out, st)
	}
	for k := range f.floodRefs {
		if i, ok := index[f.vteps[k.vtep]]; ok {
			out[i].Flood = append(out[i].Flood, k.vni)
		}
	}
	for k, e := range f.entries {
		if i, ok := index[e.vtep]; ok && !f.expired(e, now) {
			out[i].MACs = append(out[i].MACs, f.entryLocked(k, e, now))
		}
	}
	f.mu.RUnlock()
	for i := range out {
		slices.Sort(out[i].Flood)
		slices.SortFunc(out[i].MACs, compareEntries)
	}
	slices.SortFunc(out, func(a, b VTEPState) int { return a.VTEP.Compare(b.VTEP) })
	return out
}
