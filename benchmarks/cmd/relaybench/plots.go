package main

import (
	"fmt"
	"math"
	"strings"
)

// targetColor is each target's color on every plot.
func targetColor(name string) string {
	switch name {
	case targetDirect:
		return "#1f77b4"
	case targetProxy:
		return "#ff7f0e"
	case targetRelayWarm:
		return "#2ca02c"
	default: // relay, relay cold
		return "#d62728"
	}
}

// plotPoints is the most points one latency curve keeps before its tail.
const plotPoints = 400

// curveIndices returns which of n sorted samples a latency curve draws:
// about plotPoints spread evenly, and every sample of the slowest tail
// (up to plotPoints more), where the tail plot needs them.
func curveIndices(n int) []int {
	step := max(1, n/plotPoints)
	tail := min(n/10, plotPoints)
	var idx []int
	for i := 0; i < n; i++ {
		if i%step == 0 || i >= n-tail || i == n-1 {
			idx = append(idx, i)
		}
	}
	return idx
}

// latencySVG plots the latency distribution of each target: the CDF on
// the left, and the tail (the fraction of dials at least that slow, on a
// log scale) on the right, both against latency on a log scale, with the
// 1 ms p99 target marked.
func latencySVG(r *results) []byte {
	const w, h = 1100.0, 585.0
	c := newCanvas(w, h, fmt.Sprintf("Dial latency: sequential dial, 1-byte echo, close (%d dials per target)", r.Settings.LatencyDials))
	lo, hi := math.Inf(1), 1000.0 // keep the 1 ms target in view
	for _, run := range r.Latency {
		if len(run.SamplesUS) > 0 {
			lo = math.Min(lo, run.SamplesUS[0])
			hi = math.Max(hi, run.SamplesUS[len(run.SamplesUS)-1])
		}
	}
	if math.IsInf(lo, 1) {
		lo = 1
	}
	lo, hi = logRange(math.Max(lo, 1), hi)
	xt := logTicks(lo, hi, fmtTickUS)

	cdf := newPanel(90, 70, 520, 430)
	cdf.x.lo, cdf.x.hi, cdf.x.log = lo, hi, true
	cdf.y.lo, cdf.y.hi = 0, 1
	cdf.xticks = xt
	for v := 0.0; v <= 1.0001; v += 0.1 {
		cdf.yticks = append(cdf.yticks, tick{v, fmt.Sprintf("%.0f%%", v*100)})
	}
	cdf.title, cdf.xlabel, cdf.ylabel = "CDF", "latency (log scale)", "dials at or below"
	c.axes(cdf)

	minSurv := 1.0
	for _, run := range r.Latency {
		if n := len(run.SamplesUS); n > 0 {
			minSurv = math.Min(minSurv, 1/float64(n))
		}
	}
	tailLo := math.Pow(10, math.Floor(math.Log10(minSurv)))
	tail := newPanel(640, 70, 1070, 430)
	tail.x.lo, tail.x.hi, tail.x.log = lo, hi, true
	tail.y.lo, tail.y.hi, tail.y.log = tailLo, 1, true
	tail.xticks = xt
	for v := tailLo; v <= 1.0001; v *= 10 {
		tail.yticks = append(tail.yticks, tick{v, tailLabel(v)})
	}
	tail.title, tail.xlabel, tail.ylabel = "Tail", "latency (log scale)", "dials at or above (log)"
	c.axes(tail)

	// Guides: the 1 ms p99 target; p50 and p99 on the CDF; p99 and p999 on
	// the tail.
	for _, p := range []panel{cdf, tail} {
		x := p.x.at(1000)
		c.line(x, p.y.p1, x, p.y.p0, "#777777", 1.5, "6 4")
		c.text(x+4, p.y.p0-6, "p99 target 1 ms", 11, "start", `fill="#555555"`)
	}
	for _, g := range []struct {
		p     panel
		v     float64
		label string
	}{{cdf, 0.5, "p50"}, {cdf, 0.99, "p99"}, {tail, 0.01, "p99"}, {tail, 0.001, "p999"}} {
		if g.v < g.p.y.lo {
			continue
		}
		y := g.p.y.at(g.v)
		c.line(g.p.x.p0, y, g.p.x.p1, y, "#999999", 1, "2 3")
		c.text(g.p.x.p1-4, y-4, g.label, 11, "end", `fill="#555555"`)
	}

	var items []legendItem
	for _, run := range r.Latency {
		n := len(run.SamplesUS)
		if n == 0 {
			continue
		}
		color := targetColor(run.Target)
		var pc, pt [][2]float64
		for _, i := range curveIndices(n) {
			v := run.SamplesUS[i]
			pc = append(pc, [2]float64{cdf.x.at(v), cdf.y.at(float64(i+1) / float64(n))})
			pt = append(pt, [2]float64{tail.x.at(v), tail.y.at(float64(n-i) / float64(n))})
		}
		c.polyline(pc, color, 2, "")
		c.polyline(pt, color, 2, "")
		name := run.Target
		if run.WarmPool > 0 {
			name += fmt.Sprintf(" (K=%d)", run.WarmPool)
		}
		items = append(items, legendItem{color: color, label: fmt.Sprintf("%s: p50 %s, p99 %s, p999 %s", name, fmtUS(run.P50US), fmtUS(run.P99US), fmtUS(run.P999US))})
	}
	c.legendGrid(cdf.x.p0, cdf.y.p0+62, 490, 2, items)
	c.footer(r)
	return c.bytes()
}

// tailLabel labels a fraction on the tail axis: 100%, 10%, 1%, 0.1%, ….
func tailLabel(v float64) string {
	s := fmt.Sprintf("%.4f", v*100)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "%"
}

// footer writes the two lines at the foot of each plot: the machine and
// time, then the command.
func (c *canvas) footer(r *results) {
	m := r.Machine
	c.text(c.w/2, c.h-26, fmt.Sprintf("%s/%s, %d CPUs, %s, %s · %s", m.GOOS, m.GOARCH, m.NumCPU, m.GoVersion, m.Kernel,
		r.Timestamp.Format("2006-01-02 15:04 UTC")), 11, "middle", `fill="#666666"`)
	c.text(c.w/2, c.h-10, r.Command, 11, "middle", `fill="#666666"`)
}

// rateSVG plots dials per second against concurrency for each target,
// with the relay's target (half of direct) dashed.
func rateSVG(r *results) []byte {
	const w, h = 900.0, 565.0
	c := newCanvas(w, h, fmt.Sprintf("Dial rate: concurrent loops of dial, 1-byte echo, close (%gs each)", r.Settings.RateSeconds))
	conc := r.Settings.Concurrency
	top := 0.0
	for _, s := range r.Rate {
		top = math.Max(top, s.PerSecond)
	}
	p := newPanel(100, 70, 860, 440)
	p.x.log = true
	p.x.lo, p.x.hi = float64(conc[0])/1.5, float64(conc[len(conc)-1])*1.5
	for _, cc := range conc {
		p.xticks = append(p.xticks, tick{float64(cc), fmt.Sprint(cc)})
	}
	p.yticks, p.y.hi = linearTicks(top*1.12, 6, func(v float64) string { return fmtCount(int64(v)) })
	p.title, p.xlabel, p.ylabel = "", "concurrent loops (log scale)", "dials per second"
	c.axes(p)

	var items []legendItem
	series := func(name string, f func(rateStats) float64, color, dash string, dots bool) {
		var pts [][2]float64
		for _, cc := range conc {
			if s, ok := rateAt(r.Rate, name, cc); ok {
				pts = append(pts, [2]float64{p.x.at(float64(cc)), p.y.at(f(s))})
			}
		}
		c.polyline(pts, color, 2.5, dash)
		if dots {
			for _, pt := range pts {
				c.circle(pt[0], pt[1], 4, color)
			}
		}
	}
	series(targetDirect, func(s rateStats) float64 { return s.PerSecond * 0.5 }, "#777777", "6 4", false)
	for _, name := range []string{targetDirect, targetProxy, targetRelay} {
		series(name, func(s rateStats) float64 { return s.PerSecond }, targetColor(name), "", true)
		items = append(items, legendItem{color: targetColor(name), label: name})
	}
	items = append(items, legendItem{color: "#777777", dash: "6 4", label: "relay target: 0.5× direct"})
	// The relay's points carry their figure and ratio to direct.
	for _, cc := range conc {
		s, ok := rateAt(r.Rate, targetRelay, cc)
		d, okd := rateAt(r.Rate, targetDirect, cc)
		if !ok || !okd || d.PerSecond == 0 {
			continue
		}
		c.text(p.x.at(float64(cc)), p.y.at(s.PerSecond)-10, fmt.Sprintf("%s (%.2f×)", fmtCount(int64(s.PerSecond)), s.PerSecond/d.PerSecond),
			11, "middle", fmt.Sprintf(`fill="%s"`, targetColor(targetRelay)))
	}
	c.legendGrid(p.x.p0, p.y.p0+62, 190, 4, items)
	c.footer(r)
	return c.bytes()
}

// bulkSVG plots throughput as grouped bars: one group per stream count,
// one bar per target, with the relay's ratio to the proxy on its bar and
// its target (0.95× the proxy) marked.
func bulkSVG(r *results) []byte {
	const w, h = 860.0, 545.0
	c := newCanvas(w, h, fmt.Sprintf("Bulk throughput into a counting sink (%s per run)", fmtMiB(r.Settings.BulkBytesPerRun)))
	top := 0.0
	for _, b := range r.Bulk {
		top = math.Max(top, b.MedianMBps)
	}
	p := newPanel(100, 70, 820, 420)
	p.x.lo, p.x.hi = 0, float64(len(bulkStreams))
	p.yticks, p.y.hi = linearTicks(top*1.15, 6, func(v float64) string { return fmtCount(int64(v)) })
	p.ylabel = "MB/s (median)"
	c.axes(p)
	names := []string{targetDirect, targetProxy, targetRelay}
	group := (p.x.p1 - p.x.p0) / float64(len(bulkStreams))
	bar := group / (float64(len(names)) + 1.5)
	for gi, streams := range bulkStreams {
		g0 := p.x.p0 + float64(gi)*group + bar*0.75
		c.text(p.x.p0+(float64(gi)+0.5)*group, p.y.p0+20, fmt.Sprintf("%d stream%s", streams, plural(streams)), 13, "middle", "")
		proxy := bulkAt(r.Bulk, targetProxy, streams)
		for bi, name := range names {
			b := bulkAt(r.Bulk, name, streams)
			x := g0 + float64(bi)*bar
			y := p.y.at(b.MedianMBps)
			c.rect(x+2, y, bar-4, p.y.p0-y, targetColor(name), "")
			label := fmtCount(int64(b.MedianMBps))
			if name == targetRelay && proxy.MedianMBps > 0 {
				label += fmt.Sprintf(" (%.2f×)", b.MedianMBps/proxy.MedianMBps)
				ty := p.y.at(0.95 * proxy.MedianMBps)
				c.line(x-2, ty, x+bar+2, ty, "#333333", 2, "5 3")
			}
			c.text(x+bar/2, y-6, label, 11, "middle", "")
		}
	}
	items := []legendItem{}
	for _, name := range names {
		items = append(items, legendItem{color: targetColor(name), label: name})
	}
	items = append(items, legendItem{color: "#333333", dash: "5 3", label: "relay target: 0.95× proxy"})
	c.legendGrid(p.x.p0, p.y.p0+52, 170, 4, items)
	c.footer(r)
	return c.bytes()
}

// mailboxColor is each swept actor kind's color.
func mailboxColor(kind string) string {
	switch kind {
	case "directory":
		return "#1f77b4"
	case "pending":
		return "#9467bd"
	case "listener":
		return "#2ca02c"
	case "pair":
		return "#ff7f0e"
	default:
		return "#888888"
	}
}

// mailboxSVG plots the sweep as horizontal bars: the dial rate on the
// left, the p99 on the right, one row per setting.
func mailboxSVG(r *results) []byte {
	const w = 1000.0
	rowH := 26.0
	h := 165 + rowH*float64(len(r.Mailbox))
	c := newCanvas(w, h, fmt.Sprintf("Mailbox sweep: dial rate (32 loops) and p99 (%d sequential dials), a fresh relay each", r.Settings.MailboxDials))
	topRate, topP99 := 0.0, 0.0
	for _, m := range r.Mailbox {
		topRate = math.Max(topRate, m.Rate.PerSecond)
		topP99 = math.Max(topP99, m.Latency.P99US)
	}
	bottom := 70 + rowH*float64(len(r.Mailbox))
	left := newPanel(230, 70, 580, bottom)
	left.xticks, left.x.hi = linearTicks(topRate*1.2, 4, func(v float64) string { return fmtCount(int64(v)) })
	left.xlabel, left.title = "dials per second", "rate"
	right := newPanel(640, 70, 970, bottom)
	right.xticks, right.x.hi = linearTicks(topP99*1.25, 4, fmtTickUS)
	right.xlabel, right.title = "p99", "p99 latency"
	left.y.lo, left.y.hi = 0, float64(len(r.Mailbox))
	right.y = left.y
	c.axes(left)
	c.axes(right)
	for i, m := range r.Mailbox {
		y := left.y.p1 + rowH*float64(i)
		c.text(left.x.p0-8, y+rowH/2+4, m.name(), 12, "end", "")
		color := mailboxColor(m.Kind)
		xr := left.x.at(m.Rate.PerSecond)
		c.rect(left.x.p0, y+4, xr-left.x.p0, rowH-8, color, "")
		c.text(xr+4, y+rowH/2+4, fmt.Sprintf("%s (%.2f×)", fmtCount(int64(m.Rate.PerSecond)), m.RateVsDefaults), 11, "start", "")
		xp := right.x.at(m.Latency.P99US)
		c.rect(right.x.p0, y+4, xp-right.x.p0, rowH-8, color, "")
		c.text(xp+4, y+rowH/2+4, fmtUS(m.Latency.P99US), 11, "start", "")
	}
	c.footer(r)
	return c.bytes()
}
