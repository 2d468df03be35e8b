package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// SigningKey describes a key that signs subscriber JWTs. Its secret is shown
// only when created.
type SigningKey struct {
	Kid       string    `json:"kid" db:"kid"`
	CreatedAt time.Time `json:"createdAt" db:"created_at"`
}

// SigningKeys stores tenants' signing keys, sealed.
type SigningKeys struct {
	pool   *pgxpool.Pool
	sealer *Sealer
}

// NewSigningKeys returns a signing-key store on pool that seals secrets with sealer.
func NewSigningKeys(pool *pgxpool.Pool, sealer *Sealer) *SigningKeys {
	return &SigningKeys{pool: pool, sealer: sealer}
}

// insert makes a signing key inside q and returns it with its secret.
func (s *SigningKeys) insert(ctx context.Context, q queryRower, tenantID tenant.ID) (SigningKey, string, error) {
	k := SigningKey{Kid: "sk_" + randomString(16)}
	// The HMAC key is the secret string's bytes as shown, so tenants can sign
	// tokens themselves with any JWT library.
	secret := "hrs_" + randomString(secretLen)
	sealed := s.sealer.Seal([]byte(secret), []byte(k.Kid))
	err := q.QueryRow(ctx,
		`INSERT INTO signing_keys (kid, tenant_id, secret_seal) VALUES ($1, $2, $3) RETURNING created_at`,
		k.Kid, tenantID, sealed).Scan(&k.CreatedAt)
	if err != nil {
		return SigningKey{}, "", fmt.Errorf("auth: insert signing key: %w", err)
	}
	return k, secret, nil
}

// Create makes a new signing key for tenantID and returns it with its secret,
// which cannot be shown again. Several keys may be active at once, so tokens
// signed with the old key keep working while a tenant rolls over to the new.
func (s *SigningKeys) Create(ctx context.Context, tenantID tenant.ID) (SigningKey, string, error) {
	return s.insert(ctx, s.pool, tenantID)
}

// List returns tenantID's active signing keys, oldest first.
func (s *SigningKeys) List(ctx context.Context, tenantID tenant.ID) ([]SigningKey, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT kid, created_at FROM signing_keys
		  WHERE tenant_id = $1 AND revoked_at IS NULL
		  ORDER BY created_at, kid`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("auth: list signing keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowToStructByName[SigningKey])
	if err != nil {
		return nil, fmt.Errorf("auth: list signing keys: %w", err)
	}
	return keys, nil
}

// Revoke revokes tenantID's signing key kid. Revoking twice succeeds; another
// tenant's kid is ErrNotFound.
func (s *SigningKeys) Revoke(ctx context.Context, tenantID tenant.ID, kid string) error {
	tag, err := s.pool.Exec(ctx,
		`UPDATE signing_keys SET revoked_at = coalesce(revoked_at, now()) WHERE kid = $1 AND tenant_id = $2`,
		kid, tenantID)
	if err != nil {
		return fmt.Errorf("auth: revoke signing key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Secret returns the tenant and secret of the active signing key kid, for
// verifying a token whose header names it.
func (s *SigningKeys) Secret(ctx context.Context, kid string) (tenant.ID, []byte, error) {
	var (
		tenantID tenant.ID
		sealed   []byte
	)
	err := s.pool.QueryRow(ctx,
		`SELECT tenant_id, secret_seal FROM signing_keys WHERE kid = $1 AND revoked_at IS NULL`,
		kid).Scan(&tenantID, &sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, ErrNotFound
	}
	if err != nil {
		return 0, nil, fmt.Errorf("auth: look up signing key: %w", err)
	}
	secret, err := s.sealer.Open(sealed, []byte(kid))
	if err != nil {
		return 0, nil, err
	}
	return tenantID, secret, nil
}
