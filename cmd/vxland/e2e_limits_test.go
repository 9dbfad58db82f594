package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/control"
	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
)

// A hostile container on h1 broadcasts from 20,000 source MACs while two
// other containers move 10 MB over TCP: h1 floods no more than its flood
// rate, h2 learns no more than --fdb-max, both count the excess, the
// transfer arrives intact, and neither daemon grows past 100 MB, a
// `show fdb` of the full table included.
func TestFloodOfSourceMACsIsBounded(t *testing.T) {
	const (
		macs   = 20000
		fdbMax = 1000
		maxRSS = 100 << 20
	)
	tp := newTopo(t, 45)
	h1, h2 := tp.addHost(), tp.addHost()
	tp.startAll("--fdb-max", strconv.Itoa(fdbMax))
	hostile, c1, c2 := tp.addContainer(h1), tp.addContainer(h1), tp.addContainer(h2)
	ctx := testCtx(t, 60*time.Second)
	if err := netlab.Reach(ctx, c1.ns, c2.ns, c2.ip); err != nil {
		t.Fatal(err)
	}

	frames := make([][]byte, macs)
	for i := range frames {
		f := make([]byte, 60)
		copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		copy(f[6:12], []byte{0x02, 0xee, 0})
		f[9], f[10], f[11] = byte(i>>16), byte(i>>8), byte(i)
		binary.BigEndian.PutUint16(f[12:14], 0x88b5) // IEEE 802 local experimental
		frames[i] = f
	}
	transfer := netlab.StartTCPStream(ctx, c1.ns, c2.ns, c2.ip+":5001", tenMB, 0)
	if err := hostile.ns.SendFrames("eth0", frames); err != nil {
		t.Fatal(err)
	}
	if err := transfer.Wait(); err != nil {
		t.Fatalf("the transfer beside the flood: %v", err)
	}

	// The flood's frames reach h2 in well under the time the transfer
	// took; wait for h1's flood counters to settle all the same.
	s1 := tp.stats(h1)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		if next := tp.stats(h1); next.TxFlooded == s1.TxFlooded {
			break
		} else {
			s1 = next
		}
	}
	s2 := tp.stats(h2)
	if s1.Drops["flood_rate_total"] == 0 {
		t.Errorf("h1 flooded %d frames and dropped none for the flood rate: %v", s1.TxFlooded, nonZero(s1.Drops))
	}
	if s1.TxFlooded >= macs {
		t.Errorf("h1 flooded %d frames of a burst of %d from distinct sources", s1.TxFlooded, macs)
	}
	var f control.FDBState
	tp.query(h2, &f, "show", "fdb")
	learned := 0
	for _, e := range f.Entries {
		if e.Origin == fdb.OriginLearned.String() {
			learned++
		}
	}
	if learned > fdbMax {
		t.Errorf("h2 learned %d MACs, more than --fdb-max %d", learned, fdbMax)
	}
	if s2.Drops["fdb_full"] == 0 || learned < fdbMax {
		t.Errorf("h2 learned %d MACs and counted %d as fdb_full; the flood should have filled the FDB", learned, s2.Drops["fdb_full"])
	}
	t.Logf("h1 flooded %d, dropped %d (total) and %d (per source); h2 learned %d, refused %d",
		s1.TxFlooded, s1.Drops["flood_rate_total"], s1.Drops["flood_rate_source"], learned, s2.Drops["fdb_full"])

	if lines := strings.Count(tp.text(h2, "show", "fdb"), "\n"); lines < fdbMax {
		t.Errorf("show fdb printed %d lines, want at least %d", lines, fdbMax)
	}
	for _, h := range []*testHost{h1, h2} {
		rss, hwm := vmRSS(t, h.proc.Pid())
		t.Logf("%s: VmRSS %d KB, VmHWM %d KB", h.ns, rss>>10, hwm>>10)
		if hwm > maxRSS {
			t.Errorf("vxland on %s peaked at %d MB resident, want under %d MB", h.ns, hwm>>20, maxRSS>>20)
		}
	}
}

// vmRSS returns the resident set size of process pid and its peak
// (VmRSS and VmHWM in /proc/PID/status), in bytes.
func vmRSS(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/status: %q: %v", pid, l, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		t.Fatalf("/proc/%d/status has no VmRSS or VmHWM", pid)
	}
	return rss, hwm
}
