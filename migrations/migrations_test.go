package migrations_test

import (
	"io/fs"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/migrations"
)

func TestApplyTwiceAndConcurrently(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t, false)
	files, _ := fs.Glob(migrations.FS(), "*.sql")

	// Eight instances starting at once, each with its own pool.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			pool, err := pgxpool.New(t.Context(), url)
			if err != nil {
				errs <- err
				return
			}
			defer pool.Close()
			errs <- migrations.Apply(t.Context(), pool)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Apply: %v", err)
		}
	}

	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := migrations.Apply(t.Context(), pool); err != nil {
		t.Fatalf("Apply on a migrated database: %v", err)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM schema_migrations`); n != len(files) {
		t.Errorf("schema_migrations has %d rows, want one per file (%d)", n, len(files))
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM information_schema.tables WHERE table_name IN ('tenants', 'api_keys', 'signing_keys')`); n != 3 {
		t.Errorf("found %d of the 3 tables", n)
	}
	// The lock is released: another session can take it at once.
	var got bool
	if err := pool.QueryRow(t.Context(), `SELECT pg_try_advisory_lock($1)`, int64(0x6879627269647274)).Scan(&got); err != nil || !got {
		t.Errorf("advisory lock still held after Apply: %v, %v", got, err)
	}
}
