package webhook

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// BenchmarkOutbox is the outbox's throughput on this machine: b.N events
// enqueued for 8 tenants, then sent by two workers (two instances) in
// batches to local endpoints that acknowledge at once, until the outbox is
// empty. The figure is events/s from the first claim to the last delete.
//
//	go test -run '^$' -bench Outbox -benchtime 20000x -count 5 ./internal/webhook
func BenchmarkOutbox(b *testing.B) {
	f := newFixture(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ids []tenant.ID
	for range 8 {
		id, _ := f.tenant(b)
		ids = append(ids, id)
	}
	const chunk = 500
	for i := 0; i < b.N; i += chunk {
		evs := make([]Event, min(chunk, b.N-i))
		for j := range evs {
			evs[j] = occupied(fmt.Sprint("c", i+j))
		}
		if _, err := Enqueue(ctx, f.pool, ids[(i/chunk)%len(ids)], evs...); err != nil {
			b.Fatal(err)
		}
	}
	f.makeDue(b)
	b.ResetTimer()
	start := time.Now()
	for range 2 {
		w := f.worker()
		go func() { _ = w.Run(ctx) }()
	}
	for {
		var left int
		if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM webhook_outbox`).Scan(&left); err != nil {
			b.Fatal(err)
		}
		if left == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
