package bench

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// The chart: one panel per kind of measurement, each with its own unit and
// axis; inside a panel a group of bars per metric (1 and 4 streams, p50 and
// p99, …) and within a group one bar per configuration, always in the same
// place and colour. Bars are medians over rounds; whiskers span min–max.

type chartPanel struct {
	title  string
	unit   string
	better string // "higher is better" or "lower is better"
	groups []chartGroup
}

type chartGroup struct {
	label  string
	metric Metric
}

var chartPanels = []chartPanel{
	{"TCP throughput (iperf3)", "Gbit/s", "higher is better", []chartGroup{
		{"1 stream", MetricTCP1}, {"4 streams", MetricTCP4}}},
	{"UDP packets delivered, sender unlimited", "thousand packets/s", "higher is better", []chartGroup{
		{"64 B payload", MetricUDP64Rate}, {"1400 B payload", MetricUDP1400Rate}}},
	{"Round-trip latency (ICMP echo)", "µs", "lower is better", []chartGroup{
		{"p50", MetricRTTP50}, {"p99", MetricRTTP99}}},
	{"CPU time per Gbit during the TCP tests", "CPU-seconds/Gbit", "lower is better", []chartGroup{
		{"whole machine", MetricCPUMachine}, {"vxland processes", MetricCPUVxland}}},
}

// configColor gives each configuration a colour from the Okabe–Ito
// palette, which stays distinguishable for colour-blind readers.
func configColor(c Config) string {
	switch c {
	case Underlay:
		return "#999999"
	case NativeRouting:
		return "#009E73"
	case KernelVXLAN:
		return "#0072B2"
	case Vxland:
		return "#D55E00"
	case VxlandBase:
		return "#CC79A7"
	case VxlandPoll:
		return "#E69F00"
	}
	return "#000000"
}

// Geometry, in SVG user units (pixels).
const (
	svgWidth     = 1000
	panelWidth   = 470
	panelHeight  = 300
	panelTop     = 120 // first panel row
	panelGapY    = 40
	plotLeft     = 70 // inside a panel: room for tick labels and the unit
	plotRight    = 15
	plotTop      = 55 // room for the panel title
	plotBottom   = 40 // room for group labels
	svgFootRoom  = 50
	whiskerWidth = 8
)

// WriteSVG draws res as a chart of grouped bars with min–max whiskers.
func WriteSVG(w io.Writer, res *Results) error {
	bw := bufio.NewWriter(w)
	rows := (len(chartPanels) + 1) / 2
	height := panelTop + rows*(panelHeight+panelGapY) - panelGapY + svgFootRoom
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`+"\n",
		svgWidth, height, svgWidth, height)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	o := res.Options
	p(`<text x="%d" y="32" font-size="22" font-weight="bold" text-anchor="middle">%s</text>`+"\n", svgWidth/2,
		EscapeXML("Encapsulation overhead: underlay, native routing, kernel VXLAN and vxland"))
	sub := fmt.Sprintf("Two hosts in network namespaces, one veth underlay (MTU %d, %s offloads); %s × %d cores, Linux %s",
		o.MTU, o.Mode, res.Machine.CPUModel, res.Machine.Cores, res.Machine.Kernel)
	p(`<text x="%d" y="56" font-size="13" fill="#444444" text-anchor="middle">%s</text>`+"\n", svgWidth/2, EscapeXML(sub))

	configs := make([]Config, 0, len(res.Summary))
	for _, s := range res.Summary {
		configs = append(configs, s.Config)
	}
	writeLegend(p, configs)

	for i, panel := range chartPanels {
		x := 20 + (i%2)*(panelWidth+20)
		y := panelTop + (i/2)*(panelHeight+panelGapY)
		writePanel(p, x, y, panel, res.Summary)
	}

	foot := fmt.Sprintf("Bars: median of %d round(s); whiskers: min–max over rounds. Configurations interleaved, order rotated each round. iperf3 %gs per run.",
		o.Rounds, o.DurationS)
	p(`<text x="%d" y="%d" font-size="12" fill="#444444" text-anchor="middle">%s</text>`+"\n", svgWidth/2, height-20, EscapeXML(foot))
	p("</svg>\n")
	return bw.Flush()
}

func writeLegend(p func(string, ...any), configs []Config) {
	// Item widths follow the labels (about 9 units per character at this
	// font size), so that the gaps between items are even.
	width := func(c Config) int { return 24 + 9*len(c.Label()) + 36 }
	total := 0
	for _, c := range configs {
		total += width(c)
	}
	x := svgWidth/2 - total/2
	for _, c := range configs {
		p(`<rect x="%d" y="76" width="18" height="18" fill="%s"/>`+"\n", x, configColor(c))
		p(`<text x="%d" y="90" font-size="15">%s</text>`+"\n", x+24, EscapeXML(c.Label()))
		x += width(c)
	}
}

func writePanel(p func(string, ...any), x, y int, panel chartPanel, rows []ConfigSummary) {
	plotX, plotY := x+plotLeft, y+plotTop
	plotW := panelWidth - plotLeft - plotRight
	plotH := panelHeight - plotTop - plotBottom

	p(`<g>` + "\n")
	p(`<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#dddddd"/>`+"\n", x, y, panelWidth, panelHeight)
	p(`<text x="%d" y="%d" font-size="15" font-weight="bold">%s</text>`+"\n", x+10, y+20, EscapeXML(panel.title))
	p(`<text x="%d" y="%d" font-size="12" fill="#555555">%s</text>`+"\n", x+10, y+37, EscapeXML(panel.better))

	top := 0.0
	for _, g := range panel.groups {
		for _, r := range rows {
			if s, ok := r.Metrics[g.metric]; ok && s.N > 0 {
				top = math.Max(top, math.Max(s.Max, s.Median))
			}
		}
	}
	step, axisMax := NiceAxis(top)
	scale := func(v float64) float64 { return float64(plotY+plotH) - v/axisMax*float64(plotH) }

	// Grid and tick labels.
	for i := 0; float64(i)*step <= axisMax*(1+1e-9); i++ {
		v := float64(i) * step
		yy := scale(v)
		p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", plotX, yy, plotX+plotW, yy, gridColor(v))
		p(`<text x="%d" y="%.1f" font-size="11" text-anchor="end">%s</text>`+"\n", plotX-6, yy+4, EscapeXML(TickLabel(v, step)))
	}
	// Unit, rotated along the axis.
	cy := plotY + plotH/2
	p(`<text x="%d" y="%d" font-size="12" text-anchor="middle" transform="rotate(-90 %d %d)">%s</text>`+"\n",
		x+16, cy, x+16, cy, EscapeXML(panel.unit))

	groupW := float64(plotW) / float64(len(panel.groups))
	slot := groupW * 0.8 / float64(max(len(rows), 1))
	for gi, g := range panel.groups {
		gx := float64(plotX) + float64(gi)*groupW + groupW*0.1
		p(`<text x="%.1f" y="%d" font-size="13" text-anchor="middle">%s</text>`+"\n",
			float64(plotX)+(float64(gi)+0.5)*groupW, plotY+plotH+20, EscapeXML(g.label))
		for ri, r := range rows {
			s, ok := r.Metrics[g.metric]
			bx := gx + float64(ri)*slot + slot*0.1
			bw := slot * 0.8
			cx := bx + bw/2
			if !ok || s.N == 0 {
				p(`<text x="%.1f" y="%d" font-size="10" fill="#888888" text-anchor="middle">n/a</text>`+"\n", cx, plotY+plotH-4)
				continue
			}
			by := scale(s.Median)
			p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
				bx, by, bw, float64(plotY+plotH)-by, configColor(r.Config),
				EscapeXML(fmt.Sprintf("%s, %s: %s %s", r.Config.Label(), g.label, summaryText(s, ""), panel.unit)))
			labelY := by
			if s.N > 1 && s.Max > s.Min {
				y1, y2 := scale(s.Min), scale(s.Max)
				p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222222" stroke-width="1.5"/>`+"\n", cx, y1, cx, y2)
				for _, yy := range []float64{y1, y2} {
					p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222222" stroke-width="1.5"/>`+"\n",
						cx-whiskerWidth/2, yy, cx+whiskerWidth/2, yy)
				}
				labelY = math.Min(labelY, y2)
			}
			p(`<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%s</text>`+"\n", cx, labelY-4, EscapeXML(FormatValue(s.Median)))
		}
	}
	p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000000"/>`+"\n", plotX, plotY, plotX, plotY+plotH)
	p(`</g>` + "\n")
}

func gridColor(v float64) string {
	if v == 0 {
		return "#000000"
	}
	return "#e5e5e5"
}

// NiceAxis returns a tick step of 1, 2, 2.5 or 5 × 10^k and the axis
// maximum, a multiple of the step at or above top with headroom for value
// labels, using at most six steps.
func NiceAxis(top float64) (step, axisMax float64) {
	if top <= 0 || math.IsNaN(top) || math.IsInf(top, 0) {
		return 1, 1
	}
	top *= 1.12 // room for the label above the tallest whisker
	raw := top / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		step = m * mag
		if top/step <= 6 {
			break
		}
	}
	return step, math.Ceil(top/step-1e-9) * step
}

// TickLabel prints an axis value with as many decimals as the step needs,
// so that all labels of an axis look alike: 0, 2.5, 5, 7.5 or 0.0, 0.2, 0.4.
func TickLabel(v, step float64) string {
	decimals := 0
	for d := step; decimals < 6 && math.Abs(d-math.Round(d)) > 1e-9; d *= 10 {
		decimals++
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// EscapeXML returns s as SVG text content.
func EscapeXML(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
