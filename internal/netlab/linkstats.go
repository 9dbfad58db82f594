package netlab

import (
	"encoding/json"
	"fmt"
)

// LinkStats are an interface's counters as the kernel keeps them (ip -s
// link): each direction's packets, bytes, errors and drops.
type LinkStats struct {
	RX, TX LinkCounters
}

// LinkCounters are one direction's counters of an interface.
type LinkCounters struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Errors  uint64 `json:"errors"`
	Dropped uint64 `json:"dropped"`
}

// LinkStats returns the counters of interface ifname in n.
func (n *NS) LinkStats(ifname string) (LinkStats, error) {
	out, err := n.Run("ip", "-j", "-s", "link", "show", "dev", ifname)
	if err != nil {
		return LinkStats{}, fmt.Errorf("netlab: %w", err)
	}
	var links []struct {
		Stats struct {
			RX LinkCounters `json:"rx"`
			TX LinkCounters `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return LinkStats{}, fmt.Errorf("netlab: counters of %s in %s: cannot parse %q: %v", ifname, n.Name, out, err)
	}
	return LinkStats{RX: links[0].Stats.RX, TX: links[0].Stats.TX}, nil
}
