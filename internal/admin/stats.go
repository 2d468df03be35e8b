package admin

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/views"
)

func (c *Console) overview(ctx context.Context, tenantID tenant.ID) (views.Overview, error) {
	var o views.Overview
	conns, err := c.Registry.List(ctx, tenantID)
	if err != nil {
		return o, err
	}
	keys, err := c.Keys.List(ctx, tenantID)
	if err != nil {
		return o, err
	}
	signing, err := c.Signing.List(ctx, tenantID)
	if err != nil {
		return o, err
	}
	pos, err := c.Store.Position(ctx, tenantID)
	if err != nil {
		return o, err
	}
	var today int64
	err = c.Pool.QueryRow(ctx,
		`SELECT count(*) FROM events WHERE tenant_id = $1 AND created_at >= date_trunc('day', now())`,
		tenantID).Scan(&today)
	if err != nil {
		return o, fmt.Errorf("admin: count today's events: %w", err)
	}
	return views.Overview{
		Connections: strconv.Itoa(len(conns)),
		EventsToday: strconv.FormatInt(today, 10),
		EventsTotal: strconv.FormatInt(pos.Head, 10),
		APIKeys:     strconv.Itoa(len(keys)),
		SigningKeys: strconv.Itoa(len(signing)),
		Head:        strconv.FormatInt(pos.Head, 10),
	}, nil
}

func logEntry(e *realtime.Event) views.LogEntry {
	return views.LogEntry{
		ID: strconv.FormatInt(e.ID, 10), Time: e.Time.UTC().Format("15:04:05.000"),
		Channel: e.Channel, Type: e.Type, Data: string(e.Data),
	}
}

// recentEvents returns the tenant's last n events, newest first, and the id
// they end at, from which the live log's stream continues.
func (c *Console) recentEvents(ctx context.Context, tenantID tenant.ID, n int) ([]views.LogEntry, int64, error) {
	pos, err := c.Store.Position(ctx, tenantID)
	if err != nil {
		return nil, 0, err
	}
	page, err := c.Store.History(ctx, tenantID, "", max(0, pos.Head-int64(n)), n)
	if err != nil {
		return nil, 0, err
	}
	out := make([]views.LogEntry, len(page.Events))
	for i, e := range page.Events {
		out[len(out)-1-i] = logEntry(e)
	}
	return out, pos.Head, nil
}

// operatorView lists every tenant with its counts, and every instance with
// its connections by transport and the seconds since its heartbeat.
func (c *Console) operatorView(ctx context.Context) ([]views.TenantRow, []views.InstanceRow, error) {
	rows, err := c.Pool.Query(ctx, `
		SELECT t.id, t.name, t.created_at, t.suspended_at, t.event_seq,
		       (SELECT count(*) FROM events e WHERE e.tenant_id = t.id),
		       (SELECT count(*) FROM connections c JOIN instances i ON i.id = c.instance_id
		         WHERE c.tenant_id = t.id AND i.heartbeat_at > now() - interval '20 seconds')
		  FROM tenants t ORDER BY t.id LIMIT 1000`)
	if err != nil {
		return nil, nil, fmt.Errorf("admin: list tenants: %w", err)
	}
	tenants, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (views.TenantRow, error) {
		var (
			id, total, stored, conns int64
			name                     string
			created                  time.Time
			suspended                *time.Time
		)
		err := row.Scan(&id, &name, &created, &suspended, &total, &stored, &conns)
		tr := views.TenantRow{ID: strconv.FormatInt(id, 10), Name: name, Created: dateTime(created),
			Connections: strconv.FormatInt(conns, 10), EventsStored: strconv.FormatInt(stored, 10), EventsTotal: strconv.FormatInt(total, 10)}
		if suspended != nil {
			tr.SuspendedAt = dateTime(*suspended)
		}
		return tr, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("admin: list tenants: %w", err)
	}
	rows, err = c.Pool.Query(ctx, `
		SELECT i.id, i.started_at, extract(epoch FROM now() - i.heartbeat_at)::float8,
		       count(c.id), count(c.id) FILTER (WHERE c.transport = 'sse'), count(c.id) FILTER (WHERE c.transport = 'ws'),
		       count(c.id) FILTER (WHERE c.transport = 'websocket'), count(c.id) FILTER (WHERE c.transport = 'polling')
		  FROM instances i LEFT JOIN connections c ON c.instance_id = i.id
		 GROUP BY i.id ORDER BY i.started_at`)
	if err != nil {
		return nil, nil, fmt.Errorf("admin: list instances: %w", err)
	}
	instances, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (views.InstanceRow, error) {
		var (
			id                              string
			started                         time.Time
			age                             float64
			conns, sse, ws, pusher, polling int64
		)
		err := row.Scan(&id, &started, &age, &conns, &sse, &ws, &pusher, &polling)
		n := func(v int64) string { return strconv.FormatInt(v, 10) }
		return views.InstanceRow{ID: id, Started: dateTime(started), HeartbeatAge: fmt.Sprintf("%.0f s", max(age, 0)),
			Connections: n(conns), SSE: n(sse), WS: n(ws), Pusher: n(pusher), Polling: n(polling), Stale: age > 20}, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("admin: list instances: %w", err)
	}
	return tenants, instances, nil
}
