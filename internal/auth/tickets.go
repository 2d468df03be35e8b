package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TicketFirstUse is how soon after issue a ticket must first be used.
const TicketFirstUse = 60 * time.Second

// Tickets issues and redeems tickets: opaque stand-ins for a subscriber JWT
// in an EventSource URL, which cannot carry an Authorization header. A
// ticket in a log reveals less than a token: it works only for the stream it
// was made for, and not at all if unused for a minute.
type Tickets struct {
	pool *pgxpool.Pool
}

// NewTickets returns a ticket store on pool.
func NewTickets(pool *pgxpool.Pool) *Tickets { return &Tickets{pool: pool} }

// Issue makes a ticket bound to s's tenant, subject, grants, publish grants,
// info and expiry.
func (t *Tickets) Issue(ctx context.Context, s Subscriber) (string, error) {
	ticket := "tk_" + randomString(secretLen)
	h := sha256.Sum256([]byte(ticket))
	var info any // NULL without an info claim
	if len(s.Info) > 0 {
		info = string(s.Info)
	}
	_, err := t.pool.Exec(ctx,
		`INSERT INTO tickets (hash, tenant_id, kid, subject, channels, publish, info, expires_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8)`,
		h[:], s.TenantID, s.Kid, s.Subject, orEmpty(s.Grants), orEmpty(s.Publish), info, s.Expires)
	if err != nil {
		return "", fmt.Errorf("auth: issue ticket: %w", err)
	}
	return ticket, nil
}

// Redeem returns the subscriber a ticket stands for. A ticket is refused
// (ErrInvalidToken) when unknown, when its token has expired, or when it was
// not used within TicketFirstUse of its issue; once used, EventSource's
// automatic reconnects may reuse it until the token expires.
func (t *Tickets) Redeem(ctx context.Context, ticket string) (Subscriber, error) {
	if len(ticket) != 3+secretLen || ticket[:3] != "tk_" || !isBase62(ticket[3:]) {
		return Subscriber{}, ErrInvalidToken
	}
	h := sha256.Sum256([]byte(ticket))
	var (
		s    Subscriber
		info *string
	)
	err := t.pool.QueryRow(ctx, `
		UPDATE tickets SET first_used_at = coalesce(first_used_at, now())
		 WHERE hash = $1 AND expires_at > now()
		   AND (first_used_at IS NOT NULL OR created_at > now() - make_interval(secs => $2))
		RETURNING tenant_id, kid, subject, channels, publish, info::text, expires_at`,
		h[:], TicketFirstUse.Seconds()).Scan(&s.TenantID, &s.Kid, &s.Subject, &s.Grants, &s.Publish, &info, &s.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return Subscriber{}, ErrInvalidToken
	}
	if err != nil {
		return Subscriber{}, fmt.Errorf("auth: redeem ticket: %w", err)
	}
	if info != nil {
		s.Info = json.RawMessage(*info)
	}
	return s, nil
}

// orEmpty is grants, or an empty list for a column that takes no NULL.
func orEmpty(grants []string) []string {
	if grants == nil {
		return []string{}
	}
	return grants
}
