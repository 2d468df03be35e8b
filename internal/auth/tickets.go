package auth

import (
	"context"
	"crypto/sha256"
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

// Issue makes a ticket bound to s's tenant, subject, grants and expiry.
func (t *Tickets) Issue(ctx context.Context, s Subscriber) (string, error) {
	ticket := "tk_" + randomString(secretLen)
	h := sha256.Sum256([]byte(ticket))
	grants := s.Grants
	if grants == nil {
		grants = []string{}
	}
	_, err := t.pool.Exec(ctx,
		`INSERT INTO tickets (hash, tenant_id, kid, subject, channels, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		h[:], s.TenantID, s.Kid, s.Subject, grants, s.Expires)
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
	var s Subscriber
	err := t.pool.QueryRow(ctx, `
		UPDATE tickets SET first_used_at = coalesce(first_used_at, now())
		 WHERE hash = $1 AND expires_at > now()
		   AND (first_used_at IS NOT NULL OR created_at > now() - make_interval(secs => $2))
		RETURNING tenant_id, kid, subject, channels, expires_at`,
		h[:], TicketFirstUse.Seconds()).Scan(&s.TenantID, &s.Kid, &s.Subject, &s.Grants, &s.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return Subscriber{}, ErrInvalidToken
	}
	if err != nil {
		return Subscriber{}, fmt.Errorf("auth: redeem ticket: %w", err)
	}
	return s, nil
}
