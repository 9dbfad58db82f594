package discovery

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/vxland/vxland/overlay/fdb"
)

// relistKVs returns a list of hosts members and hosts×macs MAC records,
// as etcd answers a list of the VNI's keys.
func relistKVs(hosts, macs int) []*mvccpb.KeyValue {
	var kvs []*mvccpb.KeyValue
	rev := int64(1)
	add := func(key string, v any) {
		b, _ := json.Marshal(v)
		kvs = append(kvs, &mvccpb.KeyValue{Key: []byte(key), Value: b, ModRevision: rev})
		rev++
	}
	for h := range hosts {
		vtep := netip.AddrFrom4([4]byte{10, 0, byte(h >> 8), byte(h) + 1})
		add(testKeys.Member(vtep), Member{Version: SchemaVersion, Addr: vtep, Port: 4789, Hostname: fmt.Sprint("h", h)})
		for m := range macs {
			mac := fdb.MAC{0x02, 0, byte(h >> 8), byte(h), byte(m >> 8), byte(m)}
			ip := netip.AddrFrom4([4]byte{172, 16, byte(h), byte(m)})
			add(testKeys.MAC(mac), MACRecord{Version: SchemaVersion, MAC: mac.String(), VTEP: vtep, IPs: []netip.Addr{ip}})
		}
	}
	return kvs
}

func relistAgent(table FDB) *Agent {
	return New(Config{VNI: 42, Self: netip.MustParseAddr("10.9.9.9"), Port: 4789, LeaseTTL: time.Minute,
		FDB: table, Neighbors: fdb.NewNeighbors()})
}

// countingFDB counts the changes the agent asks of a real table.
type countingFDB struct {
	*fdb.Table
	sets, deletes int
}

func (c *countingFDB) Set(vni uint32, mac fdb.MAC, vtep netip.Addr, o fdb.Origin) bool {
	c.sets++
	return c.Table.Set(vni, mac, vtep, o)
}

func (c *countingFDB) Delete(vni uint32, mac fdb.MAC, o fdb.Origin) bool {
	c.deletes++
	return c.Table.Delete(vni, mac, o)
}

// TestRelistSkipsUnchangedKeys: a re-list (after a compaction) applies
// only what changed: a key at the ModRevision the view holds is neither
// decoded nor applied again and costs no allocation, while a changed
// value is applied and a key gone from the list is removed.
func TestRelistSkipsUnchangedKeys(t *testing.T) {
	kvs := relistKVs(4, 50)
	table := &countingFDB{Table: fdb.New(4789, time.Minute)}
	a := relistAgent(table)
	store := a.follow.Store
	store.Replace(kvs, 1)
	if table.sets != 200 {
		t.Fatalf("first list: %d FDB sets, want 200", table.sets)
	}
	if allocs := testing.AllocsPerRun(10, func() { store.Replace(kvs, 1) }); allocs != 0 {
		t.Errorf("a re-list of unchanged keys allocated %v times, want 0", allocs)
	}
	if table.sets != 200 || table.deletes != 0 {
		t.Errorf("re-lists of unchanged keys: %d sets and %d deletes in all, want the first list's 200 and 0", table.sets, table.deletes)
	}

	// One MAC moves to another VTEP (a new value at a new ModRevision),
	// one is gone.
	moved, gone := kvs[1], kvs[2]
	vtep := netip.MustParseAddr("10.0.0.3")
	mac := fdb.MAC{0x02, 0, 0, 0, 0, 0}
	value, _ := json.Marshal(MACRecord{Version: SchemaVersion, MAC: mac.String(), VTEP: vtep})
	relisted := append([]*mvccpb.KeyValue{kvs[0], {Key: moved.Key, Value: value, ModRevision: 1000}}, kvs[3:]...)
	store.Replace(relisted, 1000)
	if table.sets != 201 {
		t.Errorf("a re-list with one changed value: %d sets in all, want 201", table.sets)
	}
	if got, ok := table.Lookup(42, mac); !ok || got.AddrPort().Addr() != vtep {
		t.Errorf("the moved MAC is at %v (found %v), want %v", got, ok, vtep)
	}
	goneMAC := fdb.MAC{0x02, 0, 0, 0, 0, 1}
	if _, ok := table.Lookup(42, goneMAC); ok {
		t.Errorf("MAC %s, not in the re-list, is still in the FDB (key %s)", goneMAC, gone.Key)
	}
}

// BenchmarkRelist measures what vxland does with a full list of 10,000
// remote MACs: the first list (an empty view) and a re-list of the same
// keys (the reconcile after a compaction).
func BenchmarkRelist(b *testing.B) {
	kvs := relistKVs(20, 500)
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			relistAgent(fdb.New(4789, time.Minute)).follow.Store.Replace(kvs, 1)
		}
	})
	b.Run("again", func(b *testing.B) {
		a := relistAgent(fdb.New(4789, time.Minute))
		a.follow.Store.Replace(kvs, 1)
		b.ReportAllocs()
		for b.Loop() {
			a.follow.Store.Replace(kvs, 1)
		}
	})
}

// TestRelistAfterEtcdWentBack: a list at a revision below the view's
// (etcd restored from a snapshot) applies every key again, since a
// ModRevision no longer names one value.
func TestRelistAfterEtcdWentBack(t *testing.T) {
	kvs := relistKVs(1, 2)
	table := fdb.New(4789, time.Minute)
	store := relistAgent(table).follow.Store
	store.Replace(kvs, 100)

	vtep := netip.MustParseAddr("10.0.0.9")
	mac := fdb.MAC{0x02, 0, 0, 0, 0, 0}
	value, _ := json.Marshal(MACRecord{Version: SchemaVersion, MAC: mac.String(), VTEP: vtep})
	restored := slices.Clone(kvs)
	restored[1] = &mvccpb.KeyValue{Key: kvs[1].Key, Value: value, ModRevision: kvs[1].ModRevision}
	store.Replace(restored, 50)
	if got, ok := table.Lookup(42, mac); !ok || got.AddrPort().Addr() != vtep {
		t.Errorf("after a list from a restored etcd the MAC is at %v (found %v), want %v", got, ok, vtep)
	}
}
