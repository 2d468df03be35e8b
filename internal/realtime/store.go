package realtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// Store reads events. Writing is the Publisher's job.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// querier is a pool or a single connection (the listener's).
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Position is what the store knows of a tenant's sequence.
type Position struct {
	Head   int64 // the latest committed event id
	Pruned int64 // ids at or below this may have been deleted by retention
}

// Position returns tenantID's head and pruned mark. Because ids commit in
// order, every id up to Head is committed and visible once this returns.
func (s *Store) Position(ctx context.Context, tenantID tenant.ID) (Position, error) {
	return position(ctx, s.pool, tenantID)
}

func position(ctx context.Context, q querier, tenantID tenant.ID) (Position, error) {
	var p Position
	err := q.QueryRow(ctx, `SELECT event_seq, pruned_seq FROM tenants WHERE id = $1`, tenantID).Scan(&p.Head, &p.Pruned)
	if errors.Is(err, pgx.ErrNoRows) {
		return Position{}, tenant.ErrNotFound
	}
	if err != nil {
		return Position{}, fmt.Errorf("realtime: read position of tenant %d: %w", tenantID, err)
	}
	return p, nil
}

func scanEvents(rows pgx.Rows, tenantID tenant.ID) ([]*Event, error) {
	defer rows.Close()
	var evs []*Event
	for rows.Next() {
		e := &Event{TenantID: tenantID}
		var data []byte
		if err := rows.Scan(&e.ID, &e.Channel, &e.Type, &data, &e.Time, &e.Origin, &e.Sender); err != nil {
			return nil, err
		}
		e.Data = data
		e.encode()
		evs = append(evs, e)
	}
	return evs, rows.Err()
}

// readRange returns tenantID's events with after < id <= upTo, in id order.
func readRange(ctx context.Context, q querier, tenantID tenant.ID, after, upTo int64) ([]*Event, error) {
	rows, err := q.Query(ctx,
		`SELECT id, channel, type, data::text, created_at, coalesce(origin, ''), coalesce(sender, '') FROM events
		  WHERE tenant_id = $1 AND id > $2 AND id <= $3 ORDER BY id`,
		tenantID, after, upTo)
	if err != nil {
		return nil, fmt.Errorf("realtime: read events %d..%d: %w", after, upTo, err)
	}
	evs, err := scanEvents(rows, tenantID)
	if err != nil {
		return nil, fmt.Errorf("realtime: read events %d..%d: %w", after, upTo, err)
	}
	return evs, nil
}

// ReadChannels returns at most limit of tenantID's events on channels with
// after < id <= upTo, in id order. A nil channels means every channel.
func (s *Store) ReadChannels(ctx context.Context, tenantID tenant.ID, channels []string, after, upTo int64, limit int) ([]*Event, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT id, channel, type, data::text, created_at, coalesce(origin, ''), coalesce(sender, '') FROM events
		  WHERE tenant_id = $1 AND id > $2 AND id <= $3 AND ($4::text[] IS NULL OR channel = ANY($4))
		  ORDER BY id LIMIT $5`,
		tenantID, after, upTo, channels, limit)
	if err != nil {
		return nil, fmt.Errorf("realtime: read events after %d: %w", after, err)
	}
	evs, err := scanEvents(rows, tenantID)
	if err != nil {
		return nil, fmt.Errorf("realtime: read events after %d: %w", after, err)
	}
	return evs, nil
}

// Last returns the latest event on tenantID's channel, or nil when there is
// none (in retention): what a Pusher cache channel sends on subscribe.
func (s *Store) Last(ctx context.Context, tenantID tenant.ID, channel string) (*Event, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT id, channel, type, data::text, created_at, coalesce(origin, ''), coalesce(sender, '') FROM events
		  WHERE tenant_id = $1 AND channel = $2 ORDER BY id DESC LIMIT 1`, tenantID, channel)
	if err != nil {
		return nil, fmt.Errorf("realtime: read the last event of %q: %w", channel, err)
	}
	evs, err := scanEvents(rows, tenantID)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return evs[0], nil
}

// Page is a page of history: the events and the cursor to ask for the next page.
type Page struct {
	Events []*Event `json:"events"`
	Cursor string   `json:"cursor"`
}

// History returns up to limit of tenantID's events after the cursor, on one
// channel or (channel "") all of them, and the cursor for the next page.
func (s *Store) History(ctx context.Context, tenantID tenant.ID, channel string, after int64, limit int) (Page, error) {
	pos, err := s.Position(ctx, tenantID)
	if err != nil {
		return Page{}, err
	}
	var channels []string
	if channel != "" {
		channels = []string{channel}
	}
	evs, err := s.ReadChannels(ctx, tenantID, channels, after, pos.Head, limit)
	if err != nil {
		return Page{}, err
	}
	next := pos.Head // nothing more up to the head
	if len(evs) == limit {
		next = evs[len(evs)-1].ID
	}
	if next < after {
		next = after
	}
	if evs == nil {
		evs = []*Event{}
	}
	return Page{Events: evs, Cursor: fmt.Sprint(next)}, nil
}

// Prune deletes events older than their tenant's retention (its quota, else
// retention), at most batch rows per statement, and records the highest id
// deleted per tenant. It returns how many rows it deleted.
func (s *Store) Prune(ctx context.Context, retention time.Duration, batch int) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.pool.QueryRow(ctx, `
			WITH doomed AS (
				-- A tenant's retention quota, when the operator set one, wins
				-- over the server's default; Go's duration strings ("36h0m0s")
				-- are valid PostgreSQL intervals.
				SELECT e.tenant_id, e.id FROM events e JOIN tenants t ON t.id = e.tenant_id
				 WHERE e.created_at < now() - coalesce((t.settings->'quotas'->>'retention')::interval, make_interval(secs => $1))
				 ORDER BY e.created_at LIMIT $2
			), deleted AS (
				DELETE FROM events e USING doomed d
				 WHERE e.tenant_id = d.tenant_id AND e.id = d.id
				RETURNING e.tenant_id, e.id
			), marks AS (
				UPDATE tenants t SET pruned_seq = GREATEST(t.pruned_seq, m.max_id)
				  FROM (SELECT tenant_id, max(id) AS max_id FROM deleted GROUP BY tenant_id) m
				 WHERE t.id = m.tenant_id
				RETURNING 1
			)
			SELECT count(*) FROM deleted`, retention.Seconds(), batch).Scan(&n)
		if err != nil {
			return total, fmt.Errorf("realtime: prune events: %w", err)
		}
		total += n
		if n < int64(batch) {
			break
		}
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'`)
	if err != nil {
		return total, fmt.Errorf("realtime: prune idempotency keys: %w", err)
	}
	_, err = s.pool.Exec(ctx, `DELETE FROM tickets WHERE expires_at < now() - interval '1 hour'`)
	if err != nil {
		return total, fmt.Errorf("realtime: prune tickets: %w", err)
	}
	return total, nil
}
