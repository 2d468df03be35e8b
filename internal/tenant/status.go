package tenant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hybridrt/hybridrt/internal/web"
)

// StatusRefresh is how often every instance re-reads which tenants are
// suspended: the bound on how long a suspension made on one instance takes
// to refuse requests and end streams on the others (TESTPLAN F19: ≤ 5 s).
const StatusRefresh = time.Second

// Account is a tenant as the operator sees it: with its status.
type Account struct {
	Tenant
	Suspended   bool       `json:"suspended"`
	SuspendedAt *time.Time `json:"suspendedAt"`
}

// Account returns tenant id with its status, or ErrNotFound.
func (s *Store) Account(ctx context.Context, id ID) (Account, error) {
	a := Account{Tenant: Tenant{ID: id}}
	err := s.pool.QueryRow(ctx,
		`SELECT name, created_at, settings, suspended_at FROM tenants WHERE id = $1`,
		id).Scan(&a.Name, &a.CreatedAt, &a.Settings, &a.SuspendedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, ErrNotFound
	}
	if err != nil {
		return Account{}, fmt.Errorf("tenant: get %d: %w", id, err)
	}
	a.Suspended = a.SuspendedAt != nil
	return a, nil
}

// setSuspended suspends (or resumes) tenant id and returns it. Suspending a
// suspended tenant keeps the time it was first suspended.
func (s *Store) setSuspended(ctx context.Context, id ID, suspended bool) (Account, error) {
	a := Account{Tenant: Tenant{ID: id}}
	err := s.pool.QueryRow(ctx, `
		UPDATE tenants SET suspended_at = CASE WHEN $2 THEN coalesce(suspended_at, now()) END
		 WHERE id = $1
		RETURNING name, created_at, settings, suspended_at`,
		id, suspended).Scan(&a.Name, &a.CreatedAt, &a.Settings, &a.SuspendedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, ErrNotFound
	}
	if err != nil {
		return Account{}, fmt.Errorf("tenant: set suspended of %d: %w", id, err)
	}
	a.Suspended = a.SuspendedAt != nil
	return a, nil
}

// inactive returns the suspended tenants, and those of watched that no
// longer exist (deleted by hand: their streams must end too).
func (s *Store) inactive(ctx context.Context, watched []ID) ([]ID, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id FROM tenants WHERE suspended_at IS NOT NULL
		UNION
		SELECT w.id FROM unnest($1::bigint[]) AS w (id)
		 WHERE NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = w.id)`, watched)
	if err != nil {
		return nil, fmt.Errorf("tenant: read suspended tenants: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[ID])
	if err != nil {
		return nil, fmt.Errorf("tenant: read suspended tenants: %w", err)
	}
	return ids, nil
}

// Status knows which tenants are suspended, so that refusing a suspended
// tenant's requests costs no query: each instance keeps the set in memory and
// re-reads it every StatusRefresh (Run). The instance that suspends a tenant
// applies it at once. Streams Watch their tenant, to end when it is suspended.
type Status struct {
	store *Store

	refresh sync.Mutex // one read of the set at a time

	mu        sync.Mutex
	loaded    bool
	suspended map[ID]bool     // suspended, or deleted while watched
	local     map[ID]bool     // changes made here while a read is in flight
	watched   map[ID]*watched // tenants with live streams here
}

// watched is one tenant's live streams: how many, and the context that is
// cancelled when the tenant is suspended. All of them share it, so watching
// costs a stream nothing but a count; a stream with no goroutine of its own
// hangs a function on it (context.AfterFunc).
type watched struct {
	n      int
	ctx    context.Context
	cancel context.CancelFunc
}

func newWatched() *watched {
	w := &watched{}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w
}

func (w *watched) closed() bool { return w.ctx.Err() != nil }

// NewStatus returns a Status over store. It reads nothing until first asked.
func NewStatus(store *Store) *Status {
	return &Status{store: store, suspended: map[ID]bool{}, watched: map[ID]*watched{}}
}

// Suspended reports whether tenant id is suspended, as of the last read.
func (s *Status) Suspended(ctx context.Context, id ID) (bool, error) {
	s.mu.Lock()
	loaded, v := s.loaded, s.suspended[id]
	s.mu.Unlock()
	if loaded {
		return v, nil
	}
	if err := s.Refresh(ctx); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.suspended[id], nil
}

// Refresh re-reads the suspended tenants and ends the streams of any newly
// suspended (or deleted) one.
func (s *Status) Refresh(ctx context.Context) error {
	s.refresh.Lock()
	defer s.refresh.Unlock()
	s.mu.Lock()
	s.local = map[ID]bool{}
	watched := slices.Collect(maps.Keys(s.watched))
	s.mu.Unlock()

	ids, err := s.store.inactive(ctx, watched)

	s.mu.Lock()
	local := s.local
	s.local = nil
	if err != nil {
		s.mu.Unlock()
		return err
	}
	next := make(map[ID]bool, len(ids))
	for _, id := range ids {
		next[id] = true
	}
	// A suspend or resume made here after the read began is newer than it.
	for id, v := range local {
		if v {
			next[id] = true
		} else {
			delete(next, id)
		}
	}
	s.loaded = true
	s.swap(next)
	s.mu.Unlock()
	return nil
}

// swap installs next as the suspended set: it ends the streams of the
// tenants it suspends, and gives those it resumes a fresh channel for the
// streams to come. s.mu must be held.
func (s *Status) swap(next map[ID]bool) {
	for id, w := range s.watched {
		switch {
		case next[id] && !w.closed():
			w.cancel()
		case !next[id] && w.closed():
			fresh := newWatched()
			w.ctx, w.cancel = fresh.ctx, fresh.cancel
		}
	}
	s.suspended = next
}

// set records tenant id's new status on this instance at once.
func (s *Status) set(id ID, suspended bool) {
	s.mu.Lock()
	if s.local != nil {
		s.local[id] = suspended
	}
	next := maps.Clone(s.suspended)
	if suspended {
		next[id] = true
	} else {
		delete(next, id)
	}
	s.swap(next)
	s.mu.Unlock()
}

// Suspend suspends tenant id (idempotently) and ends its streams on this
// instance at once; the other instances follow within StatusRefresh.
func (s *Status) Suspend(ctx context.Context, id ID) (Account, error) {
	a, err := s.store.setSuspended(ctx, id, true)
	if err == nil {
		s.set(id, true)
	}
	return a, err
}

// Resume lifts tenant id's suspension (idempotently).
func (s *Status) Resume(ctx context.Context, id ID) (Account, error) {
	a, err := s.store.setSuspended(ctx, id, false)
	if err == nil {
		s.set(id, false)
	}
	return a, err
}

// Watch returns a context that is cancelled when tenant id is suspended or
// deleted, already cancelled if it is. Each Watch needs one Unwatch.
func (s *Status) Watch(id ID) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.watched[id]
	if w == nil {
		w = newWatched()
		s.watched[id] = w
	}
	w.n++
	if s.suspended[id] {
		w.cancel()
	}
	return w.ctx
}

// Unwatch ends one Watch of tenant id.
func (s *Status) Unwatch(id ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.watched[id]; w != nil {
		if w.n--; w.n <= 0 {
			delete(s.watched, id)
		}
	}
}

// Run re-reads the suspended tenants every StatusRefresh until ctx ends.
func (s *Status) Run(ctx context.Context, log *slog.Logger) error {
	t := time.NewTicker(StatusRefresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second) // a hung read must not stop the next
		err := s.Refresh(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			log.Warn("tenant: reading suspended tenants failed; the last known set stays in force", "err", err)
			failing = true
		case err == nil:
			failing = false
		}
	}
}

// SuspendedProblem is the answer to every request of a suspended tenant.
func SuspendedProblem() *web.Problem {
	return web.NewProblem(http.StatusForbidden, "tenant_suspended",
		"this tenant is suspended by the operator of this service: its API keys, subscriber tokens and streams are refused until the operator resumes it")
}

// RequireActive refuses requests of a suspended tenant with 403
// tenant_suspended. It goes behind the middleware that authenticates the
// tenant, so only the holder of a valid credential learns of the suspension.
func RequireActive(log *slog.Logger, status *Status) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			suspended, err := status.Suspended(r.Context(), FromContext(r.Context()))
			if err != nil {
				web.Fail(w, r, log, web.Unavailable(err))
				return
			}
			if suspended {
				SuspendedProblem().Write(w)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
