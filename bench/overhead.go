package bench

import "github.com/vxland/vxland/encap"

// innerTCPHeaders is what each full-size TCP/IPv4 segment spends on headers
// inside the MTU: IPv4 (20), TCP (20) and the timestamp option Linux sends
// by default (12).
const innerTCPHeaders = 20 + 20 + 12

// EfficiencyMTUs are the underlay MTUs the efficiency is computed for.
var EfficiencyMTUs = []int{1500, 9000}

// Overhead is the computed, not measured, cost of a configuration's
// encapsulation.
type Overhead struct {
	Config         Config          `json:"config"`
	Family         string          `json:"underlay_family"` // "IPv4" or "IPv6"
	BytesPerPacket int             `json:"bytes_per_packet"`
	Efficiency     []MTUEfficiency `json:"efficiency"`
}

// MTUEfficiency is the goodput efficiency at one underlay MTU: the TCP
// payload a full-size packet carries through the configuration, divided by
// what it carries over the bare underlay at the same MTU. It is the ceiling
// of the configuration's throughput relative to the underlay when the
// packet rate is what limits.
type MTUEfficiency struct {
	MTU         int     `json:"mtu"`
	Payload     int     `json:"tcp_payload_bytes"`
	BarePayload int     `json:"underlay_tcp_payload_bytes"`
	Efficiency  float64 `json:"efficiency"`
	InnerMTU    int     `json:"inner_mtu"`
}

// ComputeOverhead returns the overhead of c on an underlay of family
// ("IPv4" or "IPv6"); only overlay configurations pay any.
func ComputeOverhead(c Config, family string) Overhead {
	o := Overhead{Config: c, Family: family}
	if c.Overlay() {
		o.BytesPerPacket = encap.OverheadIPv4
		if family == "IPv6" {
			o.BytesPerPacket = encap.OverheadIPv6
		}
	}
	for _, mtu := range EfficiencyMTUs {
		inner := mtu - o.BytesPerPacket
		payload := inner - innerTCPHeaders
		bare := mtu - innerTCPHeaders
		o.Efficiency = append(o.Efficiency, MTUEfficiency{
			MTU:         mtu,
			Payload:     payload,
			BarePayload: bare,
			Efficiency:  float64(payload) / float64(bare),
			InnerMTU:    inner,
		})
	}
	return o
}

// overheads returns the overhead of each configuration on IPv4 (what the
// bench measures), and of the overlays on IPv6 as well.
func overheads(configs []Config) []Overhead {
	var out []Overhead
	for _, c := range configs {
		out = append(out, ComputeOverhead(c, "IPv4"))
	}
	for _, c := range configs {
		if c.Overlay() {
			out = append(out, ComputeOverhead(c, "IPv6"))
		}
	}
	return out
}
