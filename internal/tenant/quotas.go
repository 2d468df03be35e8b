package tenant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
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
	q, _, err := s.config(ctx, id)
	return q, err
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
