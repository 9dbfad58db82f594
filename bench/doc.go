// Package bench measures what an overlay costs: it builds the same two-host
// topology in network namespaces once per configuration and runs the same
// measurements through each of them.
//
// # Configurations
//
// Every configuration has two host namespaces joined by one veth (the
// underlay, 10.77.0.1 and 10.77.0.2 on "eth0") and one container namespace
// per host, attached to the host's bridge "br0":
//
//	underlay        host to host over the veth; the containers are idle.
//	native-routing  container subnets 10.201.1.0/24 and 10.201.2.0/24 routed
//	                between the hosts by plain routes via the other host's
//	                underlay address, no encapsulation (Calico's BGP mode).
//	kernel-vxlan    a Linux vxlan device on br0, flooding to the peer
//	                (flannel's vxlan backend); containers in 10.200.0.0/24.
//	vxland          vxland's TAP on br0, static peer; containers as above.
//	vxland-base     the same as vxland, run from a second executable
//	                (Options.VxlandBasePath, vxbench --vxland-base) with
//	                the same flags and CPUs; measured only when one is given.
//	vxland-poll     the same as vxland with extra flags added
//	                (Options.PollFlags, vxbench --poll-flags, by default
//	                --poll=always); measured when named or given flags.
//
// Overlay containers get the overlay MTU (underlay MTU − 50); the others the
// full underlay MTU, as each data plane would configure them.
//
// # Method
//
// All topologies are built first and stay up. Then, round by round, each
// configuration runs the same tests: TCP with 1 and 4 streams, UDP at 64
// and 1400 byte payloads, and ICMP echo round trips. The order of the
// configurations is rotated by one each round (see [RoundOrder]), so that
// drift in the machine (another tenant, thermal state, page cache) spreads
// over all of them. Reported numbers are medians over rounds with min–max;
// ratios to kernel VXLAN and to the underlay are computed within each round
// and then summarised, so a slow round does not skew a ratio.
//
// vxland-base is there to show what a change to vxland does to its speed:
// the build before the change and the build after it, measured on the same
// machine in the same rounds. The report then also gives, per measure,
// vxland ÷ vxland-base, computed in the same way within each round.
//
// UDP runs offer unlimited load (iperf3 -b 0): the sender sends as fast as
// one core lets it, and the metric is what the receiver got, in packets per
// second, with the loss. That is the most the data path delivers when a
// sender saturates it, the number that matters for small-packet workloads.
// When kernel VXLAN is measured, a run before the rounds records what it
// delivers of unlimited 64 B datagrams, and every configuration also runs
// "udp64-paced" at that rate: delivered rate and loss at the kernel's rate.
// Each UDP run also reads the receiving namespace's UDP RcvbufErrors, the
// datagrams that crossed the path but found the receiving iperf3's socket
// full, so that loss on the way and loss at the application are told apart.
//
// Latency is measured three ways. ICMP echo round trips every RTTInterval
// (10 ms in the full bench) and, ten times as many, every 1 ms: at 10 ms
// a data plane that sleeps when idle wakes for every request, at 1 ms it
// may not have gone to sleep. The 1 ms series runs again while one TCP
// stream (iperf3) crosses the same path, from 250 ms after the stream starts
// to 250 ms before it ends: latency under load; the stream's throughput
// is recorded with it. And a TCP request/response test: one
// connection with TCP_NODELAY between the containers, a 1-byte request
// answered by a 1-byte response, one at a time, for the iperf3 duration,
// reported as transactions per second and the p50 and p99 of one
// transaction. Both of its ends are this program, each on a locked thread
// in blocking system calls (no Go network poller), and each transaction's
// time goes into a histogram of 1 µs buckets made before the run, so the
// client allocates nothing per transaction; the client thread's CPU time
// over the run is recorded too: well below 100 % means it waited for the
// path, so the path set the rate. All percentiles are nearest-rank; the
// request/response ones are the upper edge of the sample's 1 µs bucket,
// so up to 1 µs above it.
//
// CPU cost is measured during the TCP tests: the busy time of the whole
// machine (/proc/stat) and of the vxland processes (/proc/PID/stat, all
// threads) divided by the gigabits the receiver got. On a 2-core machine the
// whole-machine figure includes iperf3's own work at both ends, so it says
// how much more the overlay costs than the underlay, not what it costs alone.
//
// # CPUs
//
// By default everything may run on every CPU, and on a machine with few
// cores the applications and vxland compete for them. With
// Options.AppCPUs and Options.VxlandCPUs (vxbench --app-cpus, --vxland-cpus)
// the iperf3 processes and the echo sender run on one set of CPUs and
// vxland on another (taskset), which models a host with cores to spare
// for the data plane. The kernel's VXLAN does its work in the
// applications' context, so it gets only their CPUs. Then the bench also
// reports how busy vxland's CPUs are (per-CPU lines of /proc/stat, busy
// ticks over all ticks): during TCP ×1, and during a quiet second with no
// traffic (test "idle"), which shows what a polling data plane burns when
// there is nothing to do.
//
// The package's pure parts (statistics, ratios, round order, tables, JSON,
// SVG) are separate from the parts that build namespaces and run programs,
// and are tested on their own.
package bench
