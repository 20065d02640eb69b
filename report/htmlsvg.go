package report

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// The charts of the HTML page, laid out here as shapes and drawn by the
// "chart" template of htmlpage.go, so every label goes through
// html/template's escaping. Each chart has a <title> and <desc> and each
// shape its own <title> (SVG 1.1 §5.4, "The 'desc' and 'title'
// elements"), and every series has a pattern as well as a colour, so the
// charts read without colour too.

// svgChart is one inline <svg>.
type svgChart struct {
	ID, Class   string // element id and class, for styling and tests
	Title, Desc string
	W, H        int
	Patterns    []svgPattern
	Rects       []svgRect
	Lines       []svgLine
	Texts       []svgText
}

// svgPattern is a series' fill: its colour under a texture of white lines.
type svgPattern struct {
	ID, Color, Path string
}

type svgRect struct {
	X, Y, W, H  float64
	Fill, Title string
}

type svgLine struct {
	X1, Y1, X2, Y2 float64
	Class          string
}

type svgText struct {
	X, Y          float64
	Anchor, Class string // text-anchor: start, middle or end
	Text          string
}

// series is one stacked layer or one bar: a name, a colour and a value per
// category.
type series struct {
	Name, Color string
	Values      []int64
}

// Okabe and Ito's palette, distinguishable with the common colour vision
// deficiencies ("Color Universal Design", jfly.uni-koeln.de/color/).
const (
	colGreen  = "#009E73"
	colSky    = "#56B4E9"
	colYellow = "#E6C229" // darker than the palette's #F0E442, to stand out on white
	colOrange = "#E69F00"
	colRed    = "#D55E00"
	colBlue   = "#0072B2"
	colPurple = "#CC79A7"
	colGrey   = "#8C8C8C"
	colBlack  = "#000000"
)

// textures: the i-th series gets textures[i%len] over its colour, in a
// 6×6 tile; the first is plain.
var textures = []string{
	"",
	"M0,6 L6,0 M-1,1 L1,-1 M5,7 L7,5", // diagonal
	"M0,3 L6,3",                       // horizontal
	"M1.5,1.5 h.01 M4.5,4.5 h.01",     // dots (drawn with a round cap)
	"M3,0 L3,6",                       // vertical
	"M0,0 L6,6 M0,6 L6,0",             // cross
	"M0,0 L6,6 M-1,5 L1,7 M5,-1 L7,1", // diagonal, the other way
}

func patterns(id string, ss []series) []svgPattern {
	out := make([]svgPattern, len(ss))
	for i, s := range ss {
		out[i] = svgPattern{ID: fmt.Sprintf("%s-p%d", id, i), Color: s.Color, Path: textures[i%len(textures)]}
	}
	return out
}

func fill(id string, i int) string { return fmt.Sprintf("url(#%s-p%d)", id, i) }

const (
	chartW    = 1180
	charPx    = 7.0 // mean advance of a 12px sans-serif character, to lay out labels
	legendH   = 28.0
	axisLeft  = 56.0
	axisBelow = 40.0
)

// stackedBars draws one bar per category (a day), its series stacked, a
// total above each bar, a y axis and a legend of the series that occur.
func stackedBars(id, title, desc string, cats []string, ss []series) *svgChart {
	c := &svgChart{ID: id, Class: "chart stacked", Title: title, Desc: desc, W: chartW, H: 340,
		Patterns: patterns(id, ss)}
	totals := make([]int64, len(cats))
	for _, s := range ss {
		for i, v := range s.Values {
			totals[i] += v
		}
	}
	top, plotH := legendH+18, float64(c.H)-legendH-18-axisBelow
	scale := c.yAxis(maxOf(totals), top, plotH)
	band := (float64(c.W) - axisLeft - 8) / float64(max(len(cats), 1))
	barW := math.Min(band*0.7, 64)
	every := int(math.Ceil(46 / band)) // x labels at least 46 px apart
	for i, cat := range cats {
		x := axisLeft + band*float64(i) + (band-barW)/2
		y := top + plotH
		for j, s := range ss {
			if h := float64(s.Values[i]) * scale; h > 0 {
				y -= h
				c.Rects = append(c.Rects, svgRect{X: x, Y: y, W: barW, H: h, Fill: fill(id, j),
					Title: fmt.Sprintf("%s, %s: %s", cat, s.Name, thousands(s.Values[i]))})
			}
		}
		if band >= 34 && totals[i] > 0 {
			c.Texts = append(c.Texts, svgText{X: x + barW/2, Y: y - 4, Anchor: "middle", Class: "total",
				Text: compact(totals[i])})
		}
		if i%every == 0 {
			c.Texts = append(c.Texts, svgText{X: x + barW/2, Y: top + plotH + 16, Anchor: "middle",
				Class: "tick", Text: shortDay(cat)})
		}
	}
	c.legend(ss, 4)
	return c
}

// histogram draws one bar per bin, touching, with its count above and
// xCaption under the bins.
func histogram(id, title, desc, xCaption string, bins []string, counts []int64, color string) *svgChart {
	c := &svgChart{ID: id, Class: "chart histogram", Title: title, Desc: desc, W: chartW, H: 310,
		Patterns: patterns(id, []series{{Color: color}})}
	top, plotH := 24.0, float64(c.H)-24-axisBelow-14
	c.Texts = append(c.Texts, svgText{X: axisLeft + (float64(c.W)-axisLeft)/2, Y: float64(c.H) - 6,
		Anchor: "middle", Class: "caption", Text: xCaption})
	scale := c.yAxis(maxOf(counts), top, plotH)
	band := (float64(c.W) - axisLeft - 8) / float64(len(bins))
	for i, b := range bins {
		x, h := axisLeft+band*float64(i), float64(counts[i])*scale
		c.Rects = append(c.Rects, svgRect{X: x + 1, Y: top + plotH - h, W: band - 2, H: h, Fill: fill(id, 0),
			Title: fmt.Sprintf("%s: %s passes", b, thousands(counts[i]))})
		c.Texts = append(c.Texts,
			svgText{X: x + band/2, Y: top + plotH - h - 4, Anchor: "middle", Class: "total", Text: thousands(counts[i])},
			svgText{X: x + band/2, Y: top + plotH + 16, Anchor: "middle", Class: "tick", Text: b})
	}
	return c
}

// barList draws one horizontal bar per row, longest first as given: the
// label on the left (cut to fit, whole in the bar's title), the value
// after the bar.
func barList(id, title, desc string, labels []string, values []int64, color, unit string) *svgChart {
	const rowH, labelW = 26.0, 300.0
	c := &svgChart{ID: id, Class: "chart barlist", Title: title, Desc: desc, W: chartW,
		H: int(rowH*float64(len(labels))) + 8, Patterns: patterns(id, []series{{Color: color}})}
	scale := (float64(c.W) - labelW - 90) / float64(max(maxOf(values), 1))
	for i, l := range labels {
		y := 4 + rowH*float64(i)
		w := math.Max(float64(values[i])*scale, 1)
		c.Rects = append(c.Rects, svgRect{X: labelW, Y: y + 3, W: w, H: rowH - 8, Fill: fill(id, 0),
			Title: fmt.Sprintf("%s: %s %s", l, thousands(values[i]), unit)})
		c.Texts = append(c.Texts,
			svgText{X: labelW - 8, Y: y + rowH/2 + 4, Anchor: "end", Class: "label", Text: cut(l, int(math.Floor((labelW-16)/charPx)))},
			svgText{X: labelW + w + 6, Y: y + rowH/2 + 4, Anchor: "start", Class: "total", Text: thousands(values[i])})
	}
	return c
}

// yAxis draws grid lines and their labels at round values from 0 up to
// at least maxV and returns the pixels per unit.
func (c *svgChart) yAxis(maxV int64, top, plotH float64) float64 {
	step := niceStep(maxV)
	ticks := max((maxV+step-1)/step, 1)
	scale := plotH / float64(ticks*step)
	for i := int64(0); i <= ticks; i++ {
		y := top + plotH - float64(i*step)*scale
		class := "grid"
		if i == 0 {
			class = "axis"
		}
		c.Lines = append(c.Lines, svgLine{X1: axisLeft, Y1: y, X2: float64(c.W) - 8, Y2: y, Class: class})
		c.Texts = append(c.Texts, svgText{X: axisLeft - 6, Y: y + 4, Anchor: "end", Class: "tick", Text: compact(i * step)})
	}
	return scale
}

// legend lays out a swatch and name per series with a non-zero value, in
// a row at the top of the chart.
func (c *svgChart) legend(ss []series, y float64) {
	x := axisLeft
	for i, s := range ss {
		if maxOf(s.Values) == 0 {
			continue
		}
		c.Rects = append(c.Rects, svgRect{X: x, Y: y + 2, W: 16, H: 16, Fill: fill(c.ID, i), Title: s.Name})
		c.Texts = append(c.Texts, svgText{X: x + 22, Y: y + 15, Anchor: "start", Class: "legend", Text: s.Name})
		x += 22 + charPx*float64(utf8.RuneCountInString(s.Name)) + 22
	}
}

// niceStep is a 1, 2 or 5 times a power of ten that splits 0..maxV into
// at most five intervals.
func niceStep(maxV int64) int64 {
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if m*p*5 >= maxV {
				return m * p
			}
		}
	}
}

func maxOf(vs []int64) int64 {
	var m int64
	for _, v := range vs {
		m = max(m, v)
	}
	return m
}

// compact prints n in at most four characters and a suffix: 950, 1.2k, 34k, 5.6M.
func compact(n int64) string {
	switch {
	case n < 1000:
		return strconv.FormatInt(n, 10)
	case n < 10_000:
		return strconv.FormatFloat(float64(n)/1000, 'f', 1, 64) + "k"
	case n < 1_000_000:
		return strconv.FormatInt(n/1000, 10) + "k"
	}
	return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
}

// thousands prints n with a comma between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// shortDay is "11-01" for "2026-11-01": the year is in the chart's title.
func shortDay(day string) string {
	if len(day) == len(time.DateOnly) {
		return day[5:]
	}
	return day
}

// cut shortens s to at most n characters, marking the cut with an ellipsis.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
