package web

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// AddrLimiter gives each client address (ClientAddr, counted by AddrBucket)
// a token bucket of Burst tokens that refills one every Every. It is per
// instance: a brake on floods and guessing from one client, not a quota.
type AddrLimiter struct {
	every time.Duration
	burst int

	mu sync.Mutex
	by map[netip.Prefix]*rate.Limiter
}

// maxTrackedAddrs bounds the memory a spray of addresses can take.
const maxTrackedAddrs = 10000

// NewAddrLimiter returns a limiter that allows burst at once, then one every every.
func NewAddrLimiter(every time.Duration, burst int) *AddrLimiter {
	return &AddrLimiter{every: every, burst: burst, by: map[netip.Prefix]*rate.Limiter{}}
}

// Of returns the bucket of r's client.
func (l *AddrLimiter) Of(r *http.Request) *rate.Limiter {
	key := AddrBucket(ClientAddr(r))
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.by[key]
	if !ok {
		if len(l.by) >= maxTrackedAddrs {
			l.forgetFull()
		}
		lim = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.by[key] = lim
	}
	return lim
}

// forgetFull drops the buckets that have refilled, which are as good as new;
// if that frees too little, it drops them all rather than grow.
func (l *AddrLimiter) forgetFull() {
	now := time.Now()
	for k, lim := range l.by {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.by, k)
		}
	}
	if len(l.by) >= maxTrackedAddrs*3/4 {
		clear(l.by)
	}
}
