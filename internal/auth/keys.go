package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

const (
	// CacheTTL bounds how long a revoked key keeps working on other instances.
	CacheTTL = 2 * time.Second
	// maxUnknownKeys bounds the memory of lookup prefixes known not to exist.
	maxUnknownKeys = 10000
	// FlushInterval is how often last-used times are written.
	FlushInterval = 30 * time.Second
)

var (
	// ErrNotFound is returned for a key that does not exist or belongs to another tenant.
	ErrNotFound = errors.New("auth: key not found")
	// ErrLastKey is returned when revoking a tenant's only active API key.
	ErrLastKey = errors.New("auth: cannot revoke the last active API key")
)

// APIKey describes an API key. The key itself is shown only when created.
type APIKey struct {
	ID         int64      `json:"id,string" db:"id"`
	Name       string     `json:"name" db:"name"`
	Prefix     string     `json:"prefix" db:"prefix"`
	CreatedAt  time.Time  `json:"createdAt" db:"created_at"`
	LastUsedAt *time.Time `json:"lastUsedAt" db:"last_used_at"`
}

// Keys stores API keys and authenticates them.
type Keys struct {
	pool *pgxpool.Pool
	now  func() time.Time

	mu      sync.Mutex
	cache   map[string]cachedKey // by lookup prefix
	unknown map[string]time.Time // lookup prefixes no key has, until when that is assumed
	used    map[int64]time.Time  // by key id: last use not yet written
}

type cachedKey struct {
	id       int64
	tenantID tenant.ID
	hash     []byte
	expires  time.Time
}

// NewKeys returns a key store on pool. Run must be running for last-used
// times to reach the database.
func NewKeys(pool *pgxpool.Pool) *Keys {
	return &Keys{
		pool:    pool,
		now:     time.Now,
		cache:   make(map[string]cachedKey),
		unknown: make(map[string]time.Time),
		used:    make(map[int64]time.Time),
	}
}

// queryRower is what a pool and a transaction have in common for inserts.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CleanKeyName trims name and checks it is 1–100 printable characters.
func CleanKeyName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || utf8.RuneCountInString(name) > 100 {
		return "", errors.New(`"name" must be 1 to 100 characters, such as "production backend"`)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return "", fmt.Errorf(`"name" contains the non-printable character %U`, r)
		}
	}
	return name, nil
}

func insertKey(ctx context.Context, q queryRower, tenantID tenant.ID, name string) (APIKey, string, error) {
	key, lookup, hash := newAPIKey()
	k := APIKey{Name: name, Prefix: displayPrefix(lookup)}
	err := q.QueryRow(ctx,
		`INSERT INTO api_keys (tenant_id, name, prefix, secret_hash) VALUES ($1, $2, $3, $4)
		 RETURNING id, created_at`,
		tenantID, name, lookup, hash).Scan(&k.ID, &k.CreatedAt)
	if err != nil {
		return APIKey{}, "", fmt.Errorf("auth: insert API key: %w", err)
	}
	return k, key, nil
}

// Create makes a new API key for tenantID and returns it with the key itself,
// which is not stored and cannot be shown again.
func (k *Keys) Create(ctx context.Context, tenantID tenant.ID, name string) (APIKey, string, error) {
	return insertKey(ctx, k.pool, tenantID, name)
}

// List returns tenantID's active keys, oldest first.
func (k *Keys) List(ctx context.Context, tenantID tenant.ID) ([]APIKey, error) {
	rows, err := k.pool.Query(ctx,
		`SELECT id, name, 'hrt_' || prefix AS prefix, created_at, last_used_at
		   FROM api_keys
		  WHERE tenant_id = $1 AND revoked_at IS NULL
		  ORDER BY id`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("auth: list API keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowToStructByName[APIKey])
	if err != nil {
		return nil, fmt.Errorf("auth: list API keys: %w", err)
	}
	return keys, nil
}

// Revoke revokes tenantID's key id. Revoking a revoked key succeeds; a key of
// another tenant is ErrNotFound, so its existence is not revealed. The last
// active key cannot be revoked (ErrLastKey), or the tenant would be locked out.
func (k *Keys) Revoke(ctx context.Context, tenantID tenant.ID, id int64) error {
	var lookup string
	err := pgx.BeginFunc(ctx, k.pool, func(tx pgx.Tx) error {
		// Lock the tenant's active keys so two concurrent revokes cannot each
		// see the other's key as still active and revoke both.
		rows, err := tx.Query(ctx,
			`SELECT id FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY id FOR UPDATE`, tenantID)
		if err != nil {
			return err
		}
		active, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		var revoked bool
		err = tx.QueryRow(ctx,
			`SELECT prefix, revoked_at IS NOT NULL FROM api_keys WHERE id = $1 AND tenant_id = $2`,
			id, tenantID).Scan(&lookup, &revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil || revoked {
			return err
		}
		if len(active) == 1 {
			return ErrLastKey
		}
		_, err = tx.Exec(ctx, `UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant_id = $2`, id, tenantID)
		return err
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrLastKey) {
		return err
	}
	if err != nil {
		return fmt.Errorf("auth: revoke API key %d: %w", id, err)
	}
	k.mu.Lock()
	delete(k.cache, lookup) // this instance refuses it at once; others within CacheTTL
	k.mu.Unlock()
	return nil
}

// Authenticate returns the tenant that owns key and the key's id, or
// ErrInvalidKey for a key that is malformed, unknown, wrong or revoked.
func (k *Keys) Authenticate(ctx context.Context, key string) (tenant.ID, int64, error) {
	lookup, hash, err := parseAPIKey(key)
	if err != nil {
		return 0, 0, err
	}
	now := k.now()
	k.mu.Lock()
	c, ok := k.cache[lookup]
	unknownUntil, known := k.unknown[lookup]
	k.mu.Unlock()
	if known && now.Before(unknownUntil) {
		// A client retrying one bad key in a loop costs no query. Lookup
		// prefixes are random, so no key created meanwhile can have it.
		return 0, 0, ErrInvalidKey
	}
	if !ok || now.After(c.expires) {
		err := k.pool.QueryRow(ctx,
			`SELECT id, tenant_id, secret_hash FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL`,
			lookup).Scan(&c.id, &c.tenantID, &c.hash)
		if errors.Is(err, pgx.ErrNoRows) {
			k.mu.Lock()
			delete(k.cache, lookup)
			if len(k.unknown) >= maxUnknownKeys {
				clear(k.unknown)
			}
			k.unknown[lookup] = now.Add(CacheTTL)
			k.mu.Unlock()
			return 0, 0, ErrInvalidKey
		}
		if err != nil {
			return 0, 0, fmt.Errorf("auth: look up API key: %w", err)
		}
		c.expires = now.Add(CacheTTL)
		// The row is kept even when the secret below does not match, so
		// guesses at a known prefix are checked in memory too.
		k.mu.Lock()
		k.cache[lookup] = c
		k.mu.Unlock()
	}
	if subtle.ConstantTimeCompare(hash, c.hash) != 1 {
		return 0, 0, ErrInvalidKey
	}
	k.mu.Lock()
	k.used[c.id] = now
	k.mu.Unlock()
	return c.tenantID, c.id, nil
}

// Run writes last-used times every FlushInterval, and once more when ctx
// ends. A failed last write is logged, not returned: last-used times are a
// hint, and a shutdown while the database is away is still a clean one.
func (k *Keys) Run(ctx context.Context, log *slog.Logger) error {
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Shutting down: one last write, with a deadline of its own.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := k.Flush(fctx); err != nil {
				log.Warn("auth: could not write API keys' last-used times at shutdown; they are lost", "err", err)
			}
			return nil
		case <-t.C:
			_ = k.Flush(ctx) // a failed write is retried on the next tick
			k.pruneCache()
		}
	}
}

// Flush writes the last-used times collected since the previous flush.
func (k *Keys) Flush(ctx context.Context) error {
	k.mu.Lock()
	used := k.used
	k.used = make(map[int64]time.Time)
	k.mu.Unlock()
	if len(used) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(used))
	times := make([]time.Time, 0, len(used))
	for id, t := range used {
		ids = append(ids, id)
		times = append(times, t)
	}
	_, err := k.pool.Exec(ctx,
		`UPDATE api_keys AS k SET last_used_at = GREATEST(k.last_used_at, u.t)
		   FROM unnest($1::bigint[], $2::timestamptz[]) AS u (id, t)
		  WHERE k.id = u.id`, ids, times)
	if err != nil {
		// Put the times back, keeping any newer use recorded meanwhile.
		k.mu.Lock()
		for id, t := range used {
			if t.After(k.used[id]) {
				k.used[id] = t
			}
		}
		k.mu.Unlock()
		return fmt.Errorf("auth: write last-used times: %w", err)
	}
	return nil
}

func (k *Keys) pruneCache() {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	for lookup, c := range k.cache {
		if now.After(c.expires) {
			delete(k.cache, lookup)
		}
	}
}
