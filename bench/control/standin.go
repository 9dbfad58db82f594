package control

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/overlay/fdb"
)

// The simulated hosts are VTEPs in 198.18.0.0/15, the range set aside for
// benchmarks: these addresses only name VTEPs in etcd, nothing is sent to
// them. MACs are 02:00 followed by a 32-bit event slot, so that a stand-in
// finds the slot of a MAC it is told about without a lookup.
var (
	vtepBase   = netip.MustParseAddr("198.18.0.0")
	markerVTEP = netip.MustParseAddr("198.19.255.254")
)

func hostAddr(i int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], addrUint(vtepBase)+uint32(i)+1)
	return netip.AddrFrom4(b)
}

func hostIndex(a netip.Addr) (int, bool) {
	if !a.Is4() {
		return 0, false
	}
	i := int(addrUint(a)) - int(addrUint(vtepBase)) - 1
	return i, i >= 0
}

// addrUint is an IPv4 address as a big-endian number.
func addrUint(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func slotMAC(slot int) fdb.MAC {
	var m fdb.MAC
	m[0] = 0x02
	binary.BigEndian.PutUint32(m[2:], uint32(slot))
	return m
}

func macSlot(m fdb.MAC) int { return int(binary.BigEndian.Uint32(m[2:])) }

// slotIP is the IPv4 address the container behind a slot's MAC claims.
func slotIP(slot int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(slot >> 16), byte(slot >> 8), byte(slot)})
}

// event is one change the bench makes: a host registering, or a MAC placed
// behind a VTEP. The stand-ins of the hosts it waits for count their
// receipts; the last one's time is when every host had it.
type event struct {
	vtep   atomic.Uint32 // the MAC's VTEP, as a big-endian IPv4 address
	start  atomic.Int64  // since the clock's epoch, in nanoseconds
	want   atomic.Int32  // receipts that complete it
	seen   atomic.Int32
	last   atomic.Int64 // the latest receipt, as start
	cohort atomic.Int32 // a registration counts hosts of earlier cohorts only
}

// begin starts the event: it waits for want receipts of vtep from now.
func (e *event) begin(c clock, vtep netip.Addr, want int) {
	e.seen.Store(0)
	e.last.Store(0)
	e.want.Store(int32(want))
	e.vtep.Store(addrUint(vtep))
	e.start.Store(c.now())
}

// receive counts one receipt of vtep at t.
func (e *event) receive(vtep netip.Addr, t int64) {
	if e.vtep.Load() != addrUint(vtep) {
		return // an earlier placement of the MAC, or another VTEP's
	}
	for {
		l := e.last.Load()
		if t <= l || e.last.CompareAndSwap(l, t) {
			break
		}
	}
	e.seen.Add(1)
}

func (e *event) done() bool { return e.seen.Load() >= e.want.Load() }

// latency is the time from the event's start until the last receipt it
// waited for; false until then.
func (e *event) latency() (time.Duration, bool) {
	if !e.done() {
		return 0, false
	}
	return time.Duration(max(e.last.Load()-e.start.Load(), 0)), true
}

// clock gives monotonic timestamps shared by the bench and the stand-ins.
type clock struct{ epoch time.Time }

func (c clock) now() int64 { return int64(time.Since(c.epoch)) }

// standIn is a simulated host's data plane: the FDB the agent changes. It
// keeps what it is told, so that it can be compared with etcd, and counts
// each first receipt of a MAC's placement or of a member for the events.
type standIn struct {
	clock  clock
	cohort int32
	macs   []event // by slot
	joins  []event // by host index

	mu    sync.Mutex
	fdb   map[fdb.MAC]netip.Addr
	flood map[netip.Addr]bool
}

var _ discovery.FDB = (*standIn)(nil)

func (s *standIn) Set(_ uint32, mac fdb.MAC, vtep netip.Addr, _ fdb.Origin) bool {
	t := s.clock.now()
	s.mu.Lock()
	old, ok := s.fdb[mac]
	s.fdb[mac] = vtep
	s.mu.Unlock()
	if ok && old == vtep {
		return false
	}
	if slot := macSlot(mac); slot < len(s.macs) {
		s.macs[slot].receive(vtep, t)
	}
	return true
}

func (s *standIn) Delete(_ uint32, mac fdb.MAC, _ fdb.Origin) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.fdb[mac]
	delete(s.fdb, mac)
	return ok
}

func (s *standIn) AddFlood(_ uint32, vtep netip.Addr, _ fdb.Source) bool {
	t := s.clock.now()
	s.mu.Lock()
	had := s.flood[vtep]
	s.flood[vtep] = true
	s.mu.Unlock()
	if had {
		return false
	}
	if i, ok := hostIndex(vtep); ok && i < len(s.joins) {
		if e := &s.joins[i]; e.cohort.Load() > s.cohort {
			e.receive(vtep, t)
		}
	}
	return true
}

func (s *standIn) RemoveFlood(_ uint32, vtep netip.Addr, _ fdb.Source) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	had := s.flood[vtep]
	delete(s.flood, vtep)
	return had
}

// differsFrom says how the stand-in differs from what etcd holds for a
// host at self: every other member in the flood list, every MAC not behind
// self in the FDB.
func (s *standIn) differsFrom(self netip.Addr, members map[netip.Addr]bool, macs map[fdb.MAC]netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	wantFlood := len(members)
	if members[self] {
		wantFlood--
	}
	if len(s.flood) != wantFlood {
		return fmt.Errorf("%d VTEPs in the flood list, etcd has %d other members", len(s.flood), wantFlood)
	}
	for vtep := range s.flood {
		if !members[vtep] {
			return fmt.Errorf("flood list has %s, not a member in etcd", vtep)
		}
	}
	remote := 0
	for mac, vtep := range macs {
		if vtep == self {
			continue
		}
		remote++
		if s.fdb[mac] != vtep {
			return fmt.Errorf("MAC %s: FDB has %v, etcd %s", mac, s.fdb[mac], vtep)
		}
	}
	if len(s.fdb) != remote {
		return fmt.Errorf("%d MACs in the FDB, etcd has %d behind other VTEPs", len(s.fdb), remote)
	}
	return nil
}
