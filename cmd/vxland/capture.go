package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/overlay/fdb"
)

// capture writes a pcap of what a running daemon forwards:
// `vxland capture -w - | tcpdump -r -`.
func capture(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	socketFlags, socketPath := daemonSocketFlags("vxland capture")
	fs := pflag.NewFlagSet("vxland capture", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.AddFlagSet(socketFlags)
	file := fs.StringP("write", "w", "-", `pcap file to write, "-" for standard output`)
	inner := fs.Bool("inner", false, "capture the inner Ethernet frames (the default when --outer is not given)")
	outer := fs.Bool("outer", false, "capture the outer VXLAN packets (with --inner: both)")
	mac := fs.String("mac", "", "only frames from or to this MAC address")
	vtep := fs.String("vtep", "", "only packets to or from this peer VTEP address")
	count := fs.IntP("count", "c", 0, "stop after this many packets (0: until stopped)")
	duration := fs.Duration("duration", 0, "stop after this long (0: until stopped)")
	snaplen := fs.IntP("snaplen", "s", 0, "bytes to keep of each packet (0: all)")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: vxland capture [flags]\n\nWrites a pcap of the frames a running vxland forwards, e.g.\n  vxland capture --vni 42 --mac 02:42:0a:00:00:02 -c 10 -w - | tcpdump -nr -\n%s", clientUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "vxland capture: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	sock, err := socketPath(getenv)
	if err != nil {
		return usage("%v", err)
	}
	q := control.CaptureQuery{Count: *count, Duration: *duration, Snaplen: *snaplen}
	q.Filter.Inner, q.Filter.Outer = *inner || !*outer, *outer
	if *mac != "" {
		m, err := fdb.ParseMAC(*mac)
		if err != nil {
			return usage("--mac %q: not an Ethernet address", *mac)
		}
		q.Filter.MAC, q.Filter.HasMAC = m, true
	}
	if *vtep != "" {
		a, err := netip.ParseAddr(*vtep)
		if err != nil {
			return usage("--vtep %q: not an IP address", *vtep)
		}
		q.Filter.VTEP = a
	}
	switch {
	case *count < 0:
		return usage("--count %d: must not be negative", *count)
	case *duration < 0:
		return usage("--duration %v: must not be negative", *duration)
	case *snaplen < 0:
		return usage("--snaplen %d: must not be negative", *snaplen)
	}
	out := stdout
	if *file != "-" {
		f, err := os.Create(*file)
		if err != nil {
			fmt.Fprintf(stderr, "vxland capture: %v\n", err)
			return 1
		}
		defer f.Close()
		out = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := control.Capture(ctx, sock, q, out)
	if err != nil {
		fmt.Fprintf(stderr, "vxland capture: %v\n", err)
		return 1
	}
	if ctx.Err() == nil { // the daemon ended the capture and said how it went
		fmt.Fprintf(stderr, "%d packets captured, %d dropped because the reader fell behind\n", res.Packets, res.Dropped)
	}
	return 0
}
