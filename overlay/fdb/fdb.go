package fdb

import (
	"cmp"
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MAC is an Ethernet address as a comparable value, usable as a map key
// without allocation (net.HardwareAddr is a slice and is not).
type MAC [6]byte

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
	vtep   netip.AddrPort
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
	flood map[uint32][]netip.AddrPort
	// floodRefs counts the AddFlood calls per membership: a VTEP that is
	// both a --peer and registered in etcd stays when one of them goes.
	floodRefs map[floodKey]int
	// vteps counts, per VTEP address, the flood lists it is a member of:
	// exactly the addresses we accept VXLAN packets from. An entry that
	// names a VTEP does not make it known: only membership does, which is
	// what registration in etcd and --peer say.
	vteps map[netip.Addr]int
}

// New returns an empty table. port is the UDP destination port of every
// VTEP; learned entries expire after ageing (0 disables ageing).
func New(port uint16, ageing time.Duration) *Table {
	return &Table{
		port:      port,
		ageing:    ageing,
		epoch:     time.Now(),
		entries:   make(map[fdbKey]*fdbEntry),
		flood:     make(map[uint32][]netip.AddrPort),
		floodRefs: make(map[floodKey]int),
		vteps:     make(map[netip.Addr]int),
	}
}

func (f *Table) now() int64 { return int64(time.Since(f.epoch)) }

func (f *Table) expired(e *fdbEntry, now int64) bool {
	return e.origin == OriginLearned && f.ageing > 0 && now-e.seen.Load() > int64(f.ageing)
}

// Lookup returns the VTEP that owns mac in vni.
func (f *Table) Lookup(vni uint32, mac MAC) (netip.AddrPort, bool) {
	f.mu.RLock()
	e, ok := f.entries[fdbKey{vni, mac}]
	f.mu.RUnlock()
	if !ok || f.expired(e, f.now()) {
		return netip.AddrPort{}, false
	}
	return e.vtep, true
}

// Flood returns the VTEPs that receive vni's broadcast, multicast and
// unknown unicast. The caller must not modify the slice.
func (f *Table) Flood(vni uint32) []netip.AddrPort {
	f.mu.RLock()
	l := f.flood[vni]
	f.mu.RUnlock()
	return l
}

// IsKnownVTEP reports whether addr is a VTEP we accept packets from.
func (f *Table) IsKnownVTEP(addr netip.Addr) bool {
	f.mu.RLock()
	_, ok := f.vteps[addr.Unmap()]
	f.mu.RUnlock()
	return ok
}

// Learn records that mac in vni was seen behind the VTEP at addr, as the
// kernel learns from the outer source address. It does nothing when addr is
// not a known VTEP, or when an entry of a higher origin owns the MAC. It
// reports whether the FDB changed (a new or moved entry).
func (f *Table) Learn(vni uint32, mac MAC, addr netip.Addr) bool {
	addr = addr.Unmap()
	key := fdbKey{vni, mac}
	now := f.now()
	f.mu.RLock()
	e, ok := f.entries[key]
	_, known := f.vteps[addr]
	f.mu.RUnlock()
	if !known {
		return false
	}
	if ok && (e.origin != OriginLearned || e.vtep.Addr() == addr) {
		if e.origin == OriginLearned && now-e.seen.Load() > int64(time.Second) {
			// Refresh at most once a second: a store per packet would
			// bounce the cache line between the forwarding goroutines.
			e.seen.Store(now)
		}
		return false
	}
	n := &fdbEntry{vtep: netip.AddrPortFrom(addr, f.port), origin: OriginLearned}
	n.seen.Store(now)
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur, ok := f.entries[key]; ok && cur.origin != OriginLearned {
		return false // lost a race with the control plane
	}
	f.entries[key] = n
	return true
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
		if cur.origin > o || (cur.origin == o && cur.vtep.Addr() == vtep) {
			return false
		}
	}
	e := &fdbEntry{vtep: netip.AddrPortFrom(vtep, f.port), origin: o}
	e.seen.Store(f.now())
	f.entries[key] = e
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
	delete(f.entries, key)
	return true
}

func (f *Table) unrefLocked(a netip.Addr) {
	if f.vteps[a] <= 1 {
		delete(f.vteps, a)
		f.purgeLearnedLocked(a)
		return
	}
	f.vteps[a]--
}

// purgeLearnedLocked forgets what was learned from a VTEP that is no longer
// known, so that traffic is not sent to a host that has left.
func (f *Table) purgeLearnedLocked(a netip.Addr) {
	for k, e := range f.entries {
		if e.origin == OriginLearned && e.vtep.Addr() == a {
			delete(f.entries, k)
		}
	}
}

// AddFlood adds vtep to vni's flood list, which also makes it a known VTEP,
// and reports whether it was not a member before. Memberships are counted:
// each AddFlood is undone by one RemoveFlood.
func (f *Table) AddFlood(vni uint32, vtep netip.Addr) bool {
	vtep = vtep.Unmap()
	f.mu.Lock()
	defer f.mu.Unlock()
	key := floodKey{vni, vtep}
	f.floodRefs[key]++
	if f.floodRefs[key] > 1 {
		return false
	}
	cur := f.flood[vni]
	next := make([]netip.AddrPort, len(cur), len(cur)+1)
	copy(next, cur)
	f.flood[vni] = append(next, netip.AddrPortFrom(vtep, f.port))
	f.vteps[vtep]++
	return true
}

// RemoveFlood undoes one AddFlood and reports whether vtep left vni's
// flood list.
func (f *Table) RemoveFlood(vni uint32, vtep netip.Addr) bool {
	vtep = vtep.Unmap()
	f.mu.Lock()
	defer f.mu.Unlock()
	key := floodKey{vni, vtep}
	if f.floodRefs[key] == 0 {
		return false
	}
	if f.floodRefs[key]--; f.floodRefs[key] > 0 {
		return false
	}
	delete(f.floodRefs, key)
	cur := f.flood[vni]
	i := slices.Index(cur, netip.AddrPortFrom(vtep, f.port))
	if i < 0 {
		return false
	}
	next := slices.Delete(slices.Clone(cur), i, i+1)
	if len(next) == 0 {
		delete(f.flood, vni)
	} else {
		f.flood[vni] = next
	}
	f.unrefLocked(vtep)
	return true
}

// Allow makes vtep a known VTEP without adding it to any flood list: the
// flannel mode accepts packets from every lease holder but floods nothing.
// Each Allow is undone by one Disallow.
func (f *Table) Allow(vtep netip.Addr) {
	f.mu.Lock()
	f.vteps[vtep.Unmap()]++
	f.mu.Unlock()
}

// Disallow undoes one Allow. When no flood list or Allow names vtep any
// more, it is no longer accepted and what was learned from it is dropped.
func (f *Table) Disallow(vtep netip.Addr) {
	f.mu.Lock()
	if _, ok := f.vteps[vtep.Unmap()]; ok {
		f.unrefLocked(vtep.Unmap())
	}
	f.mu.Unlock()
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
			delete(f.entries, k)
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

// Entries returns a snapshot of the live entries, sorted by VNI and MAC.
func (f *Table) Entries() []Entry {
	now := f.now()
	f.mu.RLock()
	out := make([]Entry, 0, len(f.entries))
	for k, e := range f.entries {
		if f.expired(e, now) {
			continue
		}
		fe := Entry{VNI: k.vni, MAC: k.mac.String(), VTEP: e.vtep, Origin: e.origin.String()}
		if e.origin == OriginLearned {
			fe.Age = time.Duration(now - e.seen.Load())
		}
		out = append(out, fe)
	}
	f.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int {
		if c := cmp.Compare(a.VNI, b.VNI); c != 0 {
			return c
		}
		return cmp.Compare(a.MAC, b.MAC)
	})
	return out
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
	return len(f.vteps)
}

// Floods returns a snapshot of the flood lists, sorted by VNI.
func (f *Table) Floods() []FloodList {
	f.mu.RLock()
	out := make([]FloodList, 0, len(f.flood))
	for vni, l := range f.flood {
		out = append(out, FloodList{VNI: vni, VTEPs: slices.Clone(l)})
	}
	f.mu.RUnlock()
	slices.SortFunc(out, func(a, b FloodList) int { return cmp.Compare(a.VNI, b.VNI) })
	return out
}
