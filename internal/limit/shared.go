package limit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/time/rate"
)

const (
	// SyncInterval is how often shares are recomputed from every instance's usage.
	SyncInterval = time.Second
	// staleUsage is how old another instance's report may be and still
	// count. An instance that stopped syncing (killed, or cut off from the
	// database) frees its share within this, long before its heartbeat is
	// declared dead: after a crash its clients reconnect elsewhere at once,
	// and must not be refused for the dead one's places meanwhile.
	staleUsage = 5 * SyncInterval
	// idleScope is how long a scope with no use is remembered.
	idleScope = time.Minute
	// reserveTimeout bounds a first reservation's wait for the database;
	// past it the instance reserves from what it last knew.
	reserveTimeout = 2 * time.Second
)

// Shared decides, for this instance, whether a request fits in limits that
// hold across all instances. Allow costs no query; Acquire costs none
// either, except for the first connection of a scope this instance does
// not hold yet. Run syncs the shares with the other instances every
// SyncInterval.
type Shared struct {
	pool *pgxpool.Pool
	dead time.Duration // the heartbeat age after which an instance's usage no longer counts
	now  func() time.Time

	mu         sync.Mutex
	instanceID string // set by Run
	rates      map[string]*rateScope
	holds      map[string]*holdScope
	others     map[string]usage // the other live instances' sums, at the last sync
	instances  int              // live instances, this one included, at the last sync
	lastSync   time.Time
}

// usage is what instances report of one scope.
type usage struct {
	held     int64   // connections held
	demand   float64 // attempts per second
	reserved float64 // the rate, or the most connections, reserved until the next sync
}

type rateScope struct {
	limit    int
	bucket   *rate.Limiter // at the reserved rate
	reserved float64
	attempts int64   // since the last sync
	demand   float64 // attempts per second over the last interval
	lastUse  time.Time
}

type holdScope struct {
	limit    int
	held     int
	ceiling  int           // reserved: admit while held < ceiling
	ready    chan struct{} // closed once the first reservation is made
	attempts int64
	demand   float64
	lastUse  time.Time
}

// Scope names for the limits Shared enforces, as they appear in limit_usage.
func Connections(tenantID int64) string { return "conn:" + strconv.FormatInt(tenantID, 10) }

// TenantRate names a tenant's publish-rate quota.
func TenantRate(tenantID int64) string { return "pub:" + strconv.FormatInt(tenantID, 10) }

// KeyRate names an API key's publish rate.
func KeyRate(keyID int64) string { return "key:" + strconv.FormatInt(keyID, 10) }

// SigningKeyRate names the publish rate of a signing key, which signs the
// Pusher HTTP API's triggers as an API key authenticates hybridrt's own.
func SigningKeyRate(kid string) string { return "skey:" + kid }

// New returns a Shared on pool. The instances table's heartbeats say which
// instances are alive: one whose heartbeat is older than dead no longer
// counts, as its connections no longer do (realtime.InstanceDead). Until
// Run's first sync it assumes it is the only instance.
func New(pool *pgxpool.Pool, dead time.Duration) *Shared {
	return &Shared{
		pool:      pool,
		dead:      dead,
		now:       time.Now,
		rates:     map[string]*rateScope{},
		holds:     map[string]*holdScope{},
		others:    map[string]usage{},
		instances: 1,
	}
}

// Allow takes one request from scope's rate of perSecond requests a second,
// with bursts of a second's worth, and reports whether it fits.
func (s *Shared) Allow(scope string, perSecond int) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rates[scope]
	switch {
	case r == nil:
		// A first request reserves from what the last sync said. Instances
		// that see a new scope at once each take an equal part of what is
		// unreserved, so together they stay within the limit.
		r = &rateScope{limit: perSecond}
		r.setRate(rateReserve(perSecond, 0, s.others[scope], s.instances), now)
		s.rates[scope] = r
	case r.limit != perSecond:
		// The operator changed the quota: scale the reservation with it,
		// which keeps every instance's reservations within the new limit.
		r.setRate(r.reserved*float64(perSecond)/float64(max(r.limit, 1)), now)
		r.limit = perSecond
	}
	r.attempts++
	r.lastUse = now
	return r.bucket.AllowN(now, 1)
}

// Acquire takes one of scope's max places (a connection) and reports whether
// one was free. Every successful Acquire must be followed by one Release.
// The first Acquire of a scope this instance does not hold reserves its part
// in the database, under the lock every sync takes, so that no two
// instances reserve the same headroom; it waits at most reserveTimeout.
func (s *Shared) Acquire(ctx context.Context, scope string, most int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.holds[scope]
	if h == nil {
		h = &holdScope{limit: most, ready: make(chan struct{})}
		s.holds[scope] = h
		s.mu.Unlock()
		ceiling, err := s.reserveFirst(ctx, scope, most)
		s.mu.Lock()
		if err != nil {
			// The database is away: reserve from what the last sync said.
			ceiling = holdReserve(most, 0, 1, s.others[scope], s.instances)
		}
		if h.limit == most { // unless the limit changed meanwhile
			h.ceiling = ceiling
		}
		close(h.ready)
	} else {
		select {
		case <-h.ready:
		default:
			s.mu.Unlock()
			select {
			case <-h.ready:
			case <-ctx.Done():
			}
			s.mu.Lock()
		}
	}
	if h.limit != most {
		// The operator changed the quota: scale the ceiling with it.
		h.ceiling = h.ceiling * most / max(h.limit, 1)
		h.limit = most
	}
	h.attempts++
	h.lastUse = s.now()
	if h.held >= h.ceiling {
		return false
	}
	h.held++
	return true
}

// Release gives back a place that Acquire took.
func (s *Shared) Release(scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.holds[scope]; h != nil && h.held > 0 {
		h.held--
		h.lastUse = s.now()
	}
}

// Held returns the places this instance holds in scope.
func (s *Shared) Held(scope string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.holds[scope]; h != nil {
		return h.held
	}
	return 0
}

// share is one instance's target part of capacity when it was asked for
// mine and the others together for others, among n instances: what it asked
// for plus an equal part of what nobody asked for, or, when together they
// asked for more than there is, a part in proportion to what it asked.
func share(capacity, mine, others float64, n int) float64 {
	asked := mine + others
	if asked <= capacity {
		return mine + (capacity-asked)/float64(max(n, 1))
	}
	return capacity * mine / asked
}

// rateReserve is the rate this instance reserves for a scope: its target
// share, but never more than the other instances' reservations leave, so
// that all instances' reservations never add up to more than the limit.
func rateReserve(limit int, demand float64, others usage, instances int) float64 {
	target := share(float64(limit), demand, others.demand, instances)
	return max(0, min(target, float64(limit)-others.reserved))
}

// holdReserve is the most connections this instance may hold in a scope
// until its next sync: what it holds plus its target share of the headroom
// left by every instance's connections, but never more than the other
// instances' reservations leave. The share is rounded to whole connections
// at random, unbiased (10.4 is 11 four times in ten), so small limits spread
// over many instances are still reached. Over the limit (it was lowered),
// the answer is less than it holds, and nothing new is admitted until
// enough connections end.
func holdReserve(limit, held int, demand float64, others usage, instances int) int {
	headroom := float64(int64(limit) - int64(held) - others.held)
	target := float64(held)
	if headroom > 0 {
		target += share(headroom, demand, others.demand, instances)
	}
	whole := int(math.Floor(target + rand.Float64()))
	return max(0, min(whole, limit-int(math.Ceil(others.reserved))))
}

// setRate sets r's token bucket to a reserved rate, with a second's worth of burst.
func (r *rateScope) setRate(perSecond float64, now time.Time) {
	r.reserved = perSecond
	burst := int(math.Ceil(perSecond))
	if r.bucket == nil {
		r.bucket = rate.NewLimiter(rate.Limit(perSecond), burst)
		return
	}
	r.bucket.SetLimitAt(now, rate.Limit(perSecond))
	r.bucket.SetBurstAt(now, burst)
}

// Run syncs with the other instances every SyncInterval until ctx ends.
// instanceID names this instance in the instances table, whose heartbeat
// (realtime.Registry) says which instances are alive.
func (s *Shared) Run(ctx context.Context, log *slog.Logger, instanceID string) error {
	t := time.NewTicker(SyncInterval)
	defer t.Stop()
	failing := false
	for {
		start := time.Now()
		err := s.Sync(ctx, instanceID)
		if err != nil && ctx.Err() == nil {
			syncFailures.Inc()
		} else {
			syncSeconds.Observe(time.Since(start).Seconds())
		}
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			log.Warn("limit: sharing limits with the other instances failed; keeping the last shares", "err", err)
		case err == nil && failing:
			failing = false
			log.Info("limit: sharing limits with the other instances again")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// report is one scope's line in limit_usage.
type report struct {
	scope    string
	limit    int
	held     int64
	demand   float64
	reserved float64
	hold     bool
	ceiling  int // of a connection scope: the most it may hold from the commit on
}

// syncLock serialises every instance's reservations, so that each is made
// knowing every other instance's current one: without it, two instances
// syncing at once could each take the headroom the other left.
// ("hybridrt" + 1, beside migrations' lock.)
const syncLock = 0x6879627269647275

// Sync reports this instance's usage and reservations and reads the other
// live instances', then reserves this instance's share of every scope it
// knows. Until the instance's first heartbeat is written (its row in
// instances), its reservations cannot be written; it computes them anyway.
func (s *Shared) Sync(ctx context.Context, instanceID string) error {
	now := s.now()
	var reports []report
	s.mu.Lock()
	s.instanceID = instanceID
	elapsed := SyncInterval.Seconds()
	if !s.lastSync.IsZero() {
		elapsed = max(now.Sub(s.lastSync).Seconds(), 0.1)
	}
	s.lastSync = now
	for scope, r := range s.rates {
		r.demand, r.attempts = float64(r.attempts)/elapsed, 0
		if r.demand == 0 && now.Sub(r.lastUse) > idleScope {
			delete(s.rates, scope)
			continue
		}
		reports = append(reports, report{scope: scope, limit: r.limit, demand: r.demand})
	}
	var pending []string
	for scope, h := range s.holds {
		select {
		case <-h.ready:
		default:
			// Its first reservation is being made: keep the row it may
			// already have written (deleting it would hide the reservation
			// from the others until the next sync).
			pending = append(pending, scope)
			continue
		}
		h.demand, h.attempts = float64(h.attempts)/elapsed, 0
		if h.held == 0 && h.demand == 0 && now.Sub(h.lastUse) > idleScope {
			delete(s.holds, scope)
			continue
		}
		reports = append(reports, report{scope: scope, limit: h.limit, held: int64(h.held), demand: h.demand, hold: true})
	}
	s.mu.Unlock()

	var (
		others    map[string]usage
		instances int
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		scopes := make([]string, len(reports))
		for i, r := range reports {
			scopes[i] = r.scope
		}
		var err error
		others, instances, err = s.readOthers(ctx, tx, instanceID, scopes)
		if err != nil {
			return err
		}
		for i := range reports {
			r := &reports[i]
			if r.hold {
				r.ceiling = holdReserve(r.limit, int(r.held), r.demand, others[r.scope], instances)
				r.reserved = float64(r.ceiling)
			} else {
				r.reserved = rateReserve(r.limit, r.demand, others[r.scope], instances)
			}
		}
		s.settleHolds(reports)
		return writeOwn(ctx, tx, instanceID, reports, true, pending)
	})
	if noHeartbeatYet(err) && others != nil {
		err = nil // the reservations count for the others from the next sync
	}
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.others, s.instances = others, instances
	for _, rep := range reports {
		if rep.hold {
			// A limit changed since the snapshot keeps its scaled ceiling
			// until the next sync.
			if h := s.holds[rep.scope]; h != nil && h.limit == rep.limit {
				h.ceiling = rep.ceiling
			}
		} else if r := s.rates[rep.scope]; r != nil && r.limit == rep.limit {
			r.setRate(rep.reserved, now)
		}
	}
	return nil
}

// settleHolds brings the connection reports, computed from a snapshot,
// up to date just before they are written under the sync lock. Connections
// admitted since the snapshot were admitted against the old ceiling, which
// may be above the new one: the report says what is held now, and reserves
// at least that, so that no other instance counts on room that is taken.
// Until the commit, a ceiling only comes down (were the sync to fail, the
// others would still know the old one).
func (s *Shared) settleHolds(reports []report) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range reports {
		r := &reports[i]
		h := s.holds[r.scope]
		if !r.hold || h == nil || h.limit != r.limit {
			continue
		}
		h.ceiling = min(h.ceiling, r.ceiling)
		r.held = int64(h.held)
		r.reserved = max(r.reserved, float64(h.held))
	}
}

// reserveFirst reserves this instance's first share of a scope it holds
// nothing of, under the sync lock, and returns its ceiling.
func (s *Shared) reserveFirst(ctx context.Context, scope string, limit int) (int, error) {
	s.mu.Lock()
	instanceID := s.instanceID
	s.mu.Unlock()
	if instanceID == "" {
		return 0, errors.New("limit: not running")
	}
	ctx, cancel := context.WithTimeout(ctx, reserveTimeout)
	defer cancel()
	var ceiling int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		others, instances, err := s.readOthers(ctx, tx, instanceID, []string{scope})
		if err != nil {
			return err
		}
		ceiling = holdReserve(limit, 0, 1, others[scope], instances)
		return writeOwn(ctx, tx, instanceID, []report{{scope: scope, limit: limit, demand: 1, reserved: float64(ceiling), hold: true}}, false, nil)
	})
	if noHeartbeatYet(err) {
		return ceiling, nil
	}
	return ceiling, err
}

// noHeartbeatYet reports whether err is this instance's usage refused for
// want of its row in instances, which the registry's first heartbeat writes.
func noHeartbeatYet(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}

// readOthers returns the other live instances' usage and reservations of
// scopes, and the number of live instances, this one included, after
// taking the sync lock.
func (s *Shared) readOthers(ctx context.Context, tx pgx.Tx, instanceID string, scopes []string) (map[string]usage, int, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(syncLock)); err != nil {
		return nil, 0, fmt.Errorf("limit: take the sync lock: %w", err)
	}
	rows, err := tx.Query(ctx, `
		SELECT u.scope, sum(u.held)::bigint, sum(u.demand), sum(u.reserved)
		  FROM limit_usage u
		  JOIN unnest($3::text[]) AS mine (scope) ON mine.scope = u.scope
		  JOIN instances i ON i.id = u.instance_id
		 WHERE u.instance_id <> $1 AND i.heartbeat_at > now() - make_interval(secs => $2)
		   AND u.synced_at > now() - make_interval(secs => $4)
		 GROUP BY u.scope`, instanceID, s.dead.Seconds(), scopes, staleUsage.Seconds())
	if err != nil {
		return nil, 0, fmt.Errorf("limit: read the other instances' usage: %w", err)
	}
	others := map[string]usage{}
	var (
		scope string
		u     usage
	)
	_, err = pgx.ForEachRow(rows, []any{&scope, &u.held, &u.demand, &u.reserved}, func() error {
		others[scope] = u
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("limit: read the other instances' usage: %w", err)
	}
	var n int
	err = tx.QueryRow(ctx, `
		SELECT count(*) FROM instances
		 WHERE id <> $1 AND heartbeat_at > now() - make_interval(secs => $2)`,
		instanceID, s.dead.Seconds()).Scan(&n)
	if err != nil {
		return nil, 0, fmt.Errorf("limit: count live instances: %w", err)
	}
	return others, n + 1, nil
}

// writeOwn writes this instance's reports. With replace (a sync's reports
// are all of them), the rows of scopes neither reported nor in keep (the
// ones it forgot) are deleted; without, the reports are only upserted.
func writeOwn(ctx context.Context, tx pgx.Tx, instanceID string, reports []report, replace bool, keep []string) error {
	scopes := make([]string, len(reports))
	held := make([]int64, len(reports))
	demand := make([]float64, len(reports))
	reserved := make([]float64, len(reports))
	for i, r := range reports {
		scopes[i], held[i], demand[i], reserved[i] = r.scope, r.held, r.demand, r.reserved
	}
	if replace {
		// NOT IN a subquery is a hashed anti-join; NOT scope = ANY($2)
		// would compare every row with every scope.
		if _, err := tx.Exec(ctx, `
			DELETE FROM limit_usage
			 WHERE instance_id = $1 AND scope NOT IN (SELECT unnest($2::text[]))`, instanceID, append(keep, scopes...)); err != nil {
			return fmt.Errorf("limit: report usage: %w", err)
		}
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO limit_usage (instance_id, scope, held, demand, reserved, synced_at)
		SELECT $1, u.scope, u.held, u.demand, u.reserved, now()
		  FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::float8[]) AS u (scope, held, demand, reserved)
		ON CONFLICT (instance_id, scope) DO UPDATE
		   SET held = excluded.held, demand = excluded.demand, reserved = excluded.reserved, synced_at = now()`,
		instanceID, scopes, held, demand, reserved)
	if err != nil {
		return fmt.Errorf("limit: report usage: %w", err)
	}
	return nil
}
