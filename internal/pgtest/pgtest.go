// Package pgtest gives each test its own PostgreSQL database, cloned from a
// template that is migrated once per schema version.
//
// It needs a running server: TEST_DATABASE_URL names it (a superuser on any
// database, usually postgres). `make test` starts a throwaway cluster and sets
// it. Cloning a template takes milliseconds, so tests can run in parallel with
// real NOTIFY and real commits instead of rolling back a shared transaction.
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/migrations"
)

var (
	once     sync.Once
	setupErr error
	admin    *pgxpool.Pool
	template string
	next     atomic.Int64
)

// NewDB returns a pool on a fresh, migrated database that is dropped when the test ends.
func NewDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := NewURL(t, true)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the DROP registered by NewURL
	return pool
}

// NewURL creates a fresh database, migrated when migrated is true, drops it when
// the test ends, and returns its connection string.
func NewURL(t testing.TB, migrated bool) string {
	t.Helper()
	ctx := context.Background()
	once.Do(func() { setupErr = setup(ctx) })
	if setupErr != nil {
		t.Fatalf("pgtest: %v", setupErr)
	}
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), next.Add(1))
	create := "CREATE DATABASE " + name
	if migrated {
		create += " TEMPLATE " + template
	}
	if err := execRetry(ctx, create); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return urlFor(name)
}

// execRetry runs a CREATE DATABASE, retrying while another clone holds the template.
func execRetry(ctx context.Context, sql string) error {
	var err error
	for range 50 {
		_, err = admin.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" { // object_in_use
			time.Sleep(20 * time.Millisecond)
			continue
		}
		return err
	}
	return err
}

func urlFor(database string) string {
	cfg := admin.Config().ConnConfig
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, database)
}

func setup(ctx context.Context) error {
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		return errors.New("TEST_DATABASE_URL is not set: run the tests with `make test`, which starts a throwaway PostgreSQL, or point TEST_DATABASE_URL at a server where you may create databases")
	}
	var err error
	admin, err = pgxpool.New(ctx, url)
	if err != nil {
		return fmt.Errorf("connect to TEST_DATABASE_URL: %w", err)
	}
	if err := admin.Ping(ctx); err != nil {
		return fmt.Errorf("connect to TEST_DATABASE_URL: %w", err)
	}
	template, err = templateName()
	if err != nil {
		return err
	}
	return ensureTemplate(ctx)
}

// templateName names the template after the migrations' content, so a schema
// change gets a new template and an old one is never reused by mistake.
func templateName() (string, error) {
	h := sha256.New()
	names, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(migrations.FS(), n)
		if err != nil {
			return "", err
		}
		h.Write([]byte(n))
		h.Write(b)
	}
	return "tmpl_" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// ensureTemplate builds the template once across every test process: under an
// advisory lock, migrate a scratch database and rename it, so no process ever
// clones a half-migrated template.
func ensureTemplate(ctx context.Context) error {
	conn, err := admin.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(4242)`); err != nil {
		return err
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock(4242)`)

	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, template).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	scratch := fmt.Sprintf("%s_build_%d", template, os.Getpid())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+scratch); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+scratch); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, urlFor(scratch))
	if err != nil {
		return err
	}
	err = migrations.Apply(ctx, pool)
	pool.Close()
	if err != nil {
		return fmt.Errorf("migrate template: %w", err)
	}
	_, err = conn.Exec(ctx, "ALTER DATABASE "+scratch+" RENAME TO "+template)
	return err
}

// Count returns the number of rows a query counts, for tests asserting that
// nothing was written.
func Count(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("pgtest: count %q: %v", sql, err)
	}
	return n
}
