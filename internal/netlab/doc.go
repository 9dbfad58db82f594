// Package netlab builds throwaway network topologies out of Linux network
// namespaces for integration tests, the demo and the benchmark: namespaces
// play "hosts" and "containers", joined by veth pairs and bridges.
//
// # Safety rules
//
// The lab runs as root on a machine other people use, so it keeps to itself:
//
//   - Nothing is configured in, and no traffic is sent through, the root
//     namespace. The only commands run there are "ip netns add" and
//     "ip netns delete" for the lab's own namespaces. Links and addresses are
//     made with "ip -n <ns> ...", and a veth pair is created inside its first
//     namespace with its peer placed directly in the second, so no interface
//     ever appears in the root namespace, not even briefly.
//   - Every namespace name carries the creating process's PID and a per-process
//     lab number ("vxt12345-1-h1"), so concurrent test binaries and parallel
//     tests never collide, and leftovers name the process that leaked them.
//   - A Lab remembers everything it created and [Lab.Close] removes it:
//     processes started through the lab are stopped first (they would keep a
//     deleted namespace alive), then the namespaces are deleted. Interfaces
//     die with their namespace. Only processes the lab started are signalled,
//     by PID, together with their process group.
//
// # Why iproute2 and not a netlink library
//
// Topology is built by running ip(8): every step is a command a reader can
// paste into a shell to reproduce or inspect a failing setup, and every error
// carries that command and its output. Only [NS.Do], which needs the calling
// thread itself inside a namespace, uses setns(2) directly.
package netlab
