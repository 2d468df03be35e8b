package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

func newTenant(t *testing.T, pool *pgxpool.Pool, name string) tenant.ID {
	t.Helper()
	var tn tenant.Tenant
	err := pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		var err error
		tn, err = tenant.Insert(t.Context(), tx, name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tn.ID
}

// clock is a settable time source for the key cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func TestKeysLifecycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewDB(t)
	keys := NewKeys(pool)
	acme, other := newTenant(t, pool, "acme"), newTenant(t, pool, "other")

	first, firstKey, err := keys.Create(ctx, acme, "first")
	if err != nil {
		t.Fatal(err)
	}
	second, secondKey, err := keys.Create(ctx, acme, "second")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _, err := keys.Create(ctx, other, "theirs")
	if err != nil {
		t.Fatal(err)
	}

	for _, key := range []string{firstKey, secondKey} {
		if got, _, err := keys.Authenticate(ctx, key); err != nil || got != acme {
			t.Fatalf("Authenticate(acme key) = %d, %v; want %d", got, err, acme)
		}
	}
	// Only the lookup prefix and the hash of the secret are stored.
	var prefix string
	var stored []byte
	if err := pool.QueryRow(ctx, `SELECT prefix, secret_hash FROM api_keys WHERE id = $1`, first.ID).Scan(&prefix, &stored); err != nil {
		t.Fatal(err)
	}
	secretPart := firstKey[len("hrt_")+lookupLen+1 : len(firstKey)-checkLen]
	want := sha256.Sum256([]byte(secretPart))
	if !bytes.Equal(stored, want[:]) || prefix != firstKey[len("hrt_"):len("hrt_")+lookupLen] || bytes.Contains(stored, []byte(secretPart)) {
		t.Errorf("api_keys row holds prefix %q and %x; want the lookup prefix and the SHA-256 of the secret", prefix, stored)
	}

	list, err := keys.List(ctx, acme)
	if err != nil || len(list) != 2 || list[0].ID != first.ID || list[1].Prefix != second.Prefix || list[0].Prefix != firstKey[:16] {
		t.Fatalf("List(acme) = %+v, %v; want first and second", list, err)
	}

	if err := keys.Revoke(ctx, acme, otherKey.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke(another tenant's key) = %v, want ErrNotFound", err)
	}
	if err := keys.Revoke(ctx, acme, 1<<40); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke(unknown id) = %v, want ErrNotFound", err)
	}
	if err := keys.Revoke(ctx, acme, first.ID); err != nil {
		t.Fatalf("Revoke(first) = %v", err)
	}
	if err := keys.Revoke(ctx, acme, first.ID); err != nil {
		t.Errorf("Revoke(first) again = %v, want nil (idempotent)", err)
	}
	if _, _, err := keys.Authenticate(ctx, firstKey); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Authenticate(revoked key) on the revoking store = %v, want ErrInvalidKey at once", err)
	}
	if err := keys.Revoke(ctx, acme, second.ID); !errors.Is(err, ErrLastKey) {
		t.Errorf("Revoke(last active key) = %v, want ErrLastKey", err)
	}
	if got, _, err := keys.Authenticate(ctx, secondKey); err != nil || got != acme {
		t.Errorf("the last key stopped working: %v", err)
	}
	list, _ = keys.List(ctx, acme)
	if len(list) != 1 || list[0].ID != second.ID {
		t.Errorf("List after revoke = %+v, want only second", list)
	}
}

func TestKeysConcurrentRevokeKeepsOne(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewDB(t)
	keys := NewKeys(pool)
	acme := newTenant(t, pool, "acme")
	var ids []int64
	for range 4 {
		k, _, err := keys.Create(ctx, acme, "k")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.ID)
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() { _ = keys.Revoke(ctx, acme, id) })
	}
	wg.Wait()
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL`, acme); n != 1 {
		t.Errorf("after revoking all keys at once, %d remain active, want 1", n)
	}
}

// TestRevocationReachesOtherInstances: a second store (another instance) that
// cached the key refuses it once CacheTTL has passed, with no notification.
func TestRevocationReachesOtherInstances(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewDB(t)
	a, b := NewKeys(pool), NewKeys(pool)
	clk := &clock{now: time.Now()}
	b.now = clk.Now
	acme := newTenant(t, pool, "acme")
	k, key, _ := a.Create(ctx, acme, "doomed")
	if _, _, err := a.Create(ctx, acme, "spare"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, acme, k.ID); err != nil {
		t.Fatal(err)
	}
	clk.Add(CacheTTL + time.Millisecond)
	if _, _, err := b.Authenticate(ctx, key); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("instance b still accepts the key CacheTTL after revocation: %v", err)
	}
	if CacheTTL > 5*time.Second {
		t.Errorf("CacheTTL = %v; DESIGN promises revocation within 5 s", CacheTTL)
	}
}

func TestLastUsedIsFlushedNotWrittenPerRequest(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewDB(t)
	keys := NewKeys(pool)
	acme := newTenant(t, pool, "acme")
	k, key, _ := keys.Create(ctx, acme, "k")
	for range 5 {
		if _, _, err := keys.Authenticate(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM api_keys WHERE id = $1 AND last_used_at IS NOT NULL`, k.ID); n != 0 {
		t.Fatalf("last_used_at written before a flush")
	}
	if err := keys.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	list, _ := keys.List(ctx, acme)
	if list[0].LastUsedAt == nil || time.Since(*list[0].LastUsedAt) > time.Minute {
		t.Errorf("after Flush, LastUsedAt = %v, want about now", list[0].LastUsedAt)
	}

	// Run flushes on shutdown.
	if _, _, err := keys.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	before := *list[0].LastUsedAt
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- keys.Run(rctx, slog.New(slog.DiscardHandler)) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	list, _ = keys.List(ctx, acme)
	if !list[0].LastUsedAt.After(before) {
		t.Errorf("Run did not flush on shutdown: %v, want after %v", list[0].LastUsedAt, before)
	}
}

func TestSigningKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewDB(t)
	sealer, _ := NewSealer("a master secret of at least 32 characters")
	signing := NewSigningKeys(pool, sealer)
	acme, other := newTenant(t, pool, "acme"), newTenant(t, pool, "other")

	k1, secret1, err := signing.Create(ctx, acme)
	if err != nil {
		t.Fatal(err)
	}
	k2, secret2, _ := signing.Create(ctx, acme)
	theirs, _, _ := signing.Create(ctx, other)
	if secret1 == secret2 || k1.Kid == k2.Kid {
		t.Fatalf("two signing keys share a kid or secret")
	}

	// A dump of the table does not reveal the secret.
	var sealed []byte
	if err := pool.QueryRow(ctx, `SELECT secret_seal FROM signing_keys WHERE kid = $1`, k1.Kid).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(secret1)) || bytes.Contains(sealed, []byte(secret1[4:20])) {
		t.Errorf("the signing secret is stored in the clear")
	}

	gotTenant, gotSecret, err := signing.Secret(ctx, k1.Kid)
	if err != nil || gotTenant != acme || string(gotSecret) != secret1 {
		t.Fatalf("Secret(k1) = %d, %q, %v; want %d, %q", gotTenant, gotSecret, err, acme, secret1)
	}
	list, err := signing.List(ctx, acme)
	if err != nil || len(list) != 2 {
		t.Fatalf("List(acme) = %+v, %v; want 2 keys", list, err)
	}

	if err := signing.Revoke(ctx, acme, theirs.Kid); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke(another tenant's kid) = %v, want ErrNotFound", err)
	}
	if _, _, err := signing.Secret(ctx, theirs.Kid); err != nil {
		t.Errorf("a refused cross-tenant revoke changed the key: %v", err)
	}
	if err := signing.Revoke(ctx, acme, k1.Kid); err != nil {
		t.Fatal(err)
	}
	if err := signing.Revoke(ctx, acme, k1.Kid); err != nil {
		t.Errorf("Revoke twice = %v, want nil", err)
	}
	if _, _, err := signing.Secret(ctx, k1.Kid); !errors.Is(err, ErrNotFound) {
		t.Errorf("Secret(revoked) = %v, want ErrNotFound", err)
	}
	if _, _, err := signing.Secret(ctx, "' OR 1=1--"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Secret(injection) = %v, want ErrNotFound", err)
	}

	// Another SECRET_KEY cannot open the stored secret.
	wrong, _ := NewSealer("a different master secret, 32+ chars")
	if _, _, err := NewSigningKeys(pool, wrong).Secret(ctx, k2.Kid); err == nil {
		t.Errorf("Secret opened with another SECRET_KEY")
	}
}
