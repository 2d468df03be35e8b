package limit

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// BenchmarkAllow is the publish path's cost of a shared rate limit;
// BenchmarkAllowLocal is the per-instance limiter it replaced (a map of
// token buckets behind a mutex), for the ratio in one run.
func BenchmarkAllow(b *testing.B) {
	s := New(nil, 20*time.Second)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Allow("key:1", 1<<30)
		}
	})
}

func BenchmarkAllowLocal(b *testing.B) {
	var (
		mu       sync.Mutex
		limiters = map[int64]*rate.Limiter{}
		lastSeen = map[int64]time.Time{}
	)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := time.Now()
			mu.Lock()
			l, ok := limiters[1]
			if !ok {
				l = rate.NewLimiter(rate.Limit(1<<30), 1<<30)
				limiters[1] = l
			}
			lastSeen[1] = now
			mu.Unlock()
			l.AllowN(now, 1)
		}
	})
}

// BenchmarkSync is one instance's sync with three live instances that each
// know scopes scopes: the database work behind the shares, once a second.
func BenchmarkSync(b *testing.B) {
	for _, scopes := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("scopes=%d", scopes), func(b *testing.B) {
			c := newCluster(b, 3)
			for i, s := range c.nodes {
				for k := range scopes {
					s.Allow(fmt.Sprintf("key:%d", k), 100)
					if k%2 == 0 {
						s.Acquire(b.Context(), fmt.Sprintf("conn:%d", k), 100)
					}
				}
				if err := s.Sync(b.Context(), c.ids[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				if err := c.nodes[0].Sync(b.Context(), c.ids[0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
