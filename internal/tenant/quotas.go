package tenant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Quotas are one tenant's limits, set by the operator. A nil field means the
// server's default (its configuration).
type Quotas struct {
	MaxConnections *int      `json:"maxConnections,omitempty"` // live connections, on all instances together
	MaxChannels    *int      `json:"maxChannels,omitempty"`    // channels per subscription
	PublishRate    *int      `json:"publishRate,omitempty"`    // publish requests per second, on all instances together
	MaxEventBytes  *int      `json:"maxEventBytes,omitempty"`  // encoded data of one event
	MaxBatch       *int      `json:"maxBatch,omitempty"`       // events per publish request
	Retention      *Duration `json:"retention,omitempty"`      // how long events are kept
}

// Duration is a time.Duration written as in Go ("36h", "90m").
type Duration time.Duration

// MarshalJSON writes d as a string such as "24h0m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a string such as "36h".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`"retention" is a duration such as "36h"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf(`"retention" %q is not a duration such as "36h"`, s)
	}
	*d = Duration(v)
	return nil
}

// Validate reports the first quota outside what the server can honour.
func (q Quotas) Validate() error {
	check := func(name string, v *int, least, most int) error {
		if v != nil && (*v < least || *v > most) {
			return fmt.Errorf("%q must be from %d to %d", name, least, most)
		}
		return nil
	}
	return errors.Join(
		check("maxConnections", q.MaxConnections, 0, 1_000_000),
		check("maxChannels", q.MaxChannels, 1, 1000),
		check("publishRate", q.PublishRate, 1, 1_000_000),
		check("maxEventBytes", q.MaxEventBytes, 64, 1<<20),
		check("maxBatch", q.MaxBatch, 1, 10_000),
		func() error {
			if q.Retention != nil && (time.Duration(*q.Retention) < time.Minute || time.Duration(*q.Retention) > 365*24*time.Hour) {
				return errors.New(`"retention" must be from 1m to 8760h`)
			}
			return nil
		}(),
	)
}

// Quotas returns tenant id's quotas.
func (s *Store) Quotas(ctx context.Context, id ID) (Quotas, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx, `SELECT coalesce(settings->'quotas', '{}') FROM tenants WHERE id = $1`, id).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return Quotas{}, ErrNotFound
	}
	if err != nil {
		return Quotas{}, fmt.Errorf("tenant: read quotas of %d: %w", id, err)
	}
	var q Quotas
	if err := json.Unmarshal(raw, &q); err != nil {
		return Quotas{}, fmt.Errorf("tenant: quotas of %d: %w", id, err)
	}
	return q, nil
}

// SetQuotas replaces tenant id's quotas.
func (s *Store) SetQuotas(ctx context.Context, id ID, q Quotas) error {
	raw, err := json.Marshal(q)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE tenants SET settings = jsonb_set(settings, '{quotas}', $2::jsonb) WHERE id = $1`, id, raw)
	if err != nil {
		return fmt.Errorf("tenant: set quotas of %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// QuotaCache keeps each tenant's quotas for a few seconds, so enforcing them
// costs no query per request; a change reaches every instance within TTL.
type QuotaCache struct {
	store *Store
	ttl   time.Duration

	mu      sync.Mutex
	entries map[ID]cachedQuotas
}

type cachedQuotas struct {
	q       Quotas
	expires time.Time
}

// QuotaCacheTTL is how long a quota change may take to reach an instance.
const QuotaCacheTTL = 5 * time.Second

// NewQuotaCache returns a cache over store.
func NewQuotaCache(store *Store) *QuotaCache {
	return &QuotaCache{store: store, ttl: QuotaCacheTTL, entries: map[ID]cachedQuotas{}}
}

// Get returns tenant id's quotas, at most TTL old.
func (c *QuotaCache) Get(ctx context.Context, id ID) (Quotas, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.q, nil
	}
	q, err := c.store.Quotas(ctx, id)
	if err != nil {
		return Quotas{}, err
	}
	c.mu.Lock()
	if len(c.entries) > 100_000 {
		clear(c.entries)
	}
	c.entries[id] = cachedQuotas{q: q, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return q, nil
}

// Forget drops id from the cache, on the instance that changed its quotas.
func (c *QuotaCache) Forget(id ID) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}
