package auth

import (
	"net/http"
	"strconv"

	"github.com/hybridrt/hybridrt/internal/limit"
	"github.com/hybridrt/hybridrt/internal/web"
)

// RateLimit allows each API key perSecond requests a second on average, with
// bursts of one second's worth, and answers 429 with Retry-After beyond. It
// must sit behind RequireAPIKey. The limit holds for the key as a whole,
// across instances: each instance enforces its share (limit.Shared).
func RateLimit(shared *limit.Shared, perSecond int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			keyID, _ := r.Context().Value(keyIDKey{}).(int64)
			if !shared.Allow(limit.KeyRate(keyID), perSecond) {
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
