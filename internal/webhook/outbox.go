package webhook

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// Event is one entry of a webhook's "events", in Pusher's shape: Name is
// channel_occupied, channel_vacated, member_added, member_removed,
// client_event or cache_miss; the other fields are those Pusher sends with
// that name, and empty ones are left out.
type Event struct {
	Name     string          `json:"name"`
	Channel  string          `json:"channel"`
	UserID   string          `json:"user_id,omitempty"`   // member_added, member_removed, client_event (presence)
	Event    string          `json:"event,omitempty"`     // client_event: its type
	Data     json.RawMessage `json:"data,omitempty"`      // client_event: its data, as a JSON string (Pusher's way)
	SocketID string          `json:"socket_id,omitempty"` // client_event: the sender's connection
}

// Execer is what Enqueue writes with: a transaction of the change it
// reports, or a pool where there is none.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Enqueue adds, in their order, those of events that the tenant's webhook
// settings want to its outbox, with db: the change's own transaction where
// there is one, so that the change and its webhooks commit together or not
// at all. A trigger makes the tenant's queue due (migrations/0010). It
// returns how many it added.
func Enqueue(ctx context.Context, db Execer, tenantID tenant.ID, events ...Event) (int64, error) {
	if len(events) == 0 {
		return 0, nil
	}
	names := make([]string, len(events))
	raw := make([]string, len(events))
	for i, e := range events {
		b, err := json.Marshal(e)
		if err != nil {
			return 0, fmt.Errorf("webhook: encode %s event: %w", e.Name, err)
		}
		names[i], raw[i] = e.Name, string(b)
	}
	// WITH ORDINALITY keeps the order given: ids are taken in it.
	tag, err := db.Exec(ctx,
		`INSERT INTO webhook_outbox (tenant_id, event)
		 SELECT t.id, e::json FROM tenants t, unnest($2::text[], $3::text[]) WITH ORDINALITY AS u (n, e, i)
		  WHERE t.id = $1 AND `+tenant.WebhookWantsSQL("t", "array[n]")+`
		  ORDER BY i`,
		tenantID, names, raw)
	if err != nil {
		return 0, fmt.Errorf("webhook: enqueue: %w", err)
	}
	queued.Add(float64(tag.RowsAffected()))
	return tag.RowsAffected(), nil
}

// Delivery is one attempt to send a batch, as the console lists it.
type Delivery struct {
	ID          int64
	AttemptedAt string // RFC 3339
	Events      int
	Status      int // 0: no answer
	LatencyMS   int
	Error       string
	Attempt     int
	NextRetryAt string // "" once delivered or parked
	Outcome     string // delivered, retrying, parked; test (SendTest)
}

// Recent returns a tenant's last n delivery attempts, newest first.
func Recent(ctx context.Context, db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, tenantID tenant.ID, n int) ([]Delivery, error) {
	rows, err := db.Query(ctx,
		`SELECT id, to_char(attempted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), events, status, latency_ms, error, attempt,
		        coalesce(to_char(next_retry_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), ''), outcome
		   FROM webhook_deliveries WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2`, tenantID, n)
	if err != nil {
		return nil, fmt.Errorf("webhook: recent deliveries: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
		var d Delivery
		err := r.Scan(&d.ID, &d.AttemptedAt, &d.Events, &d.Status, &d.LatencyMS, &d.Error, &d.Attempt, &d.NextRetryAt, &d.Outcome)
		return d, err
	})
}
