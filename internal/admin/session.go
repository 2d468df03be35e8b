package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

const (
	// IdleTimeout ends a session nobody used for this long.
	IdleTimeout = time.Hour
	// MaxAge ends a session this long after login, used or not.
	MaxAge = 12 * time.Hour
)

// Session is a logged-in console user: a tenant's developer, or the operator.
type Session struct {
	idHash   []byte
	TenantID tenant.ID
	Operator bool
	CSRF     string
	lastSeen time.Time
}

// Sessions stores console sessions server-side; the cookie holds only a
// random id, of which the table keeps the SHA-256.
type Sessions struct {
	pool *pgxpool.Pool
}

// NewSessions returns a session store on pool.
func NewSessions(pool *pgxpool.Pool) *Sessions { return &Sessions{pool: pool} }

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hashID(id string) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:]
}

// Create starts a session and returns its id, for the cookie. A login always
// gets a new id, so an id planted before login is worthless (fixation).
func (s *Sessions) Create(ctx context.Context, tenantID tenant.ID, operator bool) (string, error) {
	id := randomToken()
	var tid *tenant.ID
	if !operator {
		tid = &tenantID
	}
	_, err := s.pool.Exec(ctx,
		`INSERT INTO console_sessions (id_hash, tenant_id, operator, csrf_token) VALUES ($1, $2, $3, $4)`,
		hashID(id), tid, operator, randomToken())
	if err != nil {
		return "", fmt.Errorf("admin: create session: %w", err)
	}
	return id, nil
}

var errNoSession = errors.New("admin: no valid session")

// Get returns the live session with this id, or errNoSession. It refreshes
// the idle timer at most once a minute, not on every request.
func (s *Sessions) Get(ctx context.Context, id string) (Session, error) {
	if id == "" || len(id) > 100 {
		return Session{}, errNoSession
	}
	var (
		sess Session
		tid  *int64
	)
	sess.idHash = hashID(id)
	err := s.pool.QueryRow(ctx, `
		SELECT tenant_id, operator, csrf_token, last_seen_at FROM console_sessions
		 WHERE id_hash = $1 AND last_seen_at > now() - make_interval(secs => $2)
		   AND created_at > now() - make_interval(secs => $3)`,
		sess.idHash, IdleTimeout.Seconds(), MaxAge.Seconds()).Scan(&tid, &sess.Operator, &sess.CSRF, &sess.lastSeen)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, errNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("admin: read session: %w", err)
	}
	if tid != nil {
		sess.TenantID = tenant.ID(*tid)
	}
	if time.Since(sess.lastSeen) > time.Minute {
		_, _ = s.pool.Exec(ctx, `UPDATE console_sessions SET last_seen_at = now() WHERE id_hash = $1`, sess.idHash)
	}
	return sess, nil
}

// Delete ends a session server-side: its cookie stops working everywhere.
func (s *Sessions) Delete(ctx context.Context, sess Session) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE id_hash = $1`, sess.idHash)
	return err
}

// CheckCSRF reports whether r carries the session's CSRF token, in the csrf
// form field (every form has one) or the X-CSRF-Token header (htmx). Either
// will do: after a login without a full page load, htmx may still send the
// previous session's token in the header while the form holds the new one.
func (sess Session) CheckCSRF(r *http.Request) bool {
	match := func(got string) bool {
		return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) == 1
	}
	return match(r.PostFormValue("csrf")) || match(r.Header.Get("X-CSRF-Token"))
}

// Run deletes expired sessions every 10 minutes until ctx ends.
func (s *Sessions) Run(ctx context.Context, log *slog.Logger) error {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.Prune(ctx); err != nil && ctx.Err() == nil {
				log.Warn("admin: pruning sessions failed", "err", err)
			}
		}
	}
}

// Prune deletes expired sessions.
func (s *Sessions) Prune(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `
		DELETE FROM console_sessions
		 WHERE last_seen_at < now() - make_interval(secs => $1) OR created_at < now() - make_interval(secs => $2)`,
		IdleTimeout.Seconds(), MaxAge.Seconds())
	return err
}
