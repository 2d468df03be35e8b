package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The raw ceiling: what PostgreSQL itself does when every event is its own
// transaction, BEGIN; INSERT; SELECT pg_notify; COMMIT, from as many
// clients as there are publishers. hybridrt does the same work per commit
// (plus HTTP, keys, JSON and the fan-out), so its single-event publish rate
// is read as a share of this one.

const (
	rawTable   = "loadgen_raw"
	rawChannel = "loadgen_raw"
)

// rawResult is what the raw phase measured.
type rawResult struct {
	workers  int
	commits  int64
	errors   int64
	firstErr string
	elapsed  time.Duration
}

func (r rawResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.commits) / r.elapsed.Seconds()
}

// openRaw connects to the -raw-db database, one connection per worker and
// one for the table's setup and cleanup, and checks that it answers.
func openRaw(ctx context.Context, url string, workers int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("-raw-db: %w", err)
	}
	cfg.MaxConns = int32(min(workers+1, 1000))
	cfg.MinConns = 0
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > 10*time.Second {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "hybridrt-loadgen-raw"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("-raw-db: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("-raw-db: %w", err)
	}
	return pool, nil
}

// measureRaw creates the scratch table, runs workers transactions of
// INSERT + pg_notify back to back for duration, and drops the table again.
// It is bounded: the phase ends at duration, a transaction still running
// 30 s after that is cancelled, and the cleanup has 30 s of its own.
func measureRaw(ctx context.Context, pool *pgxpool.Pool, workers int, duration time.Duration) (res rawResult, err error) {
	res.workers = workers
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = pool.Exec(setup, `CREATE TABLE IF NOT EXISTS `+rawTable+` (
		id bigserial PRIMARY KEY,
		channel text NOT NULL,
		data jsonb NOT NULL,
		created_at timestamptz NOT NULL DEFAULT clock_timestamp())`)
	cancel()
	if err != nil {
		return res, fmt.Errorf("-raw-db: create %s: %w", rawTable, err)
	}
	defer func() {
		// Clean up even when interrupted.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, derr := pool.Exec(cctx, `DROP TABLE IF EXISTS `+rawTable); derr != nil && err == nil {
			err = fmt.Errorf("-raw-db: drop %s: %w", rawTable, derr)
		}
	}()

	wctx, cancel := context.WithTimeout(ctx, duration+30*time.Second)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		commits  int64
		failures int64
		firstErr error
	)
	insert := `INSERT INTO ` + rawTable + ` (channel, data) VALUES ($1, $2)`
	notify := `SELECT pg_notify('` + rawChannel + `', '1')`
	start := time.Now()
	deadline := start.Add(duration)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ok, bad int64
			var werr error
			defer func() {
				mu.Lock()
				commits += ok
				failures += bad
				if firstErr == nil && werr != nil {
					firstErr = werr
				}
				mu.Unlock()
			}()
			conn, err := pool.Acquire(wctx)
			if err != nil {
				bad, werr = 1, err
				return
			}
			defer conn.Release()
			prefix := `{"t":`
			for seq := int64(1); time.Now().Before(deadline) && wctx.Err() == nil; seq++ {
				data := prefix + strconv.FormatInt(time.Now().UnixNano(), 10) + `,"p":` + strconv.Itoa(w) +
					`,"n":` + strconv.FormatInt(seq, 10) + `}`
				err := pgx.BeginFunc(wctx, conn, func(tx pgx.Tx) error {
					if _, err := tx.Exec(wctx, insert, "load", data); err != nil {
						return err
					}
					_, err := tx.Exec(wctx, notify)
					return err
				})
				if err != nil {
					if wctx.Err() != nil {
						return // interrupted, or the hard bound: not a failure of the database
					}
					bad++
					if werr == nil {
						werr = err
					}
					if bad >= 100 && ok == 0 {
						return // nothing works: stop hammering
					}
					continue
				}
				ok++
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.commits, res.errors = commits, failures
	if firstErr != nil {
		res.firstErr = firstErr.Error()
	}
	if commits == 0 {
		if firstErr == nil {
			firstErr = errors.New("no transaction committed")
		}
		return res, fmt.Errorf("-raw-db: %w", firstErr)
	}
	return res, nil
}
