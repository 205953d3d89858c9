package main

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// canvas builds one SVG document by hand: shapes and text in pixel
// coordinates, y growing downwards.
type canvas struct {
	b    strings.Builder
	w, h float64
}

// svgFont is the font of every text on the plots.
const svgFont = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"

// newCanvas starts a w×h document on a white background with title
// centred at the top.
func newCanvas(w, h float64, title string) *canvas {
	c := &canvas{w: w, h: h}
	fmt.Fprintf(&c.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="%s">`+"\n",
		w, h, w, h, html.EscapeString(svgFont))
	fmt.Fprintf(&c.b, `<title>%s</title>`+"\n", html.EscapeString(title))
	c.rect(0, 0, w, h, "#ffffff", "")
	c.text(w/2, 24, title, 17, "middle", `font-weight="600"`)
	return c
}

// bytes ends the document and returns it.
func (c *canvas) bytes() []byte {
	c.b.WriteString("</svg>\n")
	return []byte(c.b.String())
}

// num formats a coordinate with at most one decimal.
func num(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

// line draws a segment; dash is a stroke-dasharray or "".
func (c *canvas) line(x1, y1, x2, y2 float64, stroke string, width float64, dash string) {
	fmt.Fprintf(&c.b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="%g"%s/>`+"\n",
		num(x1), num(y1), num(x2), num(y2), stroke, width, dashAttr(dash))
}

// polyline draws a path through pts.
func (c *canvas) polyline(pts [][2]float64, stroke string, width float64, dash string) {
	if len(pts) == 0 {
		return
	}
	c.b.WriteString(`<polyline fill="none" stroke-linejoin="round" points="`)
	for i, p := range pts {
		if i > 0 {
			c.b.WriteByte(' ')
		}
		c.b.WriteString(num(p[0]))
		c.b.WriteByte(',')
		c.b.WriteString(num(p[1]))
	}
	fmt.Fprintf(&c.b, `" stroke="%s" stroke-width="%g"%s/>`+"\n", stroke, width, dashAttr(dash))
}

// rect draws a filled rectangle; stroke may be "".
func (c *canvas) rect(x, y, w, h float64, fill, stroke string) {
	st := ""
	if stroke != "" {
		st = fmt.Sprintf(` stroke="%s"`, stroke)
	}
	fmt.Fprintf(&c.b, `<rect x="%s" y="%s" width="%s" height="%s" fill="%s"%s/>`+"\n", num(x), num(y), num(w), num(h), fill, st)
}

// circle draws a filled dot.
func (c *canvas) circle(x, y, r float64, fill string) {
	fmt.Fprintf(&c.b, `<circle cx="%s" cy="%s" r="%g" fill="%s" stroke="#ffffff" stroke-width="1"/>`+"\n", num(x), num(y), r, fill)
}

// text draws s at (x, y), anchored "start", "middle" or "end"; extra holds
// further attributes, a fill among them to change the dark grey default.
func (c *canvas) text(x, y float64, s string, size float64, anchor, extra string) {
	if !strings.Contains(extra, "fill=") {
		extra += ` fill="#222222"`
	}
	if extra != "" && extra[0] != ' ' {
		extra = " " + extra
	}
	fmt.Fprintf(&c.b, `<text x="%s" y="%s" font-size="%g" text-anchor="%s"%s>%s</text>`+"\n",
		num(x), num(y), size, anchor, extra, html.EscapeString(s))
}

// dashAttr returns the stroke-dasharray attribute for dash, or "".
func dashAttr(dash string) string {
	if dash == "" {
		return ""
	}
	return fmt.Sprintf(` stroke-dasharray="%s"`, dash)
}

// scale maps data values in [lo, hi] to pixels in [p0, p1], linearly or
// by logarithm.
type scale struct {
	lo, hi float64
	p0, p1 float64
	log    bool
}

// at returns the pixel of v, clamped to the scale's range.
func (s scale) at(v float64) float64 {
	var f float64
	if s.log {
		v = math.Max(v, s.lo)
		f = (math.Log10(v) - math.Log10(s.lo)) / (math.Log10(s.hi) - math.Log10(s.lo))
	} else {
		f = (v - s.lo) / (s.hi - s.lo)
	}
	f = math.Max(0, math.Min(1, f))
	return s.p0 + f*(s.p1-s.p0)
}

// tick is one labelled mark on an axis; an empty label marks a minor
// grid line.
type tick struct {
	v     float64
	label string
}

// panel is one set of axes: its plot area in pixels, its scales and
// ticks, and its labels.
type panel struct {
	x, y                  scale
	xticks, yticks        []tick
	title, xlabel, ylabel string
}

// newPanel returns a panel whose plot area is the rectangle (left, top)
// to (right, bottom) in pixels.
func newPanel(left, top, right, bottom float64) panel {
	return panel{x: scale{p0: left, p1: right}, y: scale{p0: bottom, p1: top}}
}

// axes draws the panel's grid, frame, tick labels and axis labels.
func (c *canvas) axes(p panel) {
	left, right := p.x.p0, p.x.p1
	top, bottom := p.y.p1, p.y.p0
	for _, t := range p.xticks {
		x := p.x.at(t.v)
		color := "#eeeeee"
		if t.label != "" {
			color = "#dddddd"
			c.line(x, bottom, x, bottom+5, "#555555", 1, "")
			c.text(x, bottom+19, t.label, 12, "middle", "")
		}
		c.line(x, top, x, bottom, color, 1, "")
	}
	for _, t := range p.yticks {
		y := p.y.at(t.v)
		color := "#eeeeee"
		if t.label != "" {
			color = "#dddddd"
			c.line(left-5, y, left, y, "#555555", 1, "")
			c.text(left-8, y+4, t.label, 12, "end", "")
		}
		c.line(left, y, right, y, color, 1, "")
	}
	c.b.WriteString(fmt.Sprintf(`<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#555555"/>`+"\n",
		num(left), num(top), num(right-left), num(bottom-top)))
	if p.title != "" {
		c.text((left+right)/2, top-10, p.title, 14, "middle", `font-weight="600"`)
	}
	if p.xlabel != "" {
		c.text((left+right)/2, bottom+40, p.xlabel, 13, "middle", "")
	}
	if p.ylabel != "" {
		x, y := left-58, (top+bottom)/2
		c.text(x, y, p.ylabel, 13, "middle", fmt.Sprintf(`transform="rotate(-90 %s %s)"`, num(x), num(y)))
	}
}

// legendItem is one entry of a legend: a swatch of color (dashed when
// dash is set) and its label.
type legendItem struct {
	color, dash, label string
}

// legendGrid draws an unboxed legend of cols columns, each colW pixels
// wide, from (x, y) down.
func (c *canvas) legendGrid(x, y, colW float64, cols int, items []legendItem) {
	for i, it := range items {
		lx := x + colW*float64(i%cols)
		ly := y + 20*float64(i/cols)
		c.line(lx, ly, lx+24, ly, it.color, 2.5, it.dash)
		c.text(lx+30, ly+4, it.label, 12, "start", "")
	}
}

// niceStep returns a round step (1, 2 or 5 times a power of ten) that
// splits span into about n intervals.
func niceStep(span float64, n int) float64 {
	if span <= 0 || n <= 0 {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

// linearTicks returns labelled ticks from 0 to at least hi, about n
// intervals, and the top of the axis. format labels each value.
func linearTicks(hi float64, n int, format func(float64) string) ([]tick, float64) {
	if hi <= 0 {
		hi = 1
	}
	step := niceStep(hi, n)
	top := math.Ceil(hi/step) * step
	var ts []tick
	for v := 0.0; v <= top+step/2; v += step {
		ts = append(ts, tick{v, format(v)})
	}
	return ts, top
}

// logRange widens [lo, hi] outwards to 1-2-5 values.
func logRange(lo, hi float64) (float64, float64) {
	down := func(v float64) float64 {
		mag := math.Pow(10, math.Floor(math.Log10(v)))
		for _, m := range []float64{5, 2, 1} {
			if m*mag <= v {
				return m * mag
			}
		}
		return mag
	}
	up := func(v float64) float64 {
		mag := math.Pow(10, math.Floor(math.Log10(v)))
		for _, m := range []float64{1, 2, 5, 10} {
			if m*mag >= v*(1-1e-9) {
				return m * mag
			}
		}
		return 10 * mag
	}
	return down(lo), up(hi)
}

// logTicks returns the 1-2-5 ticks of [lo, hi]: all labelled when the
// range spans under three decades, else only the powers of ten.
func logTicks(lo, hi float64, format func(float64) string) []tick {
	decades := math.Log10(hi / lo)
	var ts []tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := tick{v: v}
			if m == 1 || decades < 3 {
				t.label = format(v)
			}
			ts = append(ts, t)
		}
	}
	return ts
}
