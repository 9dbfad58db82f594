package fdb

import (
	"net/netip"
	"sync/atomic"
)

// Source says why a VTEP is known, that is, why its packets are accepted
// and, for a flood list member, why it gets flooded frames. A VTEP may be
// known for several reasons at once (a --peer that also registered in
// etcd); each is counted apart, and the VTEP stays known while any is.
type Source uint8

const (
	// SourceStatic: configured by the operator (--peer).
	SourceStatic Source = iota
	// SourceEtcd: registered as a member of the VNI in etcd.
	SourceEtcd
	// SourceFlannel: holds a subnet lease of the flannel network.
	SourceFlannel
	// SourceMulticast: sent from an address the VNI accepts senders of
	// its multicast group from, whose members are not known in advance.
	SourceMulticast

	numSources
)

func (s Source) String() string {
	switch s {
	case SourceStatic:
		return "static"
	case SourceEtcd:
		return "etcd"
	case SourceFlannel:
		return "flannel"
	case SourceMulticast:
		return "multicast"
	}
	return "unknown"
}

// VTEP is the table's record of one remote VTEP: why it is known, and the
// traffic exchanged with it. The table keeps one record per address that a
// flood list, an Allow or an entry names; the data plane gets it from
// Lookup, Flood and KnownVTEP and counts on it without a further lookup.
// A record stays valid after the table dropped it: counts added to it
// then are lost, as the counters of a deleted interface are.
type VTEP struct {
	addr netip.AddrPort
	// refs counts, per source, the flood list memberships and Allows
	// that make the VTEP known; entries counts the FDB entries naming
	// it. Both are guarded by Table.mu; the record leaves the table when
	// all are zero.
	refs    [numSources]int
	entries int
	// Traffic, written by every forwarding thread, once per run of
	// datagrams sent or per batch received rather than per packet.
	txPackets, txBytes atomic.Uint64
	rxPackets, rxBytes atomic.Uint64
	// seen is when a frame from the VTEP was last accepted, in
	// nanoseconds since the table's epoch, refreshed at most once a
	// second (Learn); 0: never.
	seen atomic.Int64
}

// AddrPort is where datagrams for the VTEP go.
func (v *VTEP) AddrPort() netip.AddrPort { return v.addr }

// CountTx adds datagrams sent to the VTEP and their inner frame bytes.
func (v *VTEP) CountTx(packets, bytes int) {
	v.txPackets.Add(uint64(packets))
	v.txBytes.Add(uint64(bytes))
}

// CountRx adds frames received from the VTEP that passed the checks, and
// their bytes.
func (v *VTEP) CountRx(packets, bytes int) {
	v.rxPackets.Add(uint64(packets))
	v.rxBytes.Add(uint64(bytes))
}

func (v *VTEP) known() bool { return v.refs != [numSources]int{} }
