// Command vxdemo shows vxland's main job on one machine, for someone who
// has only Go, root and iproute2: three hosts, made of network namespaces
// on an underlay switch, run vxland with an etcd control plane (embedded
// in the first host's vxland) and no static peers; two containers on each
// host talk across hosts. It prints, step by step, that the hosts found
// each other, pings and a TCP transfer between containers, the forwarding
// table each host learned, the counters, and what VXLAN costs per packet.
// It removes everything it created when it ends, also on Ctrl-C.
//
// Usage:
//
//	vxdemo [--vxland bin/vxland] [--transfer-mb 50] [--pings 4] [--vxland-flags "..."]
//
// Exit status: 0 when every step worked, 1 when a step failed, 2 for a bad
// flag or a missing prerequisite (not root, no vxland binary, no iproute2),
// 130 when interrupted by SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/vxland/vxland/internal/netlab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A second Ctrl-C must not stop the cleanup half-way. It reaches the
	// "ip netns delete" commands too, being sent to the terminal's whole
	// process group; ignored in vxdemo, SIGINT is ignored in the commands
	// it starts from then on as well.
	beforeCleanup = func() { signal.Ignore(os.Interrupt) }
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// beforeCleanup is called when the cleanup starts. Only main sets it: it
// changes how the whole process handles signals.
var beforeCleanup = func() {}

// options are vxdemo's flags.
type options struct {
	vxland     string   // path of the vxland binary
	transferMB int      // size of the TCP transfer, in MB (10^6 bytes)
	pings      int      // echo requests per destination
	logLevel   string   // vxland's --log-level
	extra      []string // more flags for every vxland
	showLogs   bool     // print every vxland's log at the end
}

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130 // 128 + SIGINT, as shells report an interrupted command
)

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := pflag.NewFlagSet("vxdemo", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.StringVar(&o.vxland, "vxland", "bin/vxland", "path of the vxland binary to run on each host")
	fs.IntVar(&o.transferMB, "transfer-mb", 50, "size of the TCP transfer between two hosts' containers, in MB")
	fs.IntVar(&o.pings, "pings", 4, "ICMP echo requests to each destination container")
	fs.StringVar(&o.logLevel, "log-level", "info", "vxland's log level: debug, info, warn or error")
	extra := fs.String("vxland-flags", "", "more flags for every vxland, separated by spaces (e.g. \"--offload none\")")
	fs.BoolVar(&o.showLogs, "show-logs", false, "print the log of every vxland at the end")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vxdemo [flags]\n\n")
		fmt.Fprintf(stderr, "vxdemo builds three hosts and six containers out of network namespaces, runs\n")
		fmt.Fprintf(stderr, "vxland on each host with etcd discovery, shows the overlay at work and removes\n")
		fmt.Fprintf(stderr, "everything again. It needs root and iproute2.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.transferMB < 1 || o.transferMB > 10000:
		return o, fmt.Errorf("--transfer-mb %d: must be 1 to 10000", o.transferMB)
	case o.pings < 1 || o.pings > 100:
		return o, fmt.Errorf("--pings %d: must be 1 to 100", o.pings)
	}
	o.extra = strings.Fields(*extra)
	switch o.logLevel {
	case "debug", "info", "warn", "error":
	default:
		return o, fmt.Errorf("--log-level %q: must be debug, info, warn or error", o.logLevel)
	}
	return o, nil
}

// preflight checks what the demo needs from the system, so that a missing
// piece gets one line instead of a failure half-way through.
func preflight(o *options) error {
	if os.Geteuid() != 0 {
		return errors.New("vxdemo must run as root: it creates network namespaces (try: sudo make demo)")
	}
	exe, err := filepath.Abs(o.vxland)
	if err != nil {
		return fmt.Errorf("--vxland %s: %w", o.vxland, err)
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return fmt.Errorf("--vxland %s: %w (build it with: make build)", o.vxland, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("--vxland %s: not an executable file", o.vxland)
	}
	o.vxland = exe
	return netlab.Check()
}

// run is vxdemo without the process around it: it returns the exit status.
// When ctx ends (Ctrl-C), the demo stops, cleans up and returns
// exitInterrupted.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	if err == nil {
		err = preflight(&opts)
	}
	if err != nil && awaitInterrupt(ctx, err) {
		return exitInterrupted // nothing was built yet
	}
	if err != nil {
		fmt.Fprintf(stderr, "vxdemo: %v\n", err)
		return exitUsage
	}

	d, err := newDemo(opts, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "vxdemo: %v\n", err)
		return exitFailed
	}
	err = d.run(ctx)
	interrupted := err != nil && awaitInterrupt(ctx, err)
	if err != nil && !interrupted {
		fmt.Fprintf(stderr, "\nvxdemo: %v\n", err)
		d.printLogTails(stderr)
	}
	if interrupted {
		fmt.Fprintf(stdout, "\nInterrupted (%v): cleaning up.\n", context.Cause(ctx))
	}
	beforeCleanup()
	cleanupErr := d.cleanup()
	if opts.showLogs {
		d.printLogs(stdout)
	}
	switch {
	case cleanupErr != nil:
		fmt.Fprintf(stderr, "vxdemo: cleaning up: %v\n", cleanupErr)
		return exitFailed
	case interrupted:
		return exitInterrupted
	case err != nil:
		return exitFailed
	}
	return exitOK
}

// awaitInterrupt reports whether ctx was ended by Ctrl-C (SIGINT or
// SIGTERM) when a step failed with err. Ctrl-C reaches the commands vxdemo
// runs too, which are in the terminal's process group, and one may die of
// it before vxdemo's own handler has run: then it waits for the handler.
func awaitInterrupt(ctx context.Context, err error) bool {
	var ee *exec.ExitError
	if ctx.Err() == nil && errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return ctx.Err() != nil
}
