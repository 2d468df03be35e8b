package usage

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// BenchmarkPublishMetered publishes single events from 16 goroutines
// through one Publisher, without a Meter and with one (flushing every 10 s
// as the service does, here at the end): the publish path's cost of
// counting is the ratio of the two events/s figures, run in one command:
//
//	go test -run '^$' -bench PublishMetered -count 6 ./internal/usage
func BenchmarkPublishMetered(b *testing.B) {
	pool := pgtest.NewDB(b)
	var tid tenant.ID
	if err := pool.QueryRow(context.Background(), `INSERT INTO tenants (name) VALUES ('bench') RETURNING id`).Scan(&tid); err != nil {
		b.Fatal(err)
	}
	d := realtime.Draft{Channel: "news", Type: "tick", Data: json.RawMessage(`{"n":1}`)}.One()
	for _, metered := range []bool{false, true} {
		name := "meter=off"
		if metered {
			name = "meter=on"
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			p := realtime.NewPublisher(pool, nil)
			m := NewMeter(pool)
			if metered {
				p.Meter = m
			}
			done := make(chan struct{})
			go func() { _ = p.Run(ctx); close(done) }()
			b.SetParallelism(8) // 8 × GOMAXPROCS (2 here) = 16 publishers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := p.Publish(context.Background(), tid, d, "", nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			cancel()
			<-done
			if err := m.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkMeterDelivered is the cost of counting one delivery, from every
// core at once, as SSE streams and WebSocket writers do after each write.
func BenchmarkMeterDelivered(b *testing.B) {
	m := NewMeter(nil)
	b.RunParallel(func(pb *testing.PB) {
		var t tenant.ID
		for pb.Next() {
			t = (t + 1) % 64
			m.Delivered(t, 1, 120)
		}
	})
}
