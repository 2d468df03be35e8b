package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/usage"
	"github.com/hybridrt/hybridrt/internal/web"
	"github.com/hybridrt/hybridrt/views"
)

// chartRange is a span of time the usage charts show, ending with the
// period that now is in.
type chartRange struct {
	key, label  string // ?range=key; the link's text
	span        string // "over the last hour"
	granularity usage.Granularity
	step        time.Duration // one point
	points      int
	per         string // the unit's denominator: "min", "10 min", "day"
	period      string // the heading of the tables' first column
}

var chartRanges = []chartRange{
	{key: "hour", label: "Last hour", span: "over the last hour", granularity: usage.Minutes, step: time.Minute, points: 60, per: "min", period: "Minute (UTC)"},
	{key: "day", label: "Last day", span: "over the last 24 hours", granularity: usage.Minutes, step: 10 * time.Minute, points: 144, per: "10 min", period: "10 minutes from (UTC)"},
	{key: "30d", label: "Last 30 days", span: "over the last 30 days", granularity: usage.Days, step: 24 * time.Hour, points: 30, per: "day", period: "Day (UTC)"},
}

// chartRangeOf returns the range a request's ?range= names; the last day
// when it names none (or one there is not).
func chartRangeOf(r *http.Request) chartRange {
	for _, cr := range chartRanges {
		if cr.key == r.URL.Query().Get("range") {
			return cr
		}
	}
	return chartRanges[1]
}

// window returns the start of the range's first period and the end of its
// last, the one now is in.
func (cr chartRange) window(now time.Time) (from, to time.Time) {
	to = now.UTC().Truncate(cr.step).Add(cr.step)
	return to.Add(-time.Duration(cr.points) * cr.step), to
}

// point labels the period that starts at t, the i-th of the range.
func (cr chartRange) point(t time.Time, i int) views.ChartPoint {
	switch cr.key {
	case "hour":
		return views.ChartPoint{Label: t.Format("15:04"), Long: t.Format("2006-01-02 15:04 UTC"), Tick: t.Minute()%15 == 0}
	case "day":
		return views.ChartPoint{Label: t.Format("15:04"), Long: t.Format("2006-01-02 15:04 UTC"), Tick: t.Minute() == 0 && t.Hour()%4 == 0}
	}
	// Days: a tick a week, ending today.
	return views.ChartPoint{Label: t.Format("Jan 2"), Long: t.Format(time.DateOnly), Tick: (cr.points-1-i)%7 == 0}
}

// chartQuotas are the limits a tenant's charts draw.
type chartQuotas struct {
	maxConnections int64
	publishRate    int64 // publish requests a second, for the tenant as a whole; 0 when none is set
}

// quotasOf returns tenant id's effective limits: its own quotas, or the
// server's defaults.
func (c *Console) quotasOf(ctx context.Context, id tenant.ID) (*chartQuotas, error) {
	conns, err := c.Limits.ConnectionsFor(ctx, id)
	if err != nil {
		return nil, err
	}
	rate, err := c.Limits.PublishRateFor(ctx, id)
	if err != nil {
		return nil, err
	}
	return &chartQuotas{maxConnections: int64(conns), publishRate: int64(rate)}, nil
}

// chartSwap reports whether a request is the range links' htmx request,
// which wants the chart section alone (a history restore wants the page).
func chartSwap(r *http.Request) bool {
	return r.Header.Get("HX-Request") == "true" && r.Header.Get("HX-Target") == "usage-charts" &&
		r.Header.Get("HX-History-Restore-Request") == ""
}

// usageCharts reads scope's usage over cr and draws it, with quotas when
// not nil. link returns the address of the same page over another range.
func (c *Console) usageCharts(ctx context.Context, scope usage.Scope, quotas *chartQuotas, cr chartRange, now time.Time, link func(rangeKey string) string) (views.UsageCharts, error) {
	from, to := cr.window(now)
	q := usage.Query{Scope: scope, Granularity: cr.granularity, From: from, To: to}
	if cr.granularity == usage.Minutes {
		q.Bucket = cr.step
	}
	rows, err := usage.Read(ctx, c.Pool, q)
	if err != nil {
		return views.UsageCharts{}, err
	}
	// Read leaves out the periods without usage: they are zeros here.
	filled := make([]usage.Row, cr.points)
	for _, row := range rows {
		if i := int(row.Period.Sub(from) / cr.step); i >= 0 && i < len(filled) && !row.Period.Before(from) {
			filled[i] = row
		}
	}
	points := make([]views.ChartPoint, cr.points)
	for i := range points {
		points[i] = cr.point(from.Add(time.Duration(i)*cr.step), i)
	}
	values := func(f func(usage.Row) int64) []int64 {
		out := make([]int64, len(filled))
		for i, row := range filled {
			out[i] = f(row)
		}
		return out
	}
	chart := func(id, title, unit string, kind views.ChartKind, series ...views.ChartSeries) views.Chart {
		return views.Chart{ID: id, Title: title, Unit: unit, Span: cr.span, Kind: kind, Points: points, Series: series, Period: cr.period}
	}

	events := chart("events", "Events published", "events/"+cr.per, views.Bars,
		views.ChartSeries{Name: "HTTP API", Class: "c1", Values: values(func(r usage.Row) int64 { return r.PublishedAPI })},
		views.ChartSeries{Name: "Pusher API", Class: "c2", Values: values(func(r usage.Row) int64 { return r.PublishedPusher })},
		views.ChartSeries{Name: "Client events", Class: "c3", Values: values(func(r usage.Row) int64 { return r.PublishedClient })})
	connections := chart("connections", "Peak connections", "connections at once", views.Lines,
		views.ChartSeries{Name: "Peak connections", Class: "c1", Values: values(func(r usage.Row) int64 { return r.Peak.Total })})
	connections.Peaks = true
	deliveries := chart("deliveries", "Deliveries", "deliveries/"+cr.per, views.Lines,
		views.ChartSeries{Name: "Deliveries", Class: "c2", Values: values(func(r usage.Row) int64 { return r.Deliveries })})
	rejections := chart("rejections", "Rejected requests", "rejected/"+cr.per, views.Bars,
		views.ChartSeries{Name: "Rejected", Class: "c4", Values: values(usage.Row.RejectedTotal)})
	if quotas != nil {
		connections.Limit = &views.ChartLimit{Name: "max connections", Value: quotas.maxConnections}
		// The publish rate caps requests a second; where a point is short
		// enough for that to mean something, it caps the point at rate × its seconds.
		if secs := int64(cr.step / time.Second); quotas.publishRate > 0 && cr.granularity == usage.Minutes {
			events.Limit = &views.ChartLimit{Name: "publish quota", Value: quotas.publishRate * secs,
				Note: fmt.Sprintf("%d requests/s × %d s; a batch is one request", quotas.publishRate, secs)}
		}
	}

	total := usage.Sum(rows)
	u := views.UsageCharts{
		Heading: "Usage " + cr.span,
		Totals: []views.ChartTotal{
			{Key: "published", Label: "events published", Value: views.Count(total.Published())},
			{Key: "deliveries", Label: "deliveries", Value: views.Count(total.Deliveries)},
			{Key: "peak", Label: "peak connections", Value: views.Count(total.Peak.Total)},
			{Key: "rejected", Label: "rejected requests", Value: views.Count(total.RejectedTotal())},
		},
		Charts: []views.Chart{events, connections, deliveries, rejections},
	}
	for _, r := range chartRanges {
		u.Ranges = append(u.Ranges, views.RangeLink{Key: r.key, Label: r.label, Href: link(r.key), Current: r.key == cr.key})
	}
	return u, nil
}

// HandleUsage serves GET /console/usage: the tenant's usage by day or by
// month over a range (this month, by day, unless asked otherwise).
func (c *Console) HandleUsage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := form("granularity", q.Get("granularity"), "from", q.Get("from"), "to", q.Get("to"))
	p := c.page(r, "Usage", "usage")
	g, from, to, err := usage.ParseRange(r, time.Now())
	if err != nil {
		var pr *web.Problem
		if !errors.As(err, &pr) {
			c.fail(w, r, err)
			return
		}
		// As the console's other forms: the form again, with what is wrong.
		f.Errors["range"] = pr.Detail
		c.render(w, r, http.StatusOK, views.UsagePage(p, views.Usage{Form: f, Period: "day"}))
		return
	}
	rep, err := usage.Build(r, c.Pool, usage.Scope{Tenant: tenant.FromContext(r.Context())}, g, from, to)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	same := url.Values{"granularity": {string(g)}, "from": {rep.From}, "to": {rep.To}}
	f = form("granularity", string(g), "from", rep.From, "to", rep.To)
	u := views.Usage{Form: f, Period: "day", Range: rep.From + " to " + rep.To, CSV: "/console/usage.csv?" + same.Encode()}
	if g == usage.Months {
		u.Period = "month"
	}
	for _, row := range rep.Usage {
		u.Rows = append(u.Rows, usageRow(row, g))
	}
	u.Total = usageRow(rep.Total, g)
	u.Total.Period = "Total"
	c.render(w, r, http.StatusOK, views.UsagePage(p, u))
}

func usageRow(r usage.Row, g usage.Granularity) views.UsageRow {
	period := r.Period.Format(time.DateOnly)
	if g == usage.Months {
		period = r.Period.Format("2006-01")
	}
	return views.UsageRow{
		Period: period, API: r.PublishedAPI, Pusher: r.PublishedPusher, Client: r.PublishedClient, Published: r.Published(),
		Deliveries: r.Deliveries, Bytes: r.BytesDelivered, Peak: r.Peak.Total,
		WebhooksSent: r.WebhooksSent, Failed: r.WebhooksFailed, Rejected: r.RejectedTotal(), RejectedBy: r.Rejected,
	}
}

// HandleUsageCSV serves GET /console/usage.csv: the Usage page's range as
// CSV, the same file as GET /v1/usage?format=csv.
func (c *Console) HandleUsageCSV(w http.ResponseWriter, r *http.Request) {
	g, from, to, err := usage.ParseRange(r, time.Now())
	if err != nil {
		web.Fail(w, r, c.Log, err)
		return
	}
	rep, err := usage.Build(r, c.Pool, usage.Scope{Tenant: tenant.FromContext(r.Context())}, g, from, to)
	if err != nil {
		web.Fail(w, r, c.Log, web.Unavailable(err))
		return
	}
	usage.WriteCSV(w, rep, "hybridrt-usage-"+rep.From+"-"+rep.To+".csv")
}

// operatorCharts returns the operator view's charts: the whole service's,
// or with ?tenant=<id> one tenant's, and that tenant's id ("" for the
// service). ok is false, and the answer written, when there is no such tenant.
func (c *Console) operatorCharts(w http.ResponseWriter, r *http.Request, cr chartRange, now time.Time) (u views.UsageCharts, id string, ok bool) {
	ctx := r.Context()
	scope, scopeName := usage.Scope{All: true}, "the whole service"
	var quotas *chartQuotas
	if v := r.URL.Query().Get("tenant"); v != "" {
		notFound := func() {
			c.render(w, r, http.StatusNotFound, views.ErrorPage(c.page(r, "No such tenant", "operator"), "No tenant has that id."))
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			notFound()
			return u, "", false
		}
		var name string
		err = c.Pool.QueryRow(ctx, `SELECT name FROM tenants WHERE id = $1`, n).Scan(&name)
		if errors.Is(err, pgx.ErrNoRows) {
			notFound()
			return u, "", false
		}
		if err != nil {
			c.fail(w, r, err)
			return u, "", false
		}
		if quotas, err = c.quotasOf(ctx, tenant.ID(n)); err != nil {
			c.fail(w, r, err)
			return u, "", false
		}
		scope, scopeName, id = usage.Scope{Tenant: tenant.ID(n)}, "tenant "+name+" (id "+strconv.FormatInt(n, 10)+")", strconv.FormatInt(n, 10)
	}
	u, err := c.usageCharts(ctx, scope, quotas, cr, now, func(key string) string { return operatorHref(id, key) })
	if err != nil {
		c.fail(w, r, err)
		return u, "", false
	}
	u.Scope = scopeName
	if id == "" {
		u.Note = "The service's peak connections add up each tenant's peak in a period: an upper bound, since tenants' peaks need not come at the same moment."
	} else {
		u.Back, u.BackHref = "Show the whole service", operatorHref("", cr.key)
	}
	return u, id, true
}

// operatorHref is the operator view of a tenant (or of the service, for
// "") over a range.
func operatorHref(id, rangeKey string) string {
	v := url.Values{"range": {rangeKey}}
	if id != "" {
		v.Set("tenant", id)
	}
	return "/console/operator?" + v.Encode()
}

// topTenants reads the top 10 tenants by events and by peak connections
// over the last 30 days.
func (c *Console) topTenants(ctx context.Context, now time.Time, current, rangeKey string) (byEvents, byConnections []views.TopTenant, err error) {
	today := now.UTC().Truncate(24 * time.Hour)
	events, conns, err := usage.TopTenants(ctx, c.Pool, today.AddDate(0, 0, -29), today.AddDate(0, 0, 1), 10)
	if err != nil {
		return nil, nil, err
	}
	list := func(rows []usage.TenantTotal, value func(usage.TenantTotal) int64) []views.TopTenant {
		out := make([]views.TopTenant, len(rows))
		for i, t := range rows {
			id := strconv.FormatInt(int64(t.Tenant), 10)
			out[i] = views.TopTenant{ID: id, Name: t.Name, Value: views.Count(value(t)), Href: operatorHref(id, rangeKey), Current: id == current}
		}
		return out
	}
	return list(events, func(t usage.TenantTotal) int64 { return t.Published }),
		list(conns, func(t usage.TenantTotal) int64 { return t.PeakConnections }), nil
}
