// Package control measures vxland's etcd control plane at scale: a real
// three-member etcd cluster (etcd's embed package, on loopback) and many
// simulated hosts, each a real discovery agent with its own etcd client
// and a stand-in data plane that records when it is told what.
//
// # Phases
//
//	registration  the hosts start in ten cohorts; a host's registration
//	              has converged when every host of the earlier cohorts
//	              has it in its flood list.
//	publication   every host publishes its MACs, at a fixed rate for all;
//	              a MAC has converged when every other host's FDB has it.
//	churn         a share of the MACs moves to another host each second;
//	              the agents' etcd writes, and the keys they write, are
//	              counted per move.
//	leader change the leader member is killed (its raft stopped, the
//	              clients' connections to it reset); a write made after it
//	              must reach every agent, and every data plane must equal
//	              etcd.
//	compaction    every client connection is cut and held while the bench
//	              withdraws one MAC, publishes another and compacts etcd
//	              past them: each watch resumes at a compacted revision and
//	              its agent lists the keys again and must reconcile.
//
// # A real vxland among them
//
// With Options.Vxland (vxctlbench --real-host), a real vxland process
// joins after the publication, once etcd holds every simulated host's
// MACs. It runs in a network-namespace host beside a second host whose
// container sits behind the kernel's own VXLAN device (its control plane
// played by one more agent); etcd is reached through a proxy that the
// bench runs on loopback inside the vxland host, one port per member, so
// that the leader's death and the compaction's cut reach vxland as they
// reach the agents. The run measures the time from its start until its
// FDB holds every remote MAC (its metrics), the time until it has the
// kernel peer's container MAC, published last, and a ping to that
// container through both; its memory (VmRSS, VmHWM, the Go heap in use);
// and, in the compaction phase, the time until its watch has listed
// again past the compaction, after which its FDB (its control socket)
// must equal etcd.
//
// A phase whose changes have not reached every host within Options.Wait
// does not stop the run: its summary counts the events that did not
// converge, the receipts the hosts had out of those wanted, and the hosts
// still unequal to etcd, and the next phase starts.
//
// Times run from the bench's action (starting the agent, handing the MAC
// to the host's local table, stopping the leader) to the last stand-in's
// receipt, on one monotonic clock; the re-list time from the release of the
// held connections. Requests and bytes are counted at the
// agents' clients (a gRPC interceptor and a counting dialer), so the
// bench's own reads are not among them.
package control
