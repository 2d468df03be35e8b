package views

import (
	"strings"
	"testing"
)

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		n                  int64
		count, short, size string
	}{
		{0, "0", "0", "0 B"},
		{999, "999", "999", "999 B"},
		{1000, "1,000", "1k", "1000 B"},
		{1500, "1,500", "1.5k", "1.5 KiB"},
		{98765, "98,765", "98k", "96.5 KiB"},
		{1234567, "1,234,567", "1.2M", "1.2 MiB"},
		{25_000_000, "25,000,000", "25M", "23.8 MiB"},
	} {
		if got := Count(tc.n); got != tc.count {
			t.Errorf("Count(%d) = %q, want %q", tc.n, got, tc.count)
		}
		if got := Short(tc.n); got != tc.short {
			t.Errorf("Short(%d) = %q, want %q", tc.n, got, tc.short)
		}
		if got := Bytes(tc.n); got != tc.size {
			t.Errorf("Bytes(%d) = %q, want %q", tc.n, got, tc.size)
		}
	}
}

func TestNiceStep(t *testing.T) {
	for top, want := range map[int64]int64{0: 1, 3: 1, 4: 1, 5: 2, 9: 5, 120: 50, 400: 100, 457: 200, 1000: 500, 98765: 50000} {
		if got := niceStep(top); got != want {
			t.Errorf("niceStep(%d) = %d, want %d", top, got, want)
		}
	}
}

func testChart(kind ChartKind, values ...int64) Chart {
	c := Chart{ID: "x", Title: "Events published", Unit: "events/min", Span: "over the last hour", Kind: kind}
	for i := range values {
		c.Points = append(c.Points, ChartPoint{Label: "p", Long: "point " + string(rune('a'+i)), Tick: i%2 == 0})
	}
	c.Series = []ChartSeries{{Name: "API", Class: "c1", Values: values}, {Name: "Pusher", Class: "c2", Values: make([]int64, len(values))}}
	return c
}

func TestChartSummaryAndLayout(t *testing.T) {
	c := testChart(Bars, 10, 0, 120, 30)
	if got, want := c.Summary(), "Events published (events/min) over the last hour: peak 120 at point c, total 160."; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	p := c.layout()
	if len(p.Bars) != 3 || len(p.Hits) != 4 || len(p.XTicks) != 2 || p.Empty || p.Limit != nil {
		t.Errorf("layout = %d bars, %d hits, %d ticks, empty %v, limit %v", len(p.Bars), len(p.Hits), len(p.XTicks), p.Empty, p.Limit)
	}
	if last := p.YTicks[len(p.YTicks)-1]; last.Label != "150" || last.Pos != "14" {
		t.Errorf("the top tick = %+v, want 150 at the top of the plot", last)
	}
	// A limit near the data is drawn, and the scale reaches it; one far
	// above is named instead, lest it flatten the data.
	c.Limit = &ChartLimit{Name: "quota", Value: 200}
	if p := c.layout(); p.Limit == nil || p.YTicks[len(p.YTicks)-1].Label != "200" {
		t.Errorf("a limit of 200 over data of 120 is not drawn at the top: %+v", p.Limit)
	}
	c.Limit.Value = 10000
	if p := c.layout(); p.Limit != nil || !strings.Contains(p.LimitNote, "above the chart") {
		t.Errorf("a limit of 10,000 over data of 120 is drawn")
	}
	if got := c.Summary(); !strings.HasSuffix(got, "; quota 10,000.") {
		t.Errorf("Summary = %q, want the limit named", got)
	}
	// Peaks have no total; an empty chart says none.
	l := testChart(Lines, 5, 7, 6)
	l.Peaks = true
	if got := l.Summary(); !strings.HasSuffix(got, ": highest 7 at point b.") {
		t.Errorf("Summary of peaks = %q", got)
	}
	if p := l.layout(); len(p.Lines) != 2 || p.Lines[0].Area == "" || p.Lines[1].Area != "" {
		t.Errorf("lines: %d, areas %q %q; want the first filled", len(p.Lines), p.Lines[0].Area, p.Lines[1].Area)
	}
	if e := testChart(Bars, 0, 0); !strings.HasSuffix(e.Summary(), ": none.") || !e.layout().Empty {
		t.Errorf("an empty chart: %q", e.Summary())
	}
}
