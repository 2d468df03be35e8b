package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"html"
	"image/png"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/usage"
)

// seededUsage is the usage seeded for one tenant: 28 days written to
// usage_days directly, and 48 hours of minutes from which the service's
// roll-up makes yesterday's and today's day rows.
type seededUsage struct {
	now     time.Time               // the last minute seeded is now's
	days    map[string]usage.Row    // by YYYY-MM-DD: the 30 days up to today, as usage_days holds them
	minutes map[time.Time]usage.Row // the 2,880 minutes up to now's
}

// day returns the seeded usage of the day i days before today.
func (s seededUsage) day(i int) usage.Row {
	d := s.now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -i)
	r := s.days[d.Format(time.DateOnly)]
	r.Period = d
	return r
}

// lastDays returns the seeded days from n-1 days ago to today, oldest first.
func (s seededUsage) lastDays(n int) []usage.Row {
	out := make([]usage.Row, n)
	for i := range out {
		out[i] = s.day(n - 1 - i)
	}
	return out
}

// seedUsage writes a tenant's usage: day(i) for the days 29 to 2 days ago
// (i = 0 for the oldest), minute(i, at) for the 48 hours of minutes up to
// now's (i = 0 for the oldest), then rolls the minutes up into yesterday's
// and today's day rows, as the service does every minute.
func seedUsage(t *testing.T, pool *pgxpool.Pool, tenantID string, now time.Time, day func(i int) usage.Row, minute func(i int, at time.Time) usage.Row) seededUsage {
	t.Helper()
	ctx := t.Context()
	id, _ := strconv.ParseInt(tenantID, 10, 64)
	now = now.UTC()
	today := now.Truncate(24 * time.Hour)
	s := seededUsage{now: now, days: map[string]usage.Row{}, minutes: map[time.Time]usage.Row{}}
	fields := func(r usage.Row) []any {
		rejected := r.Rejected
		if rejected == nil {
			rejected = map[string]int64{}
		}
		return []any{r.PublishedAPI, r.PublishedPusher, r.PublishedClient, r.Deliveries, r.BytesDelivered, r.WebhooksSent, r.WebhooksFailed,
			int32(r.Peak.SSE), int32(r.Peak.WebSocket), int32(r.Peak.Pusher), int32(r.Peak.Polling), int32(r.Peak.Total), rejected}
	}
	cols := []string{"published_api", "published_pusher", "published_client", "deliveries", "bytes_delivered", "webhooks_sent", "webhooks_failed",
		"peak_sse", "peak_websocket", "peak_pusher", "peak_polling", "peak_total", "rejected"}
	var dayRows, minuteRows [][]any
	for i := range 28 {
		d := today.AddDate(0, 0, -29+i)
		r := day(i)
		s.days[d.Format(time.DateOnly)] = r
		dayRows = append(dayRows, append([]any{id, d}, fields(r)...))
	}
	last := now.Truncate(time.Minute)
	for i := range 2880 {
		at := last.Add(time.Duration(i-2879) * time.Minute)
		if at.Before(today.AddDate(0, 0, -1)) {
			// The day before yesterday is a day row only: its minutes, which
			// would be partly dropped by now, are the roll-up's to keep.
			continue
		}
		r := minute(i, at)
		r.Period = at
		s.minutes[at] = r
		minuteRows = append(minuteRows, append([]any{id, at}, fields(r)...))
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"usage_days"}, append([]string{"tenant_id", "day"}, cols...), pgx.CopyFromRows(dayRows)); err != nil {
		t.Fatalf("seed usage_days: %v", err)
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"usage_minutes"}, append([]string{"tenant_id", "minute"}, cols...), pgx.CopyFromRows(minuteRows)); err != nil {
		t.Fatalf("seed usage_minutes: %v", err)
	}
	// Yesterday and today are the roll-up's: the sums of their minutes.
	deadline := time.Now().Add(10 * time.Second)
	for pgtest.Count(t, pool, `SELECT count(*) FROM usage_days WHERE tenant_id = $1 AND day >= $2::date`, id, today.AddDate(0, 0, -1)) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the roll-up did not write yesterday's and today's rows within 10 s")
		}
		if err := usage.Rollup(ctx, pool, now); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, d := range []time.Time{today.AddDate(0, 0, -1), today} {
		var in []usage.Row
		for at, r := range s.minutes {
			if !at.Before(d) && at.Before(d.AddDate(0, 0, 1)) {
				in = append(in, r)
			}
		}
		s.days[d.Format(time.DateOnly)] = usage.Sum(in)
	}
	return s
}

// splitPeak shares a peak of total connections among the transports.
func splitPeak(total int64) usage.Peak {
	p := usage.Peak{SSE: total * 4 / 10, WebSocket: total * 3 / 10, Pusher: total * 2 / 10, Total: total}
	p.Polling = total - p.SSE - p.WebSocket - p.Pusher
	return p
}

var (
	weekWave = [7]int64{100, 110, 116, 112, 104, 58, 52}
	dayWave  = [24]int64{35, 30, 28, 27, 28, 32, 40, 52, 65, 78, 88, 95, 100, 98, 96, 97, 99, 100, 94, 85, 72, 60, 50, 42}
)

// acmeLaunch is the index of Acme's busiest day: 98,765 events, 940 connections.
const acmeLaunch = 22

// acmeDay is a weekly wave, growing, with a launch day.
func acmeDay(i int) usage.Row {
	api := (40000 + 600*int64(i)) * weekWave[i%7] / 100
	r := usage.Row{PublishedAPI: api, PublishedPusher: api / 4, PublishedClient: api/20 + 120,
		Peak: splitPeak(400 + 12*int64(i) + weekWave[i%7]), Rejected: map[string]int64{"rate": int64(5 + i%4)}}
	if i%3 != 0 {
		r.Rejected["connections"] = int64(i % 3)
	}
	if i == acmeLaunch {
		r.PublishedAPI, r.PublishedPusher, r.PublishedClient = 80000, 15000, 3765
		r.Peak = splitPeak(940)
		r.Rejected = map[string]int64{"rate": 420, "connections": 37}
	}
	r.Deliveries = 3 * r.Published()
	r.BytesDelivered = 187 * r.Deliveries
	r.WebhooksSent = r.PublishedClient
	if i%9 == 8 {
		r.WebhooksFailed = 1
	}
	return r
}

// acmeMinute follows the hour of the day, with a spike of spikeEvents API
// events at spike: more than any other minute has, and more than any ten
// minutes without it, whatever the hour the test runs at.
// spikeEvents is the spike's API events; a busy hour's ten minutes have
// about 800 events in all.
const spikeEvents = 2000

func acmeMinute(spike time.Time) func(int, time.Time) usage.Row {
	return func(i int, at time.Time) usage.Row {
		w := dayWave[at.Hour()]
		r := usage.Row{PublishedAPI: w*50/100 + int64(i*7%11), PublishedPusher: w*12/100 + int64(i%5), PublishedClient: w*4/100 + int64(i%3),
			Peak: splitPeak(200 + 6*w + int64(i*13%17))}
		if at.Equal(spike) {
			r.PublishedAPI = spikeEvents
		}
		r.Deliveries = 3 * r.Published()
		r.BytesDelivered = 187 * r.Deliveries
		r.WebhooksSent = r.PublishedClient
		if i%211 == 0 {
			r.WebhooksFailed = 1
		}
		if w >= 95 && i%30 == 7 { // twice an hour at the busiest hours
			r.Rejected = map[string]int64{"rate": 3}
		}
		return r
	}
}

// globexDay and globexMinute are another tenant's: more events than
// Acme's, fewer connections, and numbers Acme never has (111,111; 4,242).
func globexDay(int) usage.Row {
	return usage.Row{PublishedAPI: 111111, Deliveries: 222222, BytesDelivered: 22222200, Peak: usage.Peak{SSE: 42, Total: 42},
		Rejected: map[string]int64{"event_size": 7}}
}

func globexMinute(int, time.Time) usage.Row {
	return usage.Row{PublishedAPI: 4242, Deliveries: 4242, BytesDelivered: 424200, Peak: usage.Peak{SSE: 42, Total: 42}}
}

// usageFixture is a console with two tenants' usage seeded: Acme's, with
// quotas of 1,000 connections and 2 publish requests a second, and
// Globex's; and a third tenant, Initech, without usage.
type usageFixture struct {
	in                   *instance
	pool                 *pgxpool.Pool
	cfg                  Config
	acme, globex, inite  signedUp
	acmeUsage, globUsage seededUsage
	spike                time.Time // Acme's busiest minute, 10 minutes ago
}

func newUsageFixture(t *testing.T) *usageFixture {
	t.Helper()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.OperatorToken = "operator-token-of-the-console-usage-test"
	in := newInstance(t, pool, cfg)
	f := &usageFixture{in: in, pool: pool, cfg: cfg, acme: in.signup("Acme"), globex: in.signup("Globex"), inite: in.signup("Initech")}
	now := time.Now().UTC()
	f.spike = now.Truncate(time.Minute).Add(-10 * time.Minute)
	f.acmeUsage = seedUsage(t, pool, f.acme.Tenant.ID, now, acmeDay, acmeMinute(f.spike))
	f.globUsage = seedUsage(t, pool, f.globex.Tenant.ID, now, globexDay, globexMinute)
	if res := in.do("PUT", "/v1/operator/tenants/"+f.acme.Tenant.ID+"/quotas", cfg.OperatorToken, `{"maxConnections":1000,"publishRate":2}`); res.status != 200 {
		t.Fatalf("set Acme's quotas = %d %s", res.status, res.body)
	}
	return f
}

// operator returns a browser logged in to the operator view.
func (f *usageFixture) operator(t *testing.T) *browser {
	t.Helper()
	op := f.in.browser()
	op.get("/console/operator/login")
	if code, _, h := op.post("/console/operator/login", url.Values{"token": {f.cfg.OperatorToken}}); code != http.StatusSeeOther || h.Get("Location") != "/console/operator" {
		t.Fatalf("operator login = %d %s", code, h.Get("Location"))
	}
	return op
}

// commas formats n as the console does: 98,765.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// chartLabel returns the aria-label of the chart with this id.
func chartLabel(t *testing.T, body, id string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<figure class="chart" id="chart-` + id + `".*?<svg [^>]*aria-label="([^"]*)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no chart %q with an aria-label in the page", id)
	}
	return html.UnescapeString(m[1])
}

// chartRow returns the cells of the row for period in the chart's table.
func chartRow(body, id, period string) []string {
	fig := regexp.MustCompile(`(?s)<figure class="chart" id="chart-` + id + `".*?</figure>`).FindString(body)
	row := regexp.MustCompile(`(?s)<tr data-point="\d+"><th scope="row">` + regexp.QuoteMeta(period) + `</th>(.*?)</tr>`).FindStringSubmatch(fig)
	if row == nil {
		return nil
	}
	var cells []string
	for _, c := range regexp.MustCompile(`<td class="num">([^<]*)</td>`).FindAllStringSubmatch(row[1], -1) {
		cells = append(cells, c[1])
	}
	return cells
}

// absent fails the test if body shows one of the numbers, as a whole
// number (formatted or not), or one of the words.
func absent(t *testing.T, what, body string, numbers []int64, words ...string) {
	t.Helper()
	for _, n := range numbers {
		for _, s := range []string{commas(n), strconv.FormatInt(n, 10)} {
			if regexp.MustCompile(`(^|[^0-9,.])` + regexp.QuoteMeta(s) + `([^0-9,]|$)`).MatchString(body) {
				t.Errorf("%s shows %s, another tenant's number", what, s)
			}
		}
	}
	for _, w := range words {
		if strings.Contains(body, w) {
			t.Errorf("%s shows %q, another tenant's", what, w)
		}
	}
}

// globexNumbers are figures only Globex's usage has.
var globexNumbers = []int64{111111, 222222, 4242, 42420}

// TestConsoleUsageCharts: the overview's charts over the last hour, day
// and 30 days carry the seeded numbers in their summaries (aria-label) and
// tables, with the tenant's quotas; the range links are plain links that
// htmx enhances, and their htmx request gets the chart section alone; a
// tenant never sees another tenant's numbers.
func TestConsoleUsageCharts(t *testing.T) {
	t.Parallel()
	f := newUsageFixture(t)
	b := f.in.browser()
	b.login(f.acme.APIKey)
	s := f.acmeUsage

	// 30 days: one bar a day; the launch day is the peak.
	code, body, _ := b.get("/console/overview?range=30d")
	if code != 200 {
		t.Fatalf("GET /console/overview?range=30d = %d", code)
	}
	days := s.lastDays(30)
	launch := s.day(29 - acmeLaunch)
	total := usage.Sum(days)
	want := fmt.Sprintf("Events published (events/day) over the last 30 days: peak 98,765 at %s, total %s.",
		launch.Period.Format(time.DateOnly), commas(total.Published()))
	if got := chartLabel(t, body, "events"); got != want {
		t.Errorf("the 30-day events chart's aria-label is\n\t%q, want\n\t%q", got, want)
	}
	if cells := chartRow(body, "events", launch.Period.Format(time.DateOnly)); !slices.Equal(cells, []string{"80,000", "15,000", "3,765", "98,765"}) {
		t.Errorf("the events table's row for the launch day = %q, want 80,000 15,000 3,765 98,765", cells)
	}
	var peak usage.Row
	for _, d := range days {
		if d.Peak.Total > peak.Peak.Total {
			peak = d
		}
	}
	want = fmt.Sprintf("Peak connections (connections at once) over the last 30 days: highest %s at %s; max connections 1,000.",
		commas(peak.Peak.Total), peak.Period.Format(time.DateOnly))
	if got := chartLabel(t, body, "connections"); got != want {
		t.Errorf("the 30-day connections chart's aria-label is\n\t%q, want\n\t%q", got, want)
	}
	if got := chartLabel(t, body, "deliveries"); !strings.Contains(got, "total "+commas(total.Deliveries)+".") {
		t.Errorf("the 30-day deliveries chart's aria-label %q lacks the total %s", got, commas(total.Deliveries))
	}
	if got := chartLabel(t, body, "rejections"); !strings.Contains(got, "peak 457 at "+launch.Period.Format(time.DateOnly)+", total "+commas(total.RejectedTotal())+".") {
		t.Errorf("the 30-day rejections chart's aria-label %q lacks the launch day's 457 and the total %s", got, commas(total.RejectedTotal()))
	}
	if got := chartLabel(t, body, "events"); strings.Contains(got, "publish quota") {
		t.Errorf("the 30-day events chart draws the publish quota, which caps seconds, not days: %q", got)
	}
	for key, v := range map[string]int64{"published": total.Published(), "deliveries": total.Deliveries, "peak": peak.Peak.Total, "rejected": total.RejectedTotal()} {
		if !strings.Contains(body, `data-testid="total-`+key+`">`+commas(v)+`<`) {
			t.Errorf("the 30-day totals lack %s %s", key, commas(v))
		}
	}
	if n := strings.Count(body, `role="img"`); n != 4 {
		t.Errorf("the overview has %d charts (role=img), want 4", n)
	}
	for _, want := range []string{`<details class="chart-data">`, `<caption class="sr-only">Events published, events/day, over the last 30 days</caption>`,
		`data-testid="connections">`, `active API keys`, `Get started`} {
		if !strings.Contains(body, want) {
			t.Errorf("the overview lacks %s", want)
		}
	}
	absent(t, "the 30-day overview", body, globexNumbers, "Globex")

	// The last hour: a point a minute, the spike its peak, and the publish
	// quota (2 requests/s) as 120 a minute.
	_, body, _ = b.get("/console/overview?range=hour")
	sp := s.minutes[f.spike]
	label := chartLabel(t, body, "events")
	if want := fmt.Sprintf("Events published (events/min) over the last hour: peak %s at %s, total ", commas(sp.Published()), f.spike.Format("2006-01-02 15:04 UTC")); !strings.HasPrefix(label, want) {
		t.Errorf("the hour's events chart's aria-label is\n\t%q, want it to begin\n\t%q", label, want)
	}
	if !strings.HasSuffix(label, "; publish quota 120 (2 requests/s × 60 s; a batch is one request).") {
		t.Errorf("the hour's events chart's aria-label %q lacks the publish quota of 120 a minute", label)
	}
	if !strings.Contains(body, `<line class="limit"`) || !strings.Contains(body, "publish quota 120") {
		t.Errorf("the hour's events chart draws no publish quota line")
	}
	if cells := chartRow(body, "events", f.spike.Format("2006-01-02 15:04 UTC")); !slices.Equal(cells, []string{commas(spikeEvents), commas(sp.PublishedPusher), commas(sp.PublishedClient), commas(sp.Published())}) {
		t.Errorf("the hour's events table's row for the spike = %q", cells)
	}
	if n := strings.Count(regexp.MustCompile(`(?s)<figure class="chart" id="chart-events".*?</figure>`).FindString(body), `<tr data-point=`); n != 60 {
		t.Errorf("the hour's events table has %d rows, want 60", n)
	}
	absent(t, "the hour's overview", body, globexNumbers, "Globex")

	// The last day: 10-minute points; the spike's ten minutes are the peak.
	_, body, _ = b.get("/console/overview?range=day")
	bucket := f.spike.Truncate(10 * time.Minute)
	var sum int64
	for m := range 10 {
		sum += s.minutes[bucket.Add(time.Duration(m)*time.Minute)].Published()
	}
	if got, want := chartLabel(t, body, "events"), fmt.Sprintf("Events published (events/10 min) over the last 24 hours: peak %s at %s, total ", commas(sum), bucket.Format("2006-01-02 15:04 UTC")); !strings.HasPrefix(got, want) {
		t.Errorf("the day's events chart's aria-label is\n\t%q, want it to begin\n\t%q", got, want)
	}
	if !strings.Contains(chartLabel(t, body, "events"), "publish quota 1,200 (2 requests/s × 600 s") {
		t.Errorf("the day's events chart lacks the publish quota of 1,200 every 10 minutes")
	}
	absent(t, "the day's overview", body, globexNumbers, "Globex")
	// The default range is the last day.
	if _, def, _ := b.get("/console/overview"); chartLabel(t, def, "events") != chartLabel(t, body, "events") {
		t.Errorf("the overview without ?range= is not the last day's")
	}

	// The range links work without JavaScript, and htmx swaps the section
	// alone and pushes the address.
	for _, r := range []string{"hour", "day", "30d"} {
		href := "/console/overview?range=" + r
		if !strings.Contains(body, `href="`+href+`" hx-get="`+href+`" hx-target="#usage-charts" hx-swap="outerHTML" hx-push-url="true"`) {
			t.Errorf("the overview lacks a plain link to %s enhanced by htmx", href)
		}
	}
	if !strings.Contains(body, `id="range-day" href="/console/overview?range=day" hx-get="/console/overview?range=day" hx-target="#usage-charts" hx-swap="outerHTML" hx-push-url="true" aria-current="true"`) {
		t.Errorf("the current range's link is not marked aria-current")
	}
	code, frag, h := b.get("/console/overview?range=30d", "HX-Request", "true", "HX-Target", "usage-charts", "HX-Current-URL", f.in.url+"/console/overview")
	if code != 200 || !strings.HasPrefix(frag, `<section class="card usage" id="usage-charts"`) || strings.Contains(frag, "<html") || strings.Contains(frag, "Get started") {
		t.Errorf("the range links' htmx request = %d, %.120q…, want the chart section alone", code, frag)
	}
	if !slices.Contains(h.Values("Vary"), "HX-Target") {
		t.Errorf("the overview's Vary = %q, want HX-Target among them", h.Values("Vary"))
	}
	if !strings.Contains(frag, "peak 98,765 at "+launch.Period.Format(time.DateOnly)) {
		t.Errorf("the 30-day chart section lacks the launch day's peak")
	}
	if _, page, _ := b.get("/console/overview?range=30d", "HX-Request", "true", "HX-History-Restore-Request", "true"); !strings.Contains(page, "<html") {
		t.Errorf("a history restore got a fragment, want the whole page")
	}

	// Globex sees its own numbers and none of Acme's.
	g := f.in.browser()
	g.login(f.globex.APIKey)
	_, body, _ = g.get("/console/overview?range=30d")
	if !strings.Contains(chartLabel(t, body, "events"), "peak "+commas(f.globUsage.day(1).Published())) {
		t.Errorf("Globex's chart lacks its own peak: %q", chartLabel(t, body, "events"))
	}
	absent(t, "Globex's overview", body, []int64{98765, 80000, 3765, 940}, "Acme")
}

// usageTable parses the Usage page's table: its rows by period (the
// total's is "Total"), each cell by column, bytes exact.
func usageTable(t *testing.T, body string) (periods []string, rows map[string]map[string]int64) {
	t.Helper()
	table := regexp.MustCompile(`(?s)<table id="usage-table">.*?</table>`).FindString(body)
	if table == "" {
		t.Fatalf("the Usage page has no table")
	}
	rows = map[string]map[string]int64{}
	cell := regexp.MustCompile(`(?s)<td class="num" data-col="([a-z_]+)">(?:<data value="(\d+)">)?\s*([0-9,]+)`)
	for _, tr := range regexp.MustCompile(`(?s)<tr data-period="([^"]+)"[^>]*>(.*?)</tr>`).FindAllStringSubmatch(table, -1) {
		row := map[string]int64{}
		for _, c := range cell.FindAllStringSubmatch(tr[2], -1) {
			v := c[3]
			if c[2] != "" {
				v = c[2]
			}
			n, err := strconv.ParseInt(strings.ReplaceAll(v, ",", ""), 10, 64)
			if err != nil {
				t.Fatalf("cell %s of %s: %q", c[1], tr[1], v)
			}
			row[c[1]] = n
		}
		periods = append(periods, tr[1])
		rows[tr[1]] = row
	}
	return periods, rows
}

// usageCells are a row's figures as the Usage page and the CSV name them.
func usageCells(r usage.Row) map[string]int64 {
	return map[string]int64{
		"published_api": r.PublishedAPI, "published_pusher": r.PublishedPusher, "published_client": r.PublishedClient,
		"published_total": r.Published(), "deliveries": r.Deliveries, "bytes_delivered": r.BytesDelivered,
		"peak_total": r.Peak.Total, "webhooks_sent": r.WebhooksSent, "webhooks_failed": r.WebhooksFailed, "rejected": r.RejectedTotal(),
	}
}

// TestConsoleUsagePage: the Usage page by day and by month, its totals the
// sums of the seeded days, its CSV the same as its table; this month by
// day unless asked otherwise; a bad range is explained; no other tenant's
// numbers.
func TestConsoleUsagePage(t *testing.T) {
	t.Parallel()
	f := newUsageFixture(t)
	b := f.in.browser()
	b.login(f.acme.APIKey)
	s := f.acmeUsage
	today := s.now.Truncate(24 * time.Hour)
	from := today.AddDate(0, 0, -29).Format(time.DateOnly)
	query := "granularity=day&from=" + from + "&to=" + today.Format(time.DateOnly)

	code, body, _ := b.get("/console/usage?" + query)
	if code != 200 || !strings.Contains(body, `<a href="/console/usage" aria-current="page">Usage</a>`) {
		t.Fatalf("GET /console/usage = %d, or without its nav entry", code)
	}
	periods, rows := usageTable(t, body)
	days := s.lastDays(30)
	if len(periods) != 31 || periods[30] != "Total" {
		t.Fatalf("the table's rows are %q, want the 30 days and Total", periods)
	}
	for i, d := range days {
		if p := d.Period.Format(time.DateOnly); periods[i] != p || !maps.Equal(rows[p], usageCells(d)) {
			t.Errorf("row %d = %s %v, want %s %v", i, periods[i], rows[periods[i]], p, usageCells(d))
		}
	}
	total := usage.Sum(days)
	if !maps.Equal(rows["Total"], usageCells(total)) {
		t.Errorf("the totals row = %v, want the seeded days' sums %v", rows["Total"], usageCells(total))
	}
	if !strings.Contains(body, `<span class="reasons">rate 420, connections 37</span>`) {
		t.Errorf("the launch day's refusals are not broken down by reason")
	}
	if !strings.Contains(body, `<data value="`+strconv.FormatInt(total.BytesDelivered, 10)+`">`) || !regexp.MustCompile(`\d+\.\d (KiB|MiB|GiB)</data>`).MatchString(body) {
		t.Errorf("bytes are not shown in KiB, MiB or GiB with the exact count")
	}
	absent(t, "the Usage page", body, globexNumbers, "Globex")

	// The CSV link keeps the range, and the file is the table.
	m := regexp.MustCompile(`<a class="button secondary" href="([^"]+)" download hx-boost="false"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no Download CSV link (a plain download, not boosted by htmx)")
	}
	link := html.UnescapeString(m[1])
	if link != "/console/usage.csv?"+"from="+from+"&granularity=day&to="+today.Format(time.DateOnly) {
		t.Errorf("the CSV link is %q", link)
	}
	code, csvBody, h := b.get(link)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/csv") || !strings.Contains(h.Get("Content-Disposition"), `attachment; filename="hybridrt-usage-`+from) {
		t.Fatalf("GET %s = %d %s %s", link, code, h.Get("Content-Type"), h.Get("Content-Disposition"))
	}
	lines, err := csv.NewReader(strings.NewReader(csvBody)).ReadAll()
	if err != nil || len(lines) != 31 {
		t.Fatalf("the CSV has %d lines (%v), want a header and 30 days", len(lines), err)
	}
	head := lines[0]
	for _, line := range lines[1:] {
		got := map[string]int64{}
		for j, v := range line[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			switch col := head[j+1]; {
			case strings.HasPrefix(col, "rejected_"):
				got["rejected"] += n
			case col == "peak_sse" || col == "peak_websocket" || col == "peak_pusher" || col == "peak_polling":
			default:
				got[col] = n
			}
		}
		if !maps.Equal(got, rows[line[0]]) {
			t.Errorf("the CSV's %s = %v, the table's %v", line[0], got, rows[line[0]])
		}
	}
	absent(t, "the CSV", csvBody, globexNumbers)

	// By month: a row a month, each the sum of its days.
	_, body, _ = b.get("/console/usage?granularity=month&from=" + from + "&to=" + today.Format(time.DateOnly))
	periods, rows = usageTable(t, body)
	months := map[string][]usage.Row{}
	for _, d := range days {
		months[d.Period.Format("2006-01")] = append(months[d.Period.Format("2006-01")], d)
	}
	if want := append(slices.Sorted(maps.Keys(months)), "Total"); !slices.Equal(periods, want) {
		t.Errorf("by month the rows are %q, want %q", periods, want)
	}
	for p, ds := range months {
		if !maps.Equal(rows[p], usageCells(usage.Sum(ds))) {
			t.Errorf("month %s = %v, want %v", p, rows[p], usageCells(usage.Sum(ds)))
		}
	}
	if !maps.Equal(rows["Total"], usageCells(total)) {
		t.Errorf("by month the totals row = %v, want %v", rows["Total"], usageCells(total))
	}

	// By default: this month so far, by day.
	_, body, _ = b.get("/console/usage")
	first := time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, time.UTC)
	for _, want := range []string{`name="from" type="date" value="` + first.Format(time.DateOnly) + `"`, `name="to" type="date" value="` + today.Format(time.DateOnly) + `"`, `<option value="day" selected>`} {
		if !strings.Contains(body, want) {
			t.Errorf("the default Usage page lacks %s", want)
		}
	}
	periods, _ = usageTable(t, body)
	var thisMonth []string
	for _, d := range days {
		if !d.Period.Before(first) {
			thisMonth = append(thisMonth, d.Period.Format(time.DateOnly))
		}
	}
	if !slices.Equal(periods, append(thisMonth, "Total")) {
		t.Errorf("the default Usage page's rows are %q, want this month's days %q and Total", periods, thisMonth)
	}

	// A bad range is explained, next to the form (the page answers 200, as
	// the console's other forms do with their errors); the CSV, a 400.
	code, body, _ = b.get("/console/usage?from=2026-13-01")
	if code != http.StatusOK || !strings.Contains(body, `id="e-range" role="alert"`) || !strings.Contains(body, "is not a day") || !strings.Contains(body, `aria-describedby="e-range"`) {
		t.Errorf("a bad range = %d, without its explanation", code)
	}
	code, _, h = b.get("/console/usage.csv?granularity=week")
	if code != http.StatusBadRequest || h.Get("Content-Type") != "application/problem+json" {
		t.Errorf("the CSV of a bad granularity = %d %s, want a 400 problem", code, h.Get("Content-Type"))
	}

	// Logged out, both are the login page's.
	for _, path := range []string{"/console/usage", "/console/usage.csv"} {
		if code, _, h := f.in.browser().get(path); code != http.StatusSeeOther || h.Get("Location") != "/console/login" {
			t.Errorf("GET %s logged out = %d %s", path, code, h.Get("Location"))
		}
	}
}

// TestConsoleOperatorUsage: the operator view charts the whole service
// (both tenants' usage added up), lists the top tenants by events and by
// connections in order, each linking to its own charts, which show that
// tenant alone with its quotas; and instances with their lag. Tenants
// cannot reach it.
func TestConsoleOperatorUsage(t *testing.T) {
	t.Parallel()
	f := newUsageFixture(t)
	op := f.operator(t)
	acme, globex := f.acmeUsage.lastDays(30), f.globUsage.lastDays(30)

	code, body, _ := op.get("/console/operator?range=30d")
	if code != 200 {
		t.Fatalf("GET /console/operator?range=30d = %d", code)
	}
	var service []usage.Row
	for i := range acme {
		// The service's peak in a period is the sum of the tenants' peaks.
		r := usage.Sum([]usage.Row{acme[i], globex[i]})
		r.Peak.Total = acme[i].Peak.Total + globex[i].Peak.Total
		r.Period = acme[i].Period
		service = append(service, r)
	}
	// Sum takes the highest of the peaks; the rest it adds.
	sum := usage.Sum(append(slices.Clone(acme), globex...))
	var servicePeak usage.Row
	for _, r := range service {
		if r.Peak.Total > servicePeak.Peak.Total {
			servicePeak = r
		}
	}
	for key, v := range map[string]int64{"published": sum.Published(), "deliveries": sum.Deliveries, "peak": servicePeak.Peak.Total, "rejected": sum.RejectedTotal()} {
		if !strings.Contains(body, `data-testid="total-`+key+`">`+commas(v)+`<`) {
			t.Errorf("the service's totals over 30 days lack %s %s", key, commas(v))
		}
	}
	if got := chartLabel(t, body, "connections"); !strings.Contains(got, "highest "+commas(servicePeak.Peak.Total)+" at "+servicePeak.Period.Format(time.DateOnly)+".") || strings.Contains(got, "max connections") {
		t.Errorf("the service's connections chart's aria-label is %q, want the highest sum of peaks and no quota", got)
	}
	if !strings.Contains(body, `data-testid="usage-scope">`) || !strings.Contains(body, "Showing the whole service.") {
		t.Errorf("the operator view does not say it shows the whole service")
	}

	// The top tenants, in order: Globex publishes more, Acme holds more
	// connections; Initech, without usage, is in neither.
	top := func(id string) []string {
		table := regexp.MustCompile(`(?s)<table id="` + id + `">.*?</table>`).FindString(body)
		var ids []string
		for _, m := range regexp.MustCompile(`<tr data-top-tenant="(\d+)">`).FindAllStringSubmatch(table, -1) {
			ids = append(ids, m[1])
		}
		return ids
	}
	if got, want := top("top-events"), []string{f.globex.Tenant.ID, f.acme.Tenant.ID}; !slices.Equal(got, want) {
		t.Errorf("the top tenants by events are %q, want Globex, Acme %q", got, want)
	}
	if got, want := top("top-connections"), []string{f.acme.Tenant.ID, f.globex.Tenant.ID}; !slices.Equal(got, want) {
		t.Errorf("the top tenants by connections are %q, want Acme, Globex %q", got, want)
	}
	var acmeEvents, globexEvents int64
	for i := range acme {
		acmeEvents += acme[i].Published()
		globexEvents += globex[i].Published()
	}
	for _, want := range []string{
		`<tr data-top-tenant="` + f.globex.Tenant.ID + `"><td class="num">1</td><td><a href="/console/operator?range=30d&amp;tenant=` + f.globex.Tenant.ID + `">Globex</a></td><td class="num">` + commas(globexEvents) + `</td>`,
		`<tr data-top-tenant="` + f.acme.Tenant.ID + `"><td class="num">1</td><td><a href="/console/operator?range=30d&amp;tenant=` + f.acme.Tenant.ID + `">Acme</a></td><td class="num">940</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the top tenants lack %s", want)
		}
	}

	// Instances, with connections by transport and their lag.
	m := regexp.MustCompile(`(?s)<tr data-instance="` + regexp.QuoteMeta(f.in.svc.registry.InstanceID()) + `">.*?data-testid="lag">\s*(\d+) s`).FindStringSubmatch(body)
	if m == nil {
		t.Errorf("the instances table lacks this instance with its lag in seconds")
	} else if lag, _ := strconv.Atoi(m[1]); lag > 20 {
		t.Errorf("this instance's lag is %d s, want under 20", lag)
	}

	// One tenant: its own numbers and quotas, not the service's.
	_, body, _ = op.get("/console/operator?range=30d&tenant=" + f.acme.Tenant.ID)
	launch := f.acmeUsage.day(29 - acmeLaunch)
	if got := chartLabel(t, body, "events"); !strings.Contains(got, "peak 98,765 at "+launch.Period.Format(time.DateOnly)+", total "+commas(acmeEvents)+".") {
		t.Errorf("Acme's events chart in the operator view: %q", got)
	}
	if got := chartLabel(t, body, "connections"); !strings.HasSuffix(got, "; max connections 1,000.") {
		t.Errorf("Acme's connections chart in the operator view lacks its quota: %q", got)
	}
	if !strings.Contains(body, "Showing tenant Acme (id "+f.acme.Tenant.ID+").") || !strings.Contains(body, `<a href="/console/operator?range=30d">Show the whole service</a>`) {
		t.Errorf("the operator view of Acme does not say whose it is, or how to go back")
	}
	if !strings.Contains(body, `href="/console/operator?range=hour&amp;tenant=`+f.acme.Tenant.ID+`"`) {
		t.Errorf("the range links of a tenant's charts lose the tenant")
	}
	if !strings.Contains(body, `data-testid="total-published">`+commas(acmeEvents)+`<`) {
		t.Errorf("the operator view of Acme totals %s events", commas(acmeEvents))
	}
	code, frag, _ := op.get("/console/operator?range=hour&tenant="+f.acme.Tenant.ID, "HX-Request", "true", "HX-Target", "usage-charts")
	if code != 200 || !strings.HasPrefix(frag, `<section class="card usage" id="usage-charts"`) || !strings.Contains(frag, "tenant Acme") {
		t.Errorf("the operator's range link htmx request = %d %.100q, want Acme's chart section alone", code, frag)
	}
	for _, bad := range []string{"999999", "x", "-1"} {
		if code, _, _ := op.get("/console/operator?tenant=" + bad); code != http.StatusNotFound {
			t.Errorf("the operator view of tenant %q = %d, want 404", bad, code)
		}
	}

	// Tenants and strangers cannot reach it.
	dev := f.in.browser()
	dev.login(f.acme.APIKey)
	for _, b := range []*browser{dev, f.in.browser()} {
		if code, _, h := b.get("/console/operator?tenant=" + f.globex.Tenant.ID); code != http.StatusSeeOther || h.Get("Location") != "/console/operator/login" {
			t.Errorf("the operator view without an operator session = %d %s", code, h.Get("Location"))
		}
		if code, _, h := b.get("/console/operator?range=30d", "HX-Request", "true", "HX-Target", "usage-charts"); code != http.StatusUnauthorized || h.Get("HX-Redirect") != "/console/operator/login" {
			t.Errorf("the operator charts' htmx request without an operator session = %d %s", code, h.Get("HX-Redirect"))
		}
	}
	if code, _, _ := op.get("/console/usage"); code != http.StatusSeeOther {
		t.Errorf("the operator on a tenant's Usage page = %d, want a redirect", code)
	}
}

// TestConsoleUsageBrowser opens the overview with 30 days of usage in
// Chromium: the charts fill their boxes at 1200 px and at 375 px without
// the page scrolling sideways, their text stays legible, and the range
// links work from the keyboard, swapping the charts in place, with a new
// history entry that Back returns from. No script error, CSP violation or
// failed htmx request on the way. With UPDATE_SCREENSHOT=1 it writes
// docs/console-usage.png, the 30-day overview at 1200×900.
func TestConsoleUsageBrowser(t *testing.T) {
	// Not parallel, like TestConsoleEndToEnd: a browser is heavy.
	chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), consoleTestWait)
	t.Cleanup(cancel)
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.OperatorToken = "operator-token-of-the-usage-browser-test"
	in := newInstance(t, pool, cfg)
	acme := in.signup("Acme")
	now := time.Now().UTC()
	spike := now.Truncate(time.Minute).Add(-10 * time.Minute)
	seeded := seedUsage(t, pool, acme.Tenant.ID, now, acmeDay, acmeMinute(spike))
	if res := in.do("PUT", "/v1/operator/tenants/"+acme.Tenant.ID+"/quotas", cfg.OperatorToken, `{"maxConnections":1000,"publishRate":2}`); res.status != 200 {
		t.Fatalf("set Acme's quotas = %d %s", res.status, res.body)
	}

	tab := openConsoleTab(t, newBrowser(t, ctx), "the usage tab", false)
	tab.do("set the window to 1200×900", chromedp.EmulateViewport(1200, 900))
	tab.open(in.url + "/console/login")
	tab.do("log in",
		chromedp.SendKeys(chromedp.CSS("#f-apiKey"), acme.APIKey),
		chromedp.Click(chromedp.CSS(`form[action="/console/login"] button[type="submit"]`)),
	)
	tab.waitFor("the overview", `location.pathname === '/console/overview' && document.querySelector('#usage-charts')`, consoleStepWait)
	tab.open(in.url + "/console/overview?range=30d")
	tab.waitFor("the 30-day charts", `document.querySelectorAll('#usage-charts svg[role="img"]').length === 4`, consoleStepWait)
	launch := seeded.day(29 - acmeLaunch).Period.Format(time.DateOnly)
	if label := consoleEval[string](tab, `document.querySelector('#chart-events svg').getAttribute('aria-label')`); !strings.Contains(label, "peak 98,765 at "+launch) {
		t.Errorf("the events chart's aria-label in the browser is %q", label)
	}

	// The layout at a width: no sideways scroll, every chart within the
	// window and filling its figure, axis text at least minPx on screen
	// (the SVG scales, and its text with it).
	type layout struct {
		ScrollWidth int     `json:"scrollWidth"`
		Charts      int     `json:"charts"`
		Widest      float64 `json:"widest"`    // the right edge furthest right
		Narrowest   float64 `json:"narrowest"` // the least share of its figure a chart fills
		MinText     float64 `json:"minText"`   // the smallest axis label's font size on screen, in px
		Columns     int     `json:"columns"`
	}
	measure := func(width int64, minPx float64) layout {
		t.Helper()
		tab.do(fmt.Sprintf("set the window %d px wide", width), chromedp.EmulateViewport(width, 900))
		l := consoleEval[layout](tab, `(() => {
			const svgs = [...document.querySelectorAll('#usage-charts svg.chart-svg')];
			const texts = [...document.querySelectorAll('#usage-charts svg.chart-svg .axis text, #usage-charts svg.chart-svg .grid text')];
			const tops = new Set(svgs.map(s => Math.round(s.closest('figure').getBoundingClientRect().top)));
			return {
				scrollWidth: document.documentElement.scrollWidth,
				charts: svgs.length,
				widest: Math.max(...svgs.map(s => s.getBoundingClientRect().right)),
				narrowest: Math.min(...svgs.map(s => s.getBoundingClientRect().width / s.closest('figure').getBoundingClientRect().width)),
				minText: Math.min(...texts.map(e => parseFloat(getComputedStyle(e).fontSize) *
					e.ownerSVGElement.getBoundingClientRect().width / e.ownerSVGElement.viewBox.baseVal.width)),
				columns: svgs.length / tops.size,
			};
		})()`)
		if l.ScrollWidth > int(width) {
			t.Errorf("at %d px the page is %d px wide: it scrolls sideways", width, l.ScrollWidth)
		}
		if l.Charts != 4 || l.Widest > float64(width) || l.Narrowest < 0.99 {
			t.Errorf("at %d px: %d charts, right edge at %.0f px, the narrowest fills %.2f of its figure", width, l.Charts, l.Widest, l.Narrowest)
		}
		if l.MinText < minPx {
			t.Errorf("at %d px the smallest axis label is %.1f px, want at least %.0f", width, l.MinText, minPx)
		}
		t.Logf("at %d px: %d charts in %d columns, the smallest axis label %.1f px", width, l.Charts, l.Columns, l.MinText)
		return l
	}
	if l := measure(1200, 11); l.Columns != 2 {
		t.Errorf("at 1200 px the charts are in %d columns, want 2", l.Columns)
	}
	if l := measure(375, 11); l.Columns != 1 {
		t.Errorf("at 375 px the charts are in %d columns, want 1", l.Columns)
	}
	tab.check("the charts' layout")

	// The Usage page fits a 375 px window too (its wide table scrolls in its
	// box), and its form says what is wrong with a range, JavaScript or not.
	tab.open(in.url + "/console/usage")
	if w := consoleEval[int](tab, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the Usage page is %d px wide in a 375 px window: it scrolls sideways", w)
	}
	tab.do("ask for a range that ends before it starts",
		chromedp.SetValue(chromedp.CSS("#f-from"), "2026-03-10"),
		chromedp.SetValue(chromedp.CSS("#f-to"), "2026-03-01"),
		chromedp.Click(chromedp.CSS(`form.usage-form button[type="submit"]`)),
	)
	tab.waitFor("the range's error", `document.querySelector('#e-range[role="alert"]') && /before from/.test(document.querySelector('#e-range').textContent)`, consoleStepWait)
	tab.check("the Usage page")
	tab.open(in.url + "/console/overview?range=30d")

	// The screenshot: the 30-day overview at 1200×900, at rest.
	tab.do("set the window to 1200×900, the mouse off the page",
		chromedp.EmulateViewport(1200, 900),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 1, 1),
		chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`),
	)
	tab.waitFor("the page to come to rest", `document.getAnimations().every(a => a.playState !== 'running' || a.effect.getTiming().iterations === Infinity)`, consoleStepWait)
	sctx, scancel := context.WithTimeout(tab.ctx, consoleStepWait)
	shot, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
	scancel()
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if size := img.Bounds().Size(); size.X != 1200 || size.Y != 900 {
		t.Errorf("the screenshot is %v, want 1200×900", size)
	}
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		path := filepath.Join("..", "..", "docs", "console-usage.png")
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", path, len(shot))
	}

	// The range links from the keyboard: Tab to "Last hour", Enter. The
	// charts change in place (the document stays), the address follows,
	// and the focus stays on the link, visibly.
	if err := tab.eval(`window.__sameDocument = true`); err != nil {
		t.Fatal(err)
	}
	tabTo := func(id string) {
		t.Helper()
		for range 60 {
			if consoleEval[string](tab, `document.activeElement ? document.activeElement.id : ''`) == id {
				return
			}
			tab.do("press Tab", chromedp.KeyEvent(kb.Tab))
		}
		t.Fatalf("60 presses of Tab never reached #%s\n%s", id, tab.describe())
	}
	follow := func(key, span string) {
		t.Helper()
		tabTo("range-" + key)
		if outline := consoleEval[string](tab, `getComputedStyle(document.activeElement).outlineStyle`); outline == "none" {
			t.Errorf("the focused range link #range-%s shows no outline", key)
		}
		// htmx makes the links it swapped in live once they settle: the
		// wait below waits for that too, so the next link is htmx's.
		tab.do("press Enter on #range-"+key, chromedp.KeyEvent(kb.Enter))
		tab.waitFor("the charts "+span, `location.search === '?range=`+key+`' && document.querySelector('#usage-title').textContent === 'Usage `+span+`'
			&& document.querySelector('#range-`+key+`').getAttribute('aria-current') === 'true'
			&& document.querySelector('#chart-events svg').getAttribute('aria-label').includes('`+span+`')
			&& !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')`, consoleStepWait)
		if !consoleEval[bool](tab, `window.__sameDocument === true`) {
			t.Errorf("following the range link %s reloaded the page: htmx did not swap the charts", key)
		}
		if id := consoleEval[string](tab, `document.activeElement ? document.activeElement.id : ''`); id != "range-"+key {
			t.Errorf("after the swap the focus is on %q, want the link #range-%s", id, key)
		}
	}
	tab.do("start from the top of the page", chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur(), window.scrollTo(0, 0)`))
	follow("hour", "over the last hour")
	if label := consoleEval[string](tab, `document.querySelector('#chart-events svg').getAttribute('aria-label')`); !strings.Contains(label, "at "+spike.Format("2006-01-02 15:04 UTC")) {
		t.Errorf("the hour's events chart in the browser peaks elsewhere than the spike: %q", label)
	}
	follow("day", "over the last 24 hours")
	tab.check("following the range links")

	// Back: the previous range, from the server (htmx keeps no history cache).
	if err := tab.eval(`history.back()`); err != nil {
		t.Fatal(err)
	}
	tab.waitFor("the hour's charts after Back", `location.search === '?range=hour' && document.querySelector('#usage-title') && document.querySelector('#usage-title').textContent === 'Usage over the last hour'`, consoleStepWait)
	tab.check("going back")

	// The numbers as a table, opened from the keyboard.
	tab.do("focus the events chart's table", chromedp.Focus(chromedp.CSS(`#chart-events details > summary`)))
	tab.do("open it", chromedp.KeyEvent(kb.Enter))
	tab.waitFor("the events table open", `document.querySelector('#chart-events details').open && document.querySelector('#chart-events details tbody tr').getBoundingClientRect().height > 0`, consoleStepWait)
	tab.check("opening the numbers")
}
