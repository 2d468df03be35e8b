package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// errNoCredentials is a missing Authorization header; errBadHeader a malformed one.
var (
	errNoCredentials = errors.New("no credentials")
	errBadHeader     = errors.New("malformed Authorization header")
)

// bearer returns the token of r's one Authorization header. The scheme is
// case-insensitive (RFC 9110); anything but exactly "Bearer <token>" is
// errBadHeader, and a credential in the URL is refused so it is not copied
// into logs and browser histories.
func bearer(r *http.Request) (string, *web.Problem) {
	q := r.URL.Query()
	for _, p := range []string{"api_key", "apikey", "access_token"} {
		if q.Has(p) {
			return "", web.NewProblem(http.StatusBadRequest, "credentials_in_url",
				"send the key in the Authorization header as \"Bearer <key>\", not in the URL").
				WithHeader("WWW-Authenticate", `Bearer realm="hybridrt", error="invalid_request"`)
		}
	}
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return "", web.NewProblem(http.StatusUnauthorized, "unauthorized",
			"send your API key in the header Authorization: Bearer <key>").
			WithHeader("WWW-Authenticate", `Bearer realm="hybridrt"`)
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if len(values) > 1 || !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", web.NewProblem(http.StatusBadRequest, "invalid_request",
			"the Authorization header must be exactly one \"Bearer <key>\"").
			WithHeader("WWW-Authenticate", `Bearer realm="hybridrt", error="invalid_request"`)
	}
	return token, nil
}

// RequireAPIKey admits requests that carry a valid API key and puts its
// tenant in the request context.
//
// A valid key is always admitted, whatever else its client's address has
// sent: an address that keeps presenting invalid keys only gets its
// failures answered with 429 and Retry-After instead of 401, so a client
// behind the same proxy or NAT as a misconfigured or hostile one is never
// locked out. What a spray of invalid keys costs is bounded by Keys: a key
// whose lookup prefix was just seen is checked in memory.
func RequireAPIKey(log *slog.Logger, keys *Keys) func(http.Handler) http.Handler {
	failures := web.NewAddrLimiter(time.Second/failedKeysPerSecond, failedKeysBurst)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, p := bearer(r)
			if p != nil {
				p.Write(w)
				return
			}
			tenantID, keyID, err := keys.Authenticate(r.Context(), token)
			if errors.Is(err, ErrInvalidKey) {
				// Only a well-formed key costs a lookup; a malformed one is
				// refused without, so it is not counted.
				if wellFormed(token) && !failures.Of(r).Allow() {
					web.NewProblem(http.StatusTooManyRequests, "too_many_failed_attempts",
						"too many invalid API keys from this address; check the key, and retry later").
						WithHeader("Retry-After", "1").Write(w)
					return
				}
				web.NewProblem(http.StatusUnauthorized, "invalid_api_key",
					"the API key is not valid: it may be mistyped or revoked").
					WithHeader("WWW-Authenticate", `Bearer realm="hybridrt", error="invalid_token"`).
					Write(w)
				return
			}
			if err != nil {
				web.Fail(w, r, log, web.Unavailable(err))
				return
			}
			ctx := context.WithValue(tenant.WithID(r.Context(), tenantID), keyIDKey{}, keyID)
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// operatorOK reports whether r carries the operator token. Both sides are
// hashed first so the comparison takes the same time whatever their lengths.
func operatorOK(r *http.Request, operatorToken string) (bool, *web.Problem) {
	token, p := bearer(r)
	if p != nil {
		return false, p
	}
	return OperatorTokenOK(token, operatorToken), nil
}

// RequireOperator admits requests that carry the operator token as bearer.
// With no operator token configured, the operator API is off (404).
func RequireOperator(operatorToken string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if operatorToken == "" {
				web.Error(w, http.StatusNotFound, "operator_api_off", "the operator API is off: start the server with OPERATOR_TOKEN set")
				return
			}
			ok, p := operatorOK(r, operatorToken)
			if p != nil {
				p.Write(w)
				return
			}
			if !ok {
				web.NewProblem(http.StatusUnauthorized, "invalid_operator_token", "the operator token is not valid").
					WithHeader("WWW-Authenticate", `Bearer realm="hybridrt", error="invalid_token"`).Write(w)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// OperatorTokenOK reports whether token is the operator token. Both sides are
// hashed first so the comparison takes the same time whatever their lengths.
func OperatorTokenOK(token, operatorToken string) bool {
	got, want := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(operatorToken))
	return operatorToken != "" && subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

type (
	keyIDKey      struct{}
	subscriberKey struct{}
)

// SubscriberFrom returns the subscriber that RequireSubscriber verified.
func SubscriberFrom(ctx context.Context) Subscriber {
	s, ok := ctx.Value(subscriberKey{}).(Subscriber)
	if !ok {
		panic("auth: no subscriber in context; is the handler behind auth.RequireSubscriber?")
	}
	return s
}

// WithSubscriber returns ctx carrying s.
func WithSubscriber(ctx context.Context, s Subscriber) context.Context {
	return context.WithValue(tenant.WithID(ctx, s.TenantID), subscriberKey{}, s)
}

func invalidToken() *web.Problem {
	return web.NewProblem(http.StatusUnauthorized, "invalid_token",
		"the subscriber token or ticket is not valid; get a fresh token from your backend").
		WithHeader("WWW-Authenticate", `Bearer realm="hybridrt", error="invalid_token"`)
}

// RequireSubscriber admits requests with a valid subscriber credential: a JWT
// as bearer, or in ?token= for plain clients, or (allowTicket) a ticket in
// ?ticket= for EventSource. Every bad credential gets the same 401.
func RequireSubscriber(log *slog.Logger, verifier *Verifier, tickets *Tickets, allowTicket bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			var (
				s   Subscriber
				err error
			)
			switch {
			case allowTicket && q.Has("ticket"):
				s, err = tickets.Redeem(r.Context(), q.Get("ticket"))
			case q.Has("token"):
				s, err = verifier.Verify(r.Context(), q.Get("token"))
			default:
				token, p := bearer(r)
				if p != nil {
					if p.Status == http.StatusUnauthorized {
						p.Detail = "send a subscriber token as \"Authorization: Bearer <jwt>\", or ?ticket= from POST /api/realtime/tickets"
					}
					p.Write(w)
					return
				}
				s, err = verifier.Verify(r.Context(), token)
			}
			if errors.Is(err, ErrInvalidToken) {
				invalidToken().Write(w)
				return
			}
			if err != nil {
				web.Fail(w, r, log, web.Unavailable(err))
				return
			}
			next.ServeHTTP(w, r.WithContext(WithSubscriber(r.Context(), s)))
		})
	}
}

// LookupSubscriber returns the subscriber in ctx, if there is one.
func LookupSubscriber(ctx context.Context) (Subscriber, bool) {
	s, ok := ctx.Value(subscriberKey{}).(Subscriber)
	return s, ok
}
