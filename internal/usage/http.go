package usage

import (
	"encoding/csv"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// MaxRangeDays is the longest range one request may ask for: the days kept.
const MaxRangeDays = KeepDays

// Report is the answer of the usage API: one row a period with usage, and
// their total.
type Report struct {
	Granularity Granularity `json:"granularity"`
	From        string      `json:"from"` // the first day, YYYY-MM-DD
	To          string      `json:"to"`   // the last day, included
	Usage       []Row       `json:"usage"`
	Total       Row         `json:"total"` // peaks: the highest period's
}

// ParseRange reads from, to (days, YYYY-MM-DD, UTC, both included) and
// granularity (day or month) from a request's query: by default, this
// month so far, by day. It returns the range as [from, to+1 day), or a
// 400 problem that says what to send.
func ParseRange(r *http.Request, now time.Time) (g Granularity, from, to time.Time, err error) {
	q := r.URL.Query()
	today := now.UTC().Truncate(24 * time.Hour)
	from = time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, time.UTC)
	to = today
	day := func(name string, def time.Time) (time.Time, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		d, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return time.Time{}, web.NewProblem(http.StatusBadRequest, "invalid_range",
				fmt.Sprintf("%q is not a day: give %s as YYYY-MM-DD (UTC), such as %s", v, name, today.Format(time.DateOnly)))
		}
		return d, nil
	}
	if from, err = day("from", from); err != nil {
		return "", time.Time{}, time.Time{}, err
	}
	if to, err = day("to", to); err != nil {
		return "", time.Time{}, time.Time{}, err
	}
	switch g = Granularity(q.Get("granularity")); g {
	case "":
		g = Days
	case Days, Months:
	default:
		return "", time.Time{}, time.Time{}, web.NewProblem(http.StatusBadRequest, "invalid_granularity",
			fmt.Sprintf("granularity %q is not day or month", q.Get("granularity")))
	}
	switch {
	case to.Before(from):
		return "", time.Time{}, time.Time{}, web.NewProblem(http.StatusBadRequest, "invalid_range",
			"to ("+to.Format(time.DateOnly)+") is before from ("+from.Format(time.DateOnly)+")")
	case to.Sub(from) >= MaxRangeDays*24*time.Hour:
		return "", time.Time{}, time.Time{}, web.NewProblem(http.StatusBadRequest, "invalid_range",
			fmt.Sprintf("a range is at most %d days, the days kept", MaxRangeDays))
	}
	return g, from, to.AddDate(0, 0, 1), nil
}

// Build reads the report of scope over [from, to).
func Build(r *http.Request, pool *pgxpool.Pool, scope Scope, g Granularity, from, to time.Time) (Report, error) {
	rows, err := Read(r.Context(), pool, Query{Scope: scope, Granularity: g, From: from, To: to})
	if err != nil {
		return Report{}, err
	}
	rep := Report{Granularity: g, From: from.Format(time.DateOnly), To: to.AddDate(0, 0, -1).Format(time.DateOnly), Usage: rows}
	rep.Total = Sum(rows)
	rep.Total.Period = from
	return rep, nil
}

// Sum adds rows up; peaks are the highest of them.
func Sum(rows []Row) Row {
	t := Row{Rejected: map[string]int64{}}
	for _, r := range rows {
		t.PublishedAPI += r.PublishedAPI
		t.PublishedPusher += r.PublishedPusher
		t.PublishedClient += r.PublishedClient
		t.Deliveries += r.Deliveries
		t.BytesDelivered += r.BytesDelivered
		t.WebhooksSent += r.WebhooksSent
		t.WebhooksFailed += r.WebhooksFailed
		t.Peak.SSE = max(t.Peak.SSE, r.Peak.SSE)
		t.Peak.WebSocket = max(t.Peak.WebSocket, r.Peak.WebSocket)
		t.Peak.Pusher = max(t.Peak.Pusher, r.Peak.Pusher)
		t.Peak.Polling = max(t.Peak.Polling, r.Peak.Polling)
		t.Peak.Total = max(t.Peak.Total, r.Peak.Total)
		for k, v := range r.Rejected {
			t.Rejected[k] += v
		}
	}
	return t
}

// HandleTenant serves GET /v1/usage: the API key's tenant's usage by day
// or month, as JSON, or as CSV with format=csv.
func HandleTenant(log *slog.Logger, pool *pgxpool.Pool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, log, pool, Scope{Tenant: tenant.FromContext(r.Context())})
	}
}

// HandleOperator serves GET /v1/operator/usage: the whole service's usage,
// or with tenant=<id> one tenant's.
func HandleOperator(log *slog.Logger, pool *pgxpool.Pool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scope := Scope{All: true}
		if v := r.URL.Query().Get("tenant"); v != "" {
			id, err := strconv.ParseInt(v, 10, 64)
			if err != nil || id <= 0 {
				web.Error(w, http.StatusBadRequest, "invalid_tenant", "tenant is a tenant's numeric id")
				return
			}
			scope = Scope{Tenant: tenant.ID(id)}
		}
		serve(w, r, log, pool, scope)
	}
}

func serve(w http.ResponseWriter, r *http.Request, log *slog.Logger, pool *pgxpool.Pool, scope Scope) {
	g, from, to, err := ParseRange(r, time.Now())
	if err != nil {
		web.Fail(w, r, log, err)
		return
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "csv" {
		web.Error(w, http.StatusBadRequest, "invalid_format", "format is json (the default) or csv")
		return
	}
	rep, err := Build(r, pool, scope, g, from, to)
	if err != nil {
		web.Fail(w, r, log, web.Unavailable(err))
		return
	}
	if format == "csv" {
		WriteCSV(w, rep, "hybridrt-usage-"+rep.From+"-"+rep.To+".csv")
		return
	}
	web.Encode(w, http.StatusOK, rep)
}

// WriteCSV sends rep as a CSV file named name: one line a period, with
// the reasons of refusals as columns of their own.
func WriteCSV(w http.ResponseWriter, rep Report, name string) {
	reasons := map[string]bool{}
	for _, row := range rep.Usage {
		for k := range row.Rejected {
			reasons[k] = true
		}
	}
	cols := slices.Sorted(maps.Keys(reasons))
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	head := []string{rep.Granularity.label(), "published_api", "published_pusher", "published_client", "published_total",
		"deliveries", "bytes_delivered", "webhooks_sent", "webhooks_failed",
		"peak_sse", "peak_websocket", "peak_pusher", "peak_polling", "peak_total"}
	for _, c := range cols {
		head = append(head, "rejected_"+c)
	}
	_ = cw.Write(head)
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, row := range rep.Usage {
		period := row.Period.Format(time.DateOnly)
		if rep.Granularity == Months {
			period = row.Period.Format("2006-01")
		}
		line := []string{period, n(row.PublishedAPI), n(row.PublishedPusher), n(row.PublishedClient), n(row.Published()),
			n(row.Deliveries), n(row.BytesDelivered), n(row.WebhooksSent), n(row.WebhooksFailed),
			n(row.Peak.SSE), n(row.Peak.WebSocket), n(row.Peak.Pusher), n(row.Peak.Polling), n(row.Peak.Total)}
		for _, c := range cols {
			line = append(line, n(row.Rejected[c]))
		}
		_ = cw.Write(line)
	}
	cw.Flush()
}

func (g Granularity) label() string {
	if g == Months {
		return "month"
	}
	return "day"
}
