package main

import (
	"strings"
	"testing"

	"github.com/vxland/vxland/overlay"
)

func TestPrintStatsShowsQueues(t *testing.T) {
	s := overlay.Stats{RxPackets: 30, TxPackets: 12, Drops: map[string]uint64{"short": 1},
		Queues: []overlay.QueueStats{{RxPackets: 10, TxPackets: 2}, {RxPackets: 20, TxPackets: 10}}}
	var b strings.Builder
	printStats(&b, s)
	for _, want := range []string{"queue 0", "10 rx packets", "queue 1", "20 rx packets", "10 tx packets", "drop short"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
	// One queue says nothing the totals do not.
	s.Queues = s.Queues[:1]
	b.Reset()
	printStats(&b, s)
	if strings.Contains(b.String(), "queue") {
		t.Errorf("a single queue is listed:\n%s", b.String())
	}
}
