package auth

import (
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

// Each client address may present failedKeysBurst invalid API keys at once,
// then failedKeysPerSecond a second; beyond, RequireAPIKey answers 429.
const (
	failedKeysBurst     = 100
	failedKeysPerSecond = 10
)
