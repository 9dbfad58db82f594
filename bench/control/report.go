package control

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/vxland/vxland/bench"
)

// Markdown returns the results as a table, one column per size.
func Markdown(results []*Result) string {
	var b strings.Builder
	b.WriteString("| |")
	for _, r := range results {
		fmt.Fprintf(&b, " %d hosts × %d MACs |", r.Hosts, r.MACs)
	}
	b.WriteString("\n|---|")
	for range results {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	row := func(name string, cell func(*Result) string) {
		fmt.Fprintf(&b, "| %s |", name)
		for _, r := range results {
			fmt.Fprintf(&b, " %s |", cell(r))
		}
		b.WriteString("\n")
	}
	row("registration → every host (p50 / p99 / max)", func(r *Result) string { return latencyCell(r.Registration) })
	row("MAC publication → every host (p50 / p99 / max)", func(r *Result) string { return latencyCell(r.Publication) })
	row("publication: etcd writes; mean write round trip", func(r *Result) string {
		return fmt.Sprintf("%d; %s", r.PublicationWrites, ms(r.PublicationWrite))
	})
	row("MAC move under churn → every host (p50 / p99 / max)", func(r *Result) string { return latencyCell(r.Churn) })
	row("MAC moves; etcd writes per move; keys written per move", func(r *Result) string {
		return fmt.Sprintf("%d; %.2f; %.2f", r.Moves, r.WritesPerMove, r.KeysPerMove)
	})
	row("compaction: re-lists; time until all listed; bytes sent", func(r *Result) string {
		s := fmt.Sprintf("%d; %s; %s", r.Relists, ms(r.RelistTime), bench.FormatBytes(uint64(r.RelistBytes)))
		if r.RelistsBehind > 0 {
			s += fmt.Sprintf(" (%d agents had not re-listed)", r.RelistsBehind)
		}
		return s
	})
	row("compaction: agents unequal to etcd after", func(r *Result) string { return fmt.Sprint(len(r.CompactionMismatch)) })
	row("leader killed: write accepted; every agent has it; every agent equals etcd", func(r *Result) string {
		return fmt.Sprintf("%s; %s; %s", ms(r.LeaderWrite), ms(r.LeaderResume), ms(r.LeaderEqual))
	})
	row("leader killed: lists (most in one second); agents unequal to etcd", func(r *Result) string {
		return fmt.Sprintf("%d (%d); %d", r.LeaderLists, r.LeaderListsPerSecond, len(r.LeaderMismatch))
	})
	if slices.ContainsFunc(results, func(r *Result) bool { return r.Real != nil }) {
		realRows(row)
	}
	row("etcd: agents' requests/s; database; watchers", func(r *Result) string {
		return fmt.Sprintf("%.0f; %s; %d", r.RequestsPerSecond, bench.FormatBytes(uint64(r.DBSize)), r.Watchers)
	})
	row("run time", func(r *Result) string { return r.Elapsed.Round(time.Second).String() })
	if slices.ContainsFunc(results, func(r *Result) bool { return r.Stopped != "" }) {
		row("stopped (later figures missing)", func(r *Result) string { return r.Stopped })
	}
	return b.String()
}

// realRows are the rows of the real vxland, for runs with Options.Vxland.
func realRows(row func(string, func(*Result) string)) {
	cell := func(f func(*RealHost) string) func(*Result) string {
		return func(r *Result) string {
			if r.Real == nil {
				return "–"
			}
			return f(r.Real)
		}
	}
	row("real vxland: remote MACs in etcd; start until its FDB held them all", cell(func(h *RealHost) string {
		return fmt.Sprintf("%d; %s", h.RemoteMACs, ms(h.Join))
	}))
	row("real vxland: MAC published last → in its FDB; ping through it to that MAC (received, avg)", cell(func(h *RealHost) string {
		return fmt.Sprintf("%s; %d of %d, %s", ms(h.LastMAC), h.Ping.Received(), h.Ping.Sent, ms(h.Ping.Avg()))
	}))
	row("real vxland: VmRSS after join (private + executable's pages); VmHWM at the end; Go heap in use", cell(func(h *RealHost) string {
		return fmt.Sprintf("%s (%s + %s); %s; %s", bench.FormatBytes(uint64(h.RSS)), bench.FormatBytes(uint64(h.Anon)), bench.FormatBytes(uint64(h.File)),
			bench.FormatBytes(uint64(h.HWM)), bench.FormatBytes(uint64(h.HeapInuse)))
	}))
	row("real vxland: compaction → re-listed past it; FDB equals etcd after", cell(func(h *RealHost) string {
		relist := ms(h.Relist)
		if h.Relist == 0 {
			relist = "not within the wait"
		}
		equal := "yes"
		if h.FDBMismatch != "" {
			equal = "no: " + h.FDBMismatch
		}
		return relist + "; " + equal
	}))
}

func latencyCell(l Latency) string {
	s := fmt.Sprintf("%s / %s / %s", ms(l.P50), ms(l.P99), ms(l.Max))
	if l.Missing > 0 {
		behind := fmt.Sprint(l.Behind)
		if l.Behind < 0 {
			behind = "? (etcd did not answer the list)"
		}
		s += fmt.Sprintf(" (%d of %d events not converged: %d of %d receipts, %s hosts behind)",
			l.Missing, l.N+l.Missing, l.Receipts, l.Want, behind)
	}
	return s
}

func ms(d time.Duration) string {
	return bench.FormatValue(float64(d)/float64(time.Millisecond)) + " ms"
}

// The chart: one panel per kind of convergence, a group of bars per size
// (p50, p99, max), the 100 ms target as a line.
const (
	chartWidth  = 1000
	chartHeight = 420
	panelW      = 310
	panelH      = 300
	panelY      = 80
	plotL       = 55
	plotB       = 40
	plotT       = 40
)

var percentileColors = []struct {
	label, color string
	value        func(Latency) time.Duration
}{
	{"p50", "#56B4E9", func(l Latency) time.Duration { return l.P50 }},
	{"p99", "#0072B2", func(l Latency) time.Duration { return l.P99 }},
	{"max", "#D55E00", func(l Latency) time.Duration { return l.Max }},
}

// WriteSVG draws the convergence times of results, subtitled with the
// machine they were measured on.
func WriteSVG(w io.Writer, results []*Result, m bench.Machine) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	p(`<text x="%d" y="28" font-size="20" font-weight="bold" text-anchor="middle">%s</text>`+"\n", chartWidth/2,
		bench.EscapeXML("Control plane: until every other host has the change (three etcd members)"))
	p(`<text x="%d" y="50" font-size="13" fill="#444444" text-anchor="middle">%s</text>`+"\n", chartWidth/2,
		bench.EscapeXML(fmt.Sprintf("%s × %d cores, Linux %s, %s; dashed: the 100 ms target", m.CPUModel, m.Cores, m.Kernel, m.GoVersion)))
	for i, c := range percentileColors {
		x := chartWidth/2 - 120 + i*80
		p(`<rect x="%d" y="60" width="14" height="14" fill="%s"/><text x="%d" y="72" font-size="13">%s</text>`+"\n", x, c.color, x+20, c.label)
	}
	panels := []struct {
		title string
		get   func(*Result) Latency
	}{
		{"registration", func(r *Result) Latency { return r.Registration }},
		{"MAC publication", func(r *Result) Latency { return r.Publication }},
		{"MAC move under churn", func(r *Result) Latency { return r.Churn }},
	}
	for i, panel := range panels {
		writeLatencyPanel(p, 20+i*(panelW+15), panelY, panel.title, results, panel.get)
	}
	p("</svg>\n")
	return bw.Flush()
}

func writeLatencyPanel(p func(string, ...any), x, y int, title string, results []*Result, get func(*Result) Latency) {
	plotX, plotY := x+plotL, y+plotT
	plotW, plotH := panelW-plotL-10, panelH-plotT-plotB
	p(`<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#dddddd"/>`+"\n", x, y, panelW, panelH)
	p(`<text x="%d" y="%d" font-size="15" font-weight="bold">%s</text>`+"\n", x+10, y+22, bench.EscapeXML(title))
	top := 100.0 // the target is always on the axis
	for _, r := range results {
		top = max(top, float64(get(r).Max)/float64(time.Millisecond))
	}
	step, axisMax := bench.NiceAxis(top)
	scale := func(v float64) float64 { return float64(plotY+plotH) - v/axisMax*float64(plotH) }
	for i := 0; float64(i)*step <= axisMax*(1+1e-9); i++ {
		v := float64(i) * step
		p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>`+"\n", plotX, scale(v), plotX+plotW, scale(v))
		p(`<text x="%d" y="%.1f" font-size="11" text-anchor="end">%s</text>`+"\n", plotX-6, scale(v)+4, bench.TickLabel(v, step))
	}
	cy := plotY + plotH/2
	p(`<text x="%d" y="%d" font-size="12" text-anchor="middle" transform="rotate(-90 %d %d)">ms</text>`+"\n", x+14, cy, x+14, cy)
	groupW := float64(plotW) / float64(max(len(results), 1))
	barW := groupW * 0.8 / float64(len(percentileColors))
	for gi, r := range results {
		gx := float64(plotX) + float64(gi)*groupW + groupW*0.1
		p(`<text x="%.1f" y="%d" font-size="12" text-anchor="middle">%d hosts</text>`+"\n", gx+groupW*0.4, plotY+plotH+18, r.Hosts)
		l := get(r)
		for ci, c := range percentileColors {
			v := float64(c.value(l)) / float64(time.Millisecond)
			bx := gx + float64(ci)*barW
			p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
				bx, scale(v), barW*0.9, float64(plotY+plotH)-scale(v), c.color,
				bench.EscapeXML(fmt.Sprintf("%d hosts, %s %s: %s", r.Hosts, title, c.label, ms(c.value(l)))))
		}
	}
	p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#000000" stroke-dasharray="6 4"/>`+"\n", plotX, scale(100), plotX+plotW, scale(100))
	p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000000"/>`+"\n", plotX, plotY+plotH, plotX+plotW, plotY+plotH)
}
