package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/vxland/vxland/internal/control"
)

const fdbUsage = `Usage: vxland fdb add MAC dst IP [flags]
       vxland fdb del MAC [dst IP] [flags]

Adds or removes a static FDB entry of a running daemon, like
bridge fdb add MAC dev vxlan0 dst IP self permanent: frames to MAC go to
the VTEP IP, whatever was learned or is in etcd for it, and packets from
that VTEP are accepted. The MAC 00:00:00:00:00:00 adds IP to the flood
list (broadcast, multicast, unknown unicast); del then needs its dst.
Entries are kept in the daemon's --state-dir and come back when it
restarts; vxland show fdb lists them as permanent (origin static).
`

// fdbCommand adds or removes a static FDB entry: `vxland fdb add|del`.
func fdbCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	const name = "vxland fdb"
	c, code := parseClient(name, fdbUsage, args, getenv, stdout, stderr)
	if c == nil {
		return code
	}
	a := c.args
	var op, mac, dst string
	switch {
	case len(a) == 4 && a[0] == "add" && a[2] == "dst":
		op, mac, dst = a[0], a[1], a[3]
	case len(a) == 2 && a[0] == "del":
		op, mac = a[0], a[1]
	case len(a) == 4 && a[0] == "del" && a[2] == "dst":
		op, mac, dst = a[0], a[1], a[3]
	default:
		return usageErr(stderr, name, "want add MAC dst IP, or del MAC [dst IP]")
	}
	m, _, err := parseStaticEntry(mac, dst)
	if err == nil && op == "del" && m.IsZero() && dst == "" {
		err = fmt.Errorf("the flood entry %s needs dst", m)
	}
	if err != nil {
		return usageErr(stderr, name, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var ok struct{ OK bool }
	if op == "add" {
		err = control.Do(ctx, c.sock, http.MethodPost, c.endpoint("/fdb"), staticEntryRequest{MAC: mac, Dst: dst}, &ok)
	} else {
		q := url.Values{"mac": {mac}}
		if dst != "" {
			q.Set("dst", dst)
		}
		err = control.Do(ctx, c.sock, http.MethodDelete, c.endpoint("/fdb?"+q.Encode()), nil, &ok)
	}
	if err != nil {
		return failed(stderr, name, err)
	}
	return 0
}

// staticEntryRequest is the body of POST /fdb.
type staticEntryRequest struct {
	MAC string `json:"mac"`
	Dst string `json:"dst"`
}
