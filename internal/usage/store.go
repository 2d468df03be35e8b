package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// Retention of the two granularities.
const (
	KeepMinutes = 48 * time.Hour
	KeepDays    = 400 // days
)

// Row is a tenant's (or, for the operator, the service's) usage over one
// period: a minute, a bucket of minutes, a day or a month.
type Row struct {
	Period          time.Time        `json:"period"` // its start, UTC
	PublishedAPI    int64            `json:"publishedApi"`
	PublishedPusher int64            `json:"publishedPusher"`
	PublishedClient int64            `json:"publishedClient"`
	Deliveries      int64            `json:"deliveries"`
	BytesDelivered  int64            `json:"bytesDelivered"`
	WebhooksSent    int64            `json:"webhooksSent"`
	WebhooksFailed  int64            `json:"webhooksFailed"`
	Peak            Peak             `json:"peakConnections"`
	Rejected        map[string]int64 `json:"rejected"`
}

// Published is every event stored in the period, whatever the door.
func (r Row) Published() int64 { return r.PublishedAPI + r.PublishedPusher + r.PublishedClient }

// RejectedTotal is every refused request in the period.
func (r Row) RejectedTotal() int64 {
	var n int64
	for _, v := range r.Rejected {
		n += v
	}
	return n
}

// Peak is the most connections at once in a period, by transport, and in
// all (which is not the sum of the transports' peaks: they need not come
// at the same moment).
type Peak struct {
	SSE       int64 `json:"sse"`
	WebSocket int64 `json:"websocket"` // hybridrt.v1
	Pusher    int64 `json:"pusher"`    // the Pusher protocol
	Polling   int64 `json:"polling"`
	Total     int64 `json:"total"`
}

// rollupLock is the advisory lock key of the roll-up ("hrt-roll").
const rollupLock = 0x6872742d726f6c6c

// Rollup recomputes the day rows of every day that still has minute rows
// (the last 48 h: today, yesterday, and the day before, in part) from them.
// Counts only grow, so each column keeps the greater of what it had and
// what the minutes now add up to: running it twice, or on two instances,
// counts nothing twice, and a day whose oldest minutes are gone keeps what
// was counted when they were there. Then it drops minute rows older than
// KeepMinutes and day rows older than KeepDays. Roll-ups take turns.
func Rollup(ctx context.Context, pool *pgxpool.Pool, now time.Time) error {
	now = now.UTC()
	today := now.Truncate(24 * time.Hour)
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(rollupLock)); err != nil {
			return err
		}
		// Peaks of a day: the highest minute, per transport and in all.
		if _, err := tx.Exec(ctx, `
			INSERT INTO usage_days (tenant_id, day, published_api, published_pusher, published_client, deliveries, bytes_delivered,
			                        webhooks_sent, webhooks_failed, peak_sse, peak_websocket, peak_pusher, peak_polling, peak_total, rejected)
			SELECT tenant_id, (minute AT TIME ZONE 'UTC')::date,
			       sum(published_api), sum(published_pusher), sum(published_client), sum(deliveries), sum(bytes_delivered),
			       sum(webhooks_sent), sum(webhooks_failed),
			       max(peak_sse), max(peak_websocket), max(peak_pusher), max(peak_polling), max(peak_total), usage_jsonb_sum(rejected)
			  FROM usage_minutes
			 WHERE minute >= $1 AND minute < $2
			 GROUP BY 1, 2
			 ORDER BY 1, 2
			ON CONFLICT (tenant_id, day) DO UPDATE SET
			    published_api    = greatest(usage_days.published_api, EXCLUDED.published_api),
			    published_pusher = greatest(usage_days.published_pusher, EXCLUDED.published_pusher),
			    published_client = greatest(usage_days.published_client, EXCLUDED.published_client),
			    deliveries       = greatest(usage_days.deliveries, EXCLUDED.deliveries),
			    bytes_delivered  = greatest(usage_days.bytes_delivered, EXCLUDED.bytes_delivered),
			    webhooks_sent    = greatest(usage_days.webhooks_sent, EXCLUDED.webhooks_sent),
			    webhooks_failed  = greatest(usage_days.webhooks_failed, EXCLUDED.webhooks_failed),
			    peak_sse         = greatest(usage_days.peak_sse, EXCLUDED.peak_sse),
			    peak_websocket   = greatest(usage_days.peak_websocket, EXCLUDED.peak_websocket),
			    peak_pusher      = greatest(usage_days.peak_pusher, EXCLUDED.peak_pusher),
			    peak_polling     = greatest(usage_days.peak_polling, EXCLUDED.peak_polling),
			    peak_total       = greatest(usage_days.peak_total, EXCLUDED.peak_total),
			    rejected         = usage_jsonb_greatest(usage_days.rejected, EXCLUDED.rejected)`,
			now.Add(-KeepMinutes).Truncate(24*time.Hour), today.AddDate(0, 0, 1)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM usage_minutes WHERE minute < $1`, now.Add(-KeepMinutes)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM usage_days WHERE day < $1::date`, today.AddDate(0, 0, -KeepDays))
		return err
	})
	if err != nil {
		return fmt.Errorf("usage: roll up: %w", err)
	}
	return nil
}

// Scope is whose usage a query reads: one tenant's, or with All the whole
// service's (the sum over tenants; the service's peaks are then the sum of
// the tenants' peaks, an upper bound).
type Scope struct {
	Tenant tenant.ID
	All    bool
}

// Granularity of a query.
type Granularity string

const (
	Minutes Granularity = "minute" // from usage_minutes, in buckets of Query.Bucket
	Days    Granularity = "day"
	Months  Granularity = "month"
)

// Query reads usage over [From, To).
type Query struct {
	Scope       Scope
	Granularity Granularity
	From, To    time.Time
	// Bucket groups minutes (Minutes only): 10 minutes a point makes a
	// day 144 points. 0 means one minute.
	Bucket time.Duration
}

// Read returns one Row a period with usage, in order; periods without any
// are left out (a chart draws them as zero).
func Read(ctx context.Context, pool *pgxpool.Pool, q Query) ([]Row, error) {
	var table, period string
	switch q.Granularity {
	case Minutes:
		bucket := max(int64(q.Bucket/time.Second), 60)
		table = "usage_minutes"
		period = fmt.Sprintf(`to_timestamp(floor(extract(epoch FROM minute) / %d) * %d)`, bucket, bucket)
	case Days:
		table, period = "usage_days", `(day::timestamp AT TIME ZONE 'UTC')`
	case Months:
		table, period = "usage_days", `(date_trunc('month', day)::timestamp AT TIME ZONE 'UTC')`
	default:
		return nil, fmt.Errorf("usage: granularity %q is not minute, day or month", q.Granularity)
	}
	at := "minute"
	if table == "usage_days" {
		at = "(day::timestamp AT TIME ZONE 'UTC')"
	}
	// Peaks within a period: for minutes and days, the highest of its rows
	// per tenant; summed over tenants for the whole service.
	rows, err := pool.Query(ctx, `
		WITH per_tenant AS (
			SELECT tenant_id, `+period+` AS period,
			       sum(published_api) AS a, sum(published_pusher) AS p, sum(published_client) AS c,
			       sum(deliveries) AS d, sum(bytes_delivered) AS b, sum(webhooks_sent) AS s, sum(webhooks_failed) AS f,
			       max(peak_sse) AS ps, max(peak_websocket) AS pw, max(peak_pusher) AS pp, max(peak_polling) AS pl, max(peak_total) AS pt,
			       usage_jsonb_sum(rejected) AS r
			  FROM `+table+`
			 WHERE ($1 OR tenant_id = $2) AND `+at+` >= $3 AND `+at+` < $4
			 GROUP BY 1, 2)
		SELECT period, sum(a)::bigint, sum(p)::bigint, sum(c)::bigint, sum(d)::bigint, sum(b)::bigint, sum(s)::bigint, sum(f)::bigint,
		       sum(ps)::bigint, sum(pw)::bigint, sum(pp)::bigint, sum(pl)::bigint, sum(pt)::bigint, usage_jsonb_sum(r)
		  FROM per_tenant GROUP BY period ORDER BY period`,
		q.Scope.All, q.Scope.Tenant, q.From, q.To)
	if err != nil {
		return nil, fmt.Errorf("usage: read: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Row, error) {
		var r Row
		var rejected []byte
		err := row.Scan(&r.Period, &r.PublishedAPI, &r.PublishedPusher, &r.PublishedClient, &r.Deliveries, &r.BytesDelivered,
			&r.WebhooksSent, &r.WebhooksFailed, &r.Peak.SSE, &r.Peak.WebSocket, &r.Peak.Pusher, &r.Peak.Polling, &r.Peak.Total, &rejected)
		if err == nil {
			r.Period = r.Period.UTC()
			err = json.Unmarshal(rejected, &r.Rejected)
		}
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("usage: read: %w", err)
	}
	if out == nil {
		out = []Row{}
	}
	return out, nil
}

// TopTenants returns the n tenants with the most events published, and
// the n with the most connections at once, over the days [from, to).
func TopTenants(ctx context.Context, pool *pgxpool.Pool, from, to time.Time, n int) (byEvents, byConnections []TenantTotal, err error) {
	read := func(order string) ([]TenantTotal, error) {
		rows, err := pool.Query(ctx, `
			SELECT u.tenant_id, t.name, sum(published_api + published_pusher + published_client)::bigint, max(peak_total)::bigint
			  FROM usage_days u JOIN tenants t ON t.id = u.tenant_id
			 WHERE day >= $1::date AND day < $2::date
			 GROUP BY 1, 2 ORDER BY `+order+` DESC, 1 LIMIT $3`, from.UTC(), to.UTC(), n)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(row pgx.CollectableRow) (TenantTotal, error) {
			var x TenantTotal
			err := row.Scan(&x.Tenant, &x.Name, &x.Published, &x.PeakConnections)
			return x, err
		})
	}
	if byEvents, err = read("3"); err != nil {
		return nil, nil, fmt.Errorf("usage: top tenants: %w", err)
	}
	if byConnections, err = read("4"); err != nil {
		return nil, nil, fmt.Errorf("usage: top tenants: %w", err)
	}
	return byEvents, byConnections, nil
}

// TenantTotal is one tenant's usage over a range, for the operator's lists.
type TenantTotal struct {
	Tenant          tenant.ID `json:"tenantId"`
	Name            string    `json:"name"`
	Published       int64     `json:"published"`
	PeakConnections int64     `json:"peakConnections"`
}
