package discovery

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vxland/vxland/overlay/fdb"
)

// TestConvergenceMeasured measures, without asserting on it, how long it
// takes from a new host's registration (its agent starting) until another
// host's data plane has the new host in its flood list and its container
// MAC in the FDB. Run with -v to read the figures.
func TestConvergenceMeasured(t *testing.T) {
	cli := startEtcd(t)
	observer := newHost(t, cli, "192.0.2.1")
	observer.start()
	observer.waitSynced()

	const joins = 10
	var flood, mac []time.Duration
	for i := range joins {
		h := newHost(t, cli, fmt.Sprintf("192.0.2.%d", 10+i))
		m := fdb.MAC{0x02, 0, 0, 0, 0x10, byte(i)}
		h.local.Observe(m, netip.MustParseAddr(fmt.Sprintf("10.200.0.%d", 10+i)))
		start := time.Now()
		h.start()
		var sawFlood bool
		deadline := start.Add(waitLimit)
		for {
			if !sawFlood && slices.Contains(floodAddrs(observer.fdb), h.vtep()) {
				sawFlood = true
				flood = append(flood, time.Since(start))
			}
			if vtep, ok := observer.fdb.Lookup(testVNI, m); ok && vtep.AddrPort() == h.vtep() {
				mac = append(mac, time.Since(start))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("join %d: not converged within %s", i, waitLimit)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	slices.Sort(flood)
	slices.Sort(mac)
	t.Logf("registration -> other host's flood list: median %s, max %s over %d joins",
		flood[len(flood)/2].Round(time.Microsecond), flood[len(flood)-1].Round(time.Microsecond), len(flood))
	t.Logf("registration -> other host's FDB has the new host's MAC: median %s, max %s",
		mac[len(mac)/2].Round(time.Microsecond), mac[len(mac)-1].Round(time.Microsecond))
}
