package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

func newTenant(t testing.TB, pool *pgxpool.Pool) tenant.ID {
	t.Helper()
	var tn tenant.Tenant
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		var err error
		tn, err = tenant.Insert(context.Background(), tx, "t")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tn.ID
}

func startPublisher(t testing.TB, pool *pgxpool.Pool) *Publisher {
	p := NewPublisher(pool, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func draft(n int) []Draft {
	d := make([]Draft, n)
	for i := range d {
		d[i] = Draft{Channel: "c", Type: "t", Data: json.RawMessage(fmt.Sprint(i))}
	}
	return d
}

// TestGroupCommit: many concurrent requests over two tenants get gapless,
// disjoint id ranges per tenant, each request's ids consecutive; an
// idempotency mismatch inside a group fails only its own request.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	p := startPublisher(t, pool)
	a, b := newTenant(t, pool), newTenant(t, pool)

	var mu sync.Mutex
	got := map[tenant.ID][]int64{}
	var wg sync.WaitGroup
	for i := range 64 {
		tid := a
		if i%3 == 0 {
			tid = b
		}
		wg.Go(func() {
			res, err := p.Publish(context.Background(), tid, draft(1+i%5), "", nil)
			if err != nil {
				t.Error(err)
				return
			}
			for j := 1; j < len(res.IDs); j++ {
				if res.IDs[j] != res.IDs[j-1]+1 {
					t.Errorf("one request's ids %v are not consecutive", res.IDs)
				}
			}
			mu.Lock()
			got[tid] = append(got[tid], res.IDs...)
			mu.Unlock()
		})
	}
	wg.Wait()
	for tid, ids := range got {
		slices.Sort(ids)
		for i, id := range ids {
			if id != int64(i+1) {
				t.Fatalf("tenant %d ids %v are not 1..%d", tid, ids, len(ids))
			}
		}
		if n := pgtest.Count(t, pool, `SELECT count(*) FROM events WHERE tenant_id = $1`, tid); n != len(ids) {
			t.Errorf("tenant %d: %d rows for %d ids", tid, n, len(ids))
		}
	}

	// Same key, different hash, published together: one succeeds, the other
	// gets ErrIdempotencyMismatch, and a third unrelated request is unharmed.
	var r1, r2, r3 Result
	var e1, e2, e3 error
	wg.Go(func() { r1, e1 = p.Publish(context.Background(), a, draft(1), "k", []byte("h1")) })
	wg.Go(func() { r2, e2 = p.Publish(context.Background(), a, draft(2), "k", []byte("h2")) })
	wg.Go(func() { r3, e3 = p.Publish(context.Background(), a, draft(1), "", nil) })
	wg.Wait()
	if e3 != nil || len(r3.IDs) != 1 {
		t.Errorf("unrelated request = %v, %v", r3, e3)
	}
	if (e1 == nil) == (e2 == nil) || !(errors.Is(e1, ErrIdempotencyMismatch) || errors.Is(e2, ErrIdempotencyMismatch)) {
		t.Errorf("same key, two bodies: %v / %v, want one success and one mismatch", e1, e2)
	}
	_ = r1
	_ = r2
}

// BenchmarkPublish publishes single events from 16 goroutines through one
// Publisher: the figure is the group commit's throughput on this machine.
func BenchmarkPublish(b *testing.B) {
	pool := pgtest.NewDB(b)
	p := startPublisher(b, pool)
	tid := newTenant(b, pool)
	b.SetParallelism(8) // 8 × GOMAXPROCS (2 here) = 16 publishers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Publish(context.Background(), tid, draft(1), "", nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPublishLone publishes one event at a time, back to back and then
// after a quiet spell like the second between the fan-out benchmark's events:
// the "quiet" figure is what a lone event's commit costs there, wake-ups of
// an idle process, its database backend and the disk included. The figure
// is the median publish, without the quiet (which ns/op includes).
func BenchmarkPublishLone(b *testing.B) {
	pool := pgtest.NewDB(b)
	p := startPublisher(b, pool)
	tid := newTenant(b, pool)
	for _, quiet := range []time.Duration{0, 300 * time.Millisecond} {
		b.Run(fmt.Sprintf("quiet=%v", quiet), func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				time.Sleep(quiet)
				start := time.Now()
				if _, err := p.Publish(context.Background(), tid, draft(1), "", nil); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms/publish")
		})
	}
}
