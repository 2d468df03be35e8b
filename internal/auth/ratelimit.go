package auth

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/hybridrt/hybridrt/internal/web"
)

// RateLimit allows each API key perSecond requests a second on average, with
// bursts of one second's worth, and answers 429 with Retry-After beyond. It
// must sit behind RequireAPIKey. The limit is per instance.
func RateLimit(perSecond int) func(http.Handler) http.Handler {
	var (
		mu       sync.Mutex
		limiters = map[int64]*rate.Limiter{}
		lastSeen = map[int64]time.Time{}
	)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			keyID, _ := r.Context().Value(keyIDKey{}).(int64)
			now := time.Now()
			mu.Lock()
			l, ok := limiters[keyID]
			if !ok {
				if len(limiters) > 100000 { // forget idle keys now and then
					for id, t := range lastSeen {
						if now.Sub(t) > time.Minute {
							delete(limiters, id)
							delete(lastSeen, id)
						}
					}
				}
				l = rate.NewLimiter(rate.Limit(perSecond), perSecond)
				limiters[keyID] = l
			}
			lastSeen[keyID] = now
			mu.Unlock()
			if !l.AllowN(now, 1) {
				web.NewProblem(http.StatusTooManyRequests, "rate_limited",
					"this API key sent more than "+strconv.Itoa(perSecond)+" requests a second; slow down, or batch events").
					WithHeader("Retry-After", "1").Write(w)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// addrLimiter allows each client address burst requests, then one every
// interval. It keys on the connection's address: behind a proxy all
// clients share one budget, so it is a brake on floods, not a quota.
type addrLimiter struct {
	interval time.Duration
	burst    int

	mu sync.Mutex
	by map[string]*rate.Limiter
}

// Each client address may present failedKeysBurst invalid API keys at once,
// then failedKeysPerSecond a second; beyond, RequireAPIKey answers 429.
const (
	failedKeysBurst     = 100
	failedKeysPerSecond = 10
)

func (l *addrLimiter) allow(r *http.Request) bool { return l.of(r).Allow() }

// of returns the limiter of r's client address.
func (l *addrLimiter) of(r *http.Request) *rate.Limiter {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil || len(l.by) > 10000 { // bound the memory a spray of addresses can take
		l.by = map[string]*rate.Limiter{}
	}
	lim, ok := l.by[host]
	if !ok {
		lim = rate.NewLimiter(rate.Every(l.interval), l.burst)
		l.by[host] = lim
	}
	return lim
}
