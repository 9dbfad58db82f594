package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/overlay/fdb"
)

const showUsage = `Usage: vxland show stats|fdb|peers|config [flags]

Prints a running daemon's state, read from its control socket:
  stats   counters, like ip -s link
  fdb     the forwarding database, like bridge fdb show
  peers   one line per VTEP: why it is known, its MACs, traffic each way
  config  the daemon's effective configuration, and where each value came from
`

const traceUsage = `Usage: vxland trace MAC|IPv4 [flags]

Says what the daemon would do now with a frame to MAC: the VTEP it goes to
and why, or the peers it is flooded to; for an IPv4 address, whether a
container's ARP request for it is answered on this host (ARP suppression)
or flooded, and then where frames to the MAC go. It asks the daemon's
tables; nothing is sent.
`

// clientUsage ends the usage of show and trace.
const clientUsage = `
The daemon is found as it names its control socket: give the --vni, --tap
or --mode it runs with (or set VXLAND_VNI and so on, as for the daemon),
or --control-socket.

Flags:
`

// client is what `vxland show` and `vxland trace` are asked: the daemon's
// control socket, the output format and the arguments.
type client struct {
	sock string
	// vni, when --vni was given, names the VNI to ask about: a control
	// socket shared by several VNIs answers for its first otherwise.
	vni  string
	json bool
	args []string
}

// parseClient parses the flags of show and trace. The daemon's control
// socket is derived from the daemon's own flags and VXLAND_* variables,
// by the daemon's own code (rawFlags.controlSocketPath). It returns nil
// and an exit status when there is nothing more to do.
func parseClient(name, usage string, args []string, getenv func(string) string, stdout, stderr io.Writer) (*client, int) {
	socketFlags, socketPath := daemonSocketFlags(name)
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.AddFlagSet(socketFlags)
	output := fs.StringP("output", "o", "text", "output format: text or json")
	fs.Usage = func() { // only for --help
		fmt.Fprint(stdout, usage, clientUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
	}
	fail := func(err error) (*client, int) { return nil, usageErr(stderr, name, "%v", err) }
	if err := fs.Parse(args); errors.Is(err, pflag.ErrHelp) {
		return nil, 0
	} else if err != nil {
		return fail(err)
	}
	sock, err := socketPath(getenv)
	if err != nil {
		return fail(err)
	}
	if *output != "text" && *output != "json" {
		return fail(fmt.Errorf("-o %q: want text or json", *output))
	}
	c := &client{sock: sock, json: *output == "json", args: fs.Args()}
	if vni := fs.Lookup("vni"); vni.Changed || getenv(envName("vni")) != "" {
		if strings.Contains(vni.Value.String(), ",") {
			return fail(fmt.Errorf("--vni %s: ask about one VNI at a time", vni.Value))
		}
		c.vni = vni.Value.String()
	}
	return c, -1
}

// daemonSocketFlags returns, for a command that asks a running daemon, the
// daemon's own flags that name its control socket (--vni, --tap, --mode,
// --control-socket), and a function that derives the socket from them and
// their VXLAND_* variables, read through getenv, by the daemon's own code
// (rawFlags.controlSocketPath).
func daemonSocketFlags(name string) (*pflag.FlagSet, func(getenv func(string) string) (string, error)) {
	daemonFlags, r := newFlagSet(io.Discard)
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	for _, f := range []string{"vni", "tap", "mode", "control-socket"} {
		fs.AddFlag(daemonFlags.Lookup(f))
	}
	return fs, func(getenv func(string) string) (string, error) {
		if _, err := applyEnv(fs, getenv); err != nil {
			return "", err
		}
		if err := r.checkVNI(); err != nil {
			return "", err
		}
		if r.mode != modeL2 && r.mode != modeFlannel {
			return "", fmt.Errorf("--mode %q: must be %s or %s", r.mode, modeL2, modeFlannel)
		}
		return r.controlSocketPath(), nil
	}
}

// endpoint returns endpoint asked of the VNI the client names (--vni),
// for a control socket that answers for several.
func (c *client) endpoint(endpoint string) string {
	if c.vni == "" {
		return endpoint
	}
	sep := "?"
	if strings.Contains(endpoint, "?") {
		sep = "&"
	}
	return endpoint + sep + "vni=" + c.vni
}

// get fetches endpoint into v, and prints v as JSON when asked to, or
// with text otherwise. It returns the exit status.
func (c *client) get(name, endpoint string, v any, text func(), stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := control.Get(ctx, c.sock, c.endpoint(endpoint), v); err != nil {
		return failed(stderr, name, err)
	}
	if c.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	} else {
		text()
	}
	return 0
}

// failed prints why command name could not ask the daemon and returns
// exit status 1.
func failed(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	if errors.Is(err, control.ErrNoDaemon) {
		fmt.Fprintf(stderr, "%s: is vxland running? Give the --vni, --tap or --mode it runs with, or --control-socket.\n", name)
	}
	return 1
}

// show prints a running daemon's state: `vxland show stats|fdb|peers|config`.
func show(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	const name = "vxland show"
	c, code := parseClient(name, showUsage, args, getenv, stdout, stderr)
	if c == nil {
		return code
	}
	what := ""
	if len(c.args) == 1 {
		what = c.args[0]
	}
	switch what {
	case "stats":
		var s control.Stats
		return c.get(name, "/stats", &s, func() { printStats(stdout, s) }, stdout, stderr)
	case "fdb":
		var f control.FDBState
		return c.get(name, "/fdb", &f, func() { printFDB(stdout, f) }, stdout, stderr)
	case "peers":
		var p []fdb.VTEPState
		return c.get(name, "/peers", &p, func() { printPeers(stdout, p) }, stdout, stderr)
	case "config":
		var s []setting
		return c.get(name, "/config", &s, func() { printSettings(stdout, s) }, stdout, stderr)
	}
	return usageErr(stderr, name, "want one of stats, fdb, peers, config; got %q", strings.Join(c.args, " "))
}

// usageErr prints a bad argument of command name and returns exit status 2.
func usageErr(stderr io.Writer, name, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", name, fmt.Sprintf(format, args...), name)
	return 2
}

// trace prints what the daemon would do with a frame to an address:
// `vxland trace MAC|IPv4`.
func trace(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	const name = "vxland trace"
	c, code := parseClient(name, traceUsage, args, getenv, stdout, stderr)
	if c == nil {
		return code
	}
	if len(c.args) != 1 {
		return usageErr(stderr, name, "want one MAC or IPv4 address")
	}
	if _, _, err := control.ParseTraceTarget(c.args[0]); err != nil {
		return usageErr(stderr, name, "%v", err)
	}
	var t control.Trace
	return c.get(name, "/trace?to="+url.QueryEscape(c.args[0]), &t, func() { printTrace(stdout, t) }, stdout, stderr)
}

func printStats(w io.Writer, s control.Stats) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "rx\t%d packets\t%d bytes\n", s.RxPackets, s.RxBytes)
	fmt.Fprintf(tw, "tx\t%d packets\t%d bytes\t%d flooded (%d copies)\n", s.TxPackets, s.TxBytes, s.TxFlooded, s.TxFloodCopies)
	fmt.Fprintf(tw, "rx checksums completed\t%d\n", s.RxChecksumCompleted)
	fmt.Fprintf(tw, "rx frames segmented\t%d\n", s.RxSegmented)
	fmt.Fprintf(tw, "arp\t%d answered\t%d flooded\n", s.ARPAnswered, s.ARPFlooded)
	fmt.Fprintf(tw, "nd\t%d answered\t%d flooded\n", s.NDAnswered, s.NDFlooded)
	fmt.Fprintf(tw, "icmp too big\t%d sent\t%d rate limited\n", s.ICMPTooBigSent, s.ICMPTooBigLimited)
	if len(s.Queues) > 1 {
		for i, q := range s.Queues {
			fmt.Fprintf(tw, "queue %d\t%d rx packets\t%d tx packets\n", i, q.RxPackets, q.TxPackets)
		}
	}
	reasons := make([]string, 0, len(s.Drops))
	for r := range s.Drops {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(tw, "drop %s\t%d\n", r, s.Drops[r])
	}
	fmt.Fprintf(tw, "host setup heals\t%d\n", s.Heals)
	tw.Flush()
}

func printFDB(w io.Writer, f control.FDBState) {
	for _, l := range control.FDBLines(f) {
		fmt.Fprintln(w, l)
	}
}

func printPeers(w io.Writer, peers []fdb.VTEPState) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VTEP\tSOURCE\tMACS\tTX PACKETS\tTX BYTES\tRX PACKETS\tRX BYTES\tLAST SEEN")
	for _, p := range peers {
		source := strings.Join(p.Sources, ",")
		if source == "" {
			source = "-" // only entries name it; its packets are not accepted
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", p.VTEP.Addr(), source, len(p.MACs),
			p.TxPackets, p.TxBytes, p.RxPackets, p.RxBytes, lastSeen(p))
	}
	tw.Flush()
}

func lastSeen(p fdb.VTEPState) string {
	if !p.Seen {
		return "never"
	}
	return p.SinceSeen.Round(time.Second).String() + " ago"
}

func printSettings(w io.Writer, settings []setting) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range settings {
		v := s.Value
		if v == "" {
			v = `""`
		}
		fmt.Fprintf(tw, "--%s\t%s\t%s\n", s.Flag, v, s.From)
	}
	tw.Flush()
}

func printTrace(w io.Writer, t control.Trace) {
	flood := func(what string) {
		if len(t.Flood) == 0 {
			fmt.Fprintf(w, "  %s is dropped: the flood list is empty (drop no_destination)\n", what)
			return
		}
		vteps := make([]string, len(t.Flood))
		for i, v := range t.Flood {
			vteps[i] = v.Addr().String()
		}
		fmt.Fprintf(w, "  %s is flooded to %d peers: %s\n", what, len(t.Flood), strings.Join(vteps, " "))
	}
	fmt.Fprintf(w, "%s:\n", t.To)
	switch t.ARP {
	case control.VerdictAnswered:
		fmt.Fprintf(w, "  an ARP request for it is answered on this host (ARP suppression): is-at %s\n", t.MAC)
	case control.VerdictFlood, control.VerdictDrop:
		flood("not in the neighbour table: an ARP request for it")
	}
	switch t.Verdict {
	case control.VerdictUnicast:
		fmt.Fprintf(w, "  a frame to %s goes to %s: %s\n", t.MAC, t.Entry.VTEP.Addr(), why(*t.Entry, t.Peer))
		if p := t.Peer; p != nil {
			fmt.Fprintf(w, "  peer %s: tx %d packets %d bytes, rx %d packets %d bytes, last seen %s\n",
				p.VTEP.Addr(), p.TxPackets, p.TxBytes, p.RxPackets, p.RxBytes, lastSeen(*p))
		}
	case control.VerdictFlood, control.VerdictDrop:
		flood("a frame to " + t.MAC + " (no FDB entry)")
	}
	keys := make([]string, 0, len(t.Counters))
	for k := range t.Counters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprint(w, "  counters:")
	for _, k := range keys {
		fmt.Fprintf(w, " %s %d", k, t.Counters[k])
	}
	fmt.Fprintln(w)
}

// why says where an FDB entry came from.
func why(e fdb.Entry, peer *fdb.VTEPState) string {
	switch e.Origin {
	case fdb.OriginStatic.String():
		return "static entry"
	case fdb.OriginLearned.String():
		return fmt.Sprintf("learned from its traffic, last confirmed %s ago", e.Age.Round(time.Second))
	}
	from := "the control plane"
	if peer != nil && len(peer.Sources) > 0 {
		from = strings.Join(peer.Sources, ", ")
	}
	switch from {
	case fdb.SourceEtcd.String():
		from = "an etcd record"
	case fdb.SourceFlannel.String():
		from = "a flannel lease"
	}
	return "remote entry, from " + from
}
