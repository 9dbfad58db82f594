// Package fdb holds the data plane's tables: the forwarding database
// (which VTEP owns a MAC, which VTEPs get a VNI's flooded frames, which
// VTEPs packets are accepted from), the MACs of this host's own containers
// (LocalTable), and the IPv4 and IPv6 neighbours that ARP requests and
// neighbour solicitations are answered from (Neighbors).
//
// The data plane reads every table on its per-packet path without
// allocating, in parallel from every forwarding thread; the control plane
// (etcd, flannel leases, static peers) and learning change them.
package fdb
