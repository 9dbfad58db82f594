package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
)

// show prints a running daemon's state: `vxland show stats` or
// `vxland show fdb`, like `ip -s link` and `bridge fdb show`.
func show(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("vxland show", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("control-socket", "/run/vxland/vxtap1.sock", "control socket of the daemon to ask")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vxland show stats|fdb [--control-socket PATH]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 || (fs.Arg(0) != "stats" && fs.Arg(0) != "fdb") {
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if fs.Arg(0) == "stats" {
		var s overlay.Stats
		if err = control.Get(ctx, *sock, "/stats", &s); err == nil {
			printStats(stdout, s)
		}
	} else {
		var f control.FDBState
		if err = control.Get(ctx, *sock, "/fdb", &f); err == nil {
			printFDB(stdout, f)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "vxland show: %v\n", err)
		return 1
	}
	return 0
}

func printStats(w io.Writer, s overlay.Stats) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "rx\t%d packets\t%d bytes\n", s.RxPackets, s.RxBytes)
	fmt.Fprintf(tw, "tx\t%d packets\t%d bytes\t%d flooded (%d copies)\n", s.TxPackets, s.TxBytes, s.TxFlooded, s.TxFloodCopies)
	fmt.Fprintf(tw, "rx checksums completed\t%d\n", s.RxChecksumCompleted)
	fmt.Fprintf(tw, "rx frames segmented\t%d\n", s.RxSegmented)
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
	tw.Flush()
}

func printFDB(w io.Writer, f control.FDBState) {
	for _, e := range f.Entries {
		fmt.Fprintf(w, "%s dst %s vni %d %s", e.MAC, e.VTEP.Addr(), e.VNI, e.Origin)
		if e.Origin == fdb.OriginLearned.String() {
			fmt.Fprintf(w, " age %s", e.Age.Round(time.Second))
		}
		fmt.Fprintln(w)
	}
	for _, fl := range f.Flood {
		for _, v := range fl.VTEPs {
			fmt.Fprintf(w, "00:00:00:00:00:00 dst %s vni %d flood\n", v.Addr(), fl.VNI)
		}
	}
}
