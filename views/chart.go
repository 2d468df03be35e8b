package views

import (
	"strconv"
	"strings"
)

// Chart is one server-drawn SVG chart: series of counts over the same
// periods, stacked bars or lines, with a limit drawn as a dashed line.
// Everything it shows is also in its summary (the SVG's aria-label) and in
// a table of the numbers under it.
type Chart struct {
	ID     string // unique on the page; names the figure and its table
	Title  string // "Events published"
	Unit   string // "events/min"
	Span   string // "over the last hour"
	Kind   ChartKind
	Points []ChartPoint
	Series []ChartSeries
	Limit  *ChartLimit // nil: none applies
	Peaks  bool        // the values are peaks, not counts: no total
	Period string      // the table's first column: "Minute", "Day"
}

// ChartKind is how a chart draws its series.
type ChartKind string

const (
	Bars  ChartKind = "bars"  // stacked bars, one a point
	Lines ChartKind = "lines" // a line a series, the first filled below
)

// ChartPoint is one period on the x axis.
type ChartPoint struct {
	Label string // short, for the axis: "14:30", "Mar 3"
	Long  string // for the summary, the table and tooltips: "2026-03-03 14:30 UTC"
	Tick  bool   // the axis labels this point
}

// ChartSeries is one series: a value a point.
type ChartSeries struct {
	Name   string  // "HTTP API"
	Class  string  // its colour in console.css: "c1" to "c4"
	Values []int64 // len(Chart.Points)
}

// ChartLimit is a quota, drawn as a dashed line across the chart.
type ChartLimit struct {
	Name  string // "max connections"
	Value int64
	Note  string // how it is derived, e.g. "2 requests/s × 60"; may be ""
}

// The SVG's coordinate system: it scales to the width of its box.
const (
	chartW      = 480
	chartH      = 170
	chartLeft   = 50 // room for the y axis' labels
	chartRight  = 10
	chartTop    = 14
	chartBottom = 26 // room for the x axis' labels
	plotW       = chartW - chartLeft - chartRight
	plotH       = chartH - chartTop - chartBottom
)

// Totals returns each point's value: the sum of the series for stacked
// bars, their highest for lines.
func (c Chart) Totals() []int64 {
	out := make([]int64, len(c.Points))
	for _, s := range c.Series {
		for i, v := range s.Values {
			if i >= len(out) {
				break
			}
			if c.Kind == Bars {
				out[i] += v
			} else {
				out[i] = max(out[i], v)
			}
		}
	}
	return out
}

// peak returns the highest point's index and value (the first, if tied),
// and the total over every point.
func (c Chart) peak() (at int, top, total int64) {
	for i, v := range c.Totals() {
		if v > top {
			at, top = i, v
		}
		total += v
	}
	return at, top, total
}

// Summary says what the chart shows in a sentence: its aria-label, e.g.
// "Events published, events/min, over the last hour: peak 120 at 14:32
// UTC, total 3,400; quota 120 events/min."
func (c Chart) Summary() string {
	var b strings.Builder
	b.WriteString(c.Title + " (" + c.Unit + ") " + c.Span + ": ")
	at, top, total := c.peak()
	switch {
	case top == 0:
		b.WriteString("none")
	case c.Peaks:
		b.WriteString("highest " + Count(top) + " at " + c.Points[at].Long)
	default:
		b.WriteString("peak " + Count(top) + " at " + c.Points[at].Long + ", total " + Count(total))
	}
	if c.Limit != nil {
		b.WriteString("; " + c.Limit.Name + " " + Count(c.Limit.Value))
		if c.Limit.Note != "" {
			b.WriteString(" (" + c.Limit.Note + ")")
		}
	}
	b.WriteString(".")
	return b.String()
}

// Total is the sum over every point, as text.
func (c Chart) Total() string {
	_, _, total := c.peak()
	return Count(total)
}

// plot is a chart's drawing, in SVG coordinates.
type plot struct {
	X0, X1, Y0 string // the plot's left and right edges, and its baseline
	YTicks     []tick
	XTicks     []tick
	Bars       []bar
	Lines      []line
	Limit      *limitLine // nil when none, or when it is far above the data
	LimitNote  string     // the limit is above the chart's top: say so instead
	Hits       []bar      // a transparent column a point, for the tooltip
	Empty      bool
}

type tick struct {
	Pos    string // y for YTicks, x for XTicks
	Label  string
	Anchor string // text-anchor of an x label: start, middle or end
	LabelX string // where the x label is drawn (kept inside the box)
}

type bar struct {
	X, Y, W, H, Class, Title string
}

type line struct {
	D, Area, Class string
}

type limitLine struct {
	Y, LabelX, LabelY, Label string
}

// layout lays the chart out. A limit far above the data (more than 2.5 times
// its highest point) is not drawn, lest it flatten the data to nothing: the
// legend and the summary say what it is instead.
func (c Chart) layout() plot {
	p := plot{X0: num(chartLeft), X1: num(chartW - chartRight), Y0: num(chartTop + plotH)}
	totals := c.Totals()
	var dataMax int64
	for _, v := range totals {
		dataMax = max(dataMax, v)
	}
	p.Empty = dataMax == 0
	top := dataMax
	drawLimit := c.Limit != nil && (dataMax == 0 || c.Limit.Value*2 <= dataMax*5)
	if drawLimit {
		top = max(top, c.Limit.Value)
	} else if c.Limit != nil {
		p.LimitNote = c.Limit.Name + " " + Count(c.Limit.Value) + " is above the chart"
	}
	step := niceStep(top)
	top = max(step, (top+step-1)/step*step)
	y := func(v int64) float64 { return chartTop + plotH - float64(v)/float64(top)*plotH }
	for v := int64(0); v <= top; v += step {
		p.YTicks = append(p.YTicks, tick{Pos: num(y(v)), Label: Short(v)})
	}

	n := max(len(c.Points), 1)
	slot := float64(plotW) / float64(n)
	center := func(i int) float64 { return chartLeft + (float64(i)+0.5)*slot }
	for i, pt := range c.Points {
		if !pt.Tick {
			continue
		}
		x := center(i)
		t := tick{Pos: num(x), Label: pt.Label, Anchor: "middle", LabelX: num(x)}
		switch half := 4.5 * float64(len(pt.Label)); {
		case x+half > chartW:
			t.Anchor, t.LabelX = "end", num(chartW-1)
		case x-half < chartLeft-10:
			t.Anchor, t.LabelX = "start", num(chartLeft-10)
		}
		p.XTicks = append(p.XTicks, t)
	}

	if c.Kind == Bars {
		width := max(slot*0.78, 1)
		base := make([]int64, len(c.Points))
		for _, s := range c.Series {
			for i, v := range s.Values {
				if v <= 0 || i >= len(base) {
					continue
				}
				y0, y1 := y(base[i]), y(base[i]+v)
				base[i] += v
				p.Bars = append(p.Bars, bar{X: num(center(i) - width/2), Y: num(y1), W: num(width), H: num(max(y0-y1, 0.5)), Class: s.Class})
			}
		}
	} else {
		for _, s := range c.Series {
			var d strings.Builder
			for i, v := range s.Values {
				if i >= len(c.Points) {
					break
				}
				if i == 0 {
					d.WriteString("M")
				} else {
					d.WriteString(" L")
				}
				d.WriteString(num(center(i)) + " " + num(y(v)))
			}
			l := line{D: d.String(), Class: s.Class}
			if len(p.Lines) == 0 && len(s.Values) > 0 {
				last := min(len(s.Values), len(c.Points)) - 1
				l.Area = l.D + " L" + num(center(last)) + " " + num(y(0)) + " L" + num(center(0)) + " " + num(y(0)) + " Z"
			}
			p.Lines = append(p.Lines, l)
		}
	}
	if drawLimit {
		ly := y(c.Limit.Value)
		labelY := ly - 4
		if labelY < chartTop+2 {
			labelY = ly + 12
		}
		p.Limit = &limitLine{Y: num(ly), LabelX: num(chartLeft + 4), LabelY: num(labelY), Label: c.Limit.Name + " " + Short(c.Limit.Value)}
	}
	for i, pt := range c.Points {
		var t strings.Builder
		t.WriteString(pt.Long + ": ")
		if len(c.Series) == 1 {
			t.WriteString(Count(c.Series[0].Values[i]) + " " + c.Unit)
		} else {
			for j, s := range c.Series {
				if j > 0 {
					t.WriteString(", ")
				}
				t.WriteString(s.Name + " " + Count(s.Values[i]))
			}
		}
		p.Hits = append(p.Hits, bar{X: num(chartLeft + float64(i)*slot), Y: num(chartTop), W: num(slot), H: num(plotH), Title: t.String()})
	}
	return p
}

// niceStep is a step of 1, 2 or 5 times a power of ten that cuts 0..top
// into at most four parts.
func niceStep(top int64) int64 {
	if top <= 4 {
		return 1
	}
	raw := (top + 3) / 4
	pow := int64(1)
	for pow*10 <= raw {
		pow *= 10
	}
	for _, m := range []int64{1, 2, 5, 10} {
		if m*pow >= raw {
			return m * pow
		}
	}
	return 10 * pow
}

// num formats an SVG coordinate with at most one decimal.
func num(f float64) string { return strconv.FormatFloat(float64(int64(f*10+0.5))/10, 'f', -1, 64) }

// Count formats n with thousands separators: 3,400.
func Count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Short formats n for an axis, in at most four characters: 950, 1.5k, 12k, 3M.
func Short(n int64) string {
	units := []struct {
		div  int64
		unit string
	}{{1_000_000_000, "G"}, {1_000_000, "M"}, {1_000, "k"}}
	for _, u := range units {
		if n >= u.div {
			if n < 10*u.div && n%u.div != 0 {
				return strconv.FormatFloat(float64(n)/float64(u.div), 'f', 1, 64) + u.unit
			}
			return strconv.FormatInt(n/u.div, 10) + u.unit
		}
	}
	return strconv.FormatInt(n, 10)
}

// Bytes formats a byte count for people: 512 B, 1.5 KiB, 20.3 MiB.
func Bytes(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || unit == "TiB" {
			return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
		}
	}
	return ""
}

// UsageCharts is the chart section of the overview and the operator view:
// links between the ranges, the totals over the range and the charts.
type UsageCharts struct {
	Heading  string // "Usage over the last day"
	Scope    string // whose: "" for the tenant's own, else "the whole service" or a tenant's name
	Back     string // a link's text back to a wider scope, and its address; "" for none
	BackHref string
	Ranges   []RangeLink
	Totals   []ChartTotal
	Charts   []Chart
	Note     string // e.g. how the service's peaks are added up; may be ""
}

// RangeLink is a link to the same page over another range.
type RangeLink struct {
	Key, Label, Href string
	Current          bool
}

// ChartTotal is one figure over the whole range.
type ChartTotal struct {
	Key, Label, Value string
}
