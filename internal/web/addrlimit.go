package web

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Buckets gives each key a token bucket of Burst tokens that refills at a
// rate. It is per instance: a brake on floods from one client, not a quota.
type Buckets[K comparable] struct {
	limit rate.Limit
	burst int

	mu sync.Mutex
	by map[K]*rate.Limiter
}

// maxTrackedKeys bounds the memory a spray of keys can take.
const maxTrackedKeys = 10000

// NewBuckets returns buckets that allow burst at once, then perSecond a second.
func NewBuckets[K comparable](perSecond rate.Limit, burst int) *Buckets[K] {
	return &Buckets[K]{limit: perSecond, burst: burst, by: map[K]*rate.Limiter{}}
}

// Of returns key's bucket.
func (b *Buckets[K]) Of(key K) *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	lim, ok := b.by[key]
	if !ok {
		if len(b.by) >= maxTrackedKeys {
			b.forgetFull()
		}
		lim = rate.NewLimiter(b.limit, b.burst)
		b.by[key] = lim
	}
	return lim
}

// forgetFull drops the buckets that have refilled, which are as good as new;
// if that frees too little, it drops them all rather than grow.
func (b *Buckets[K]) forgetFull() {
	now := time.Now()
	for k, lim := range b.by {
		if lim.TokensAt(now) >= float64(b.burst) {
			delete(b.by, k)
		}
	}
	if len(b.by) >= maxTrackedKeys*3/4 {
		clear(b.by)
	}
}

// AddrLimiter gives each client address (ClientAddr, counted by AddrBucket)
// a bucket of Burst tokens that refills one every Every.
type AddrLimiter struct{ buckets *Buckets[netip.Prefix] }

// NewAddrLimiter returns a limiter that allows burst at once, then one every every.
func NewAddrLimiter(every time.Duration, burst int) *AddrLimiter {
	return &AddrLimiter{NewBuckets[netip.Prefix](rate.Every(every), burst)}
}

// Of returns the bucket of r's client.
func (l *AddrLimiter) Of(r *http.Request) *rate.Limiter {
	return l.buckets.Of(AddrBucket(ClientAddr(r)))
}
