package tenant

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store reads and writes tenants.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Insert creates a tenant inside tx, so sign-up can create the tenant and its
// first credentials in one transaction. name must have passed CleanName.
func Insert(ctx context.Context, tx pgx.Tx, name string) (Tenant, error) {
	t := Tenant{Name: name}
	err := tx.QueryRow(ctx,
		`INSERT INTO tenants (name) VALUES ($1) RETURNING id, created_at, settings`,
		name).Scan(&t.ID, &t.CreatedAt, &t.Settings)
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant: insert: %w", err)
	}
	return t, nil
}

// Get returns the tenant with id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id ID) (Tenant, error) {
	t := Tenant{ID: id}
	err := s.pool.QueryRow(ctx,
		`SELECT name, created_at, settings FROM tenants WHERE id = $1`,
		id).Scan(&t.Name, &t.CreatedAt, &t.Settings)
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, ErrNotFound
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant: get %d: %w", id, err)
	}
	return t, nil
}
