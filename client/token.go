package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The client never verifies a token (the service does); it only reads when
// the token was issued and when it expires, to renew it in time.

const (
	// maxRenewMargin caps how long before its expiry a token is renewed.
	maxRenewMargin = 30 * time.Second
	// minRenewGap keeps renewals of one stream at least this far apart, so a
	// Token that keeps returning nearly expired tokens cannot cause a storm.
	minRenewGap = time.Second
)

// token is a subscriber token and, on the local clock, when to renew it and
// when it expires. Both times are zero when the token has no readable exp:
// it is then used until the service refuses it.
type token struct {
	value   string
	renewAt time.Time
	expires time.Time
}

// newToken schedules the renewal of v, obtained at now. The lifetime is
// taken from iat to exp when the local clock agrees with iat, so a clock
// that is off by minutes does not matter; the renewal comes a third of the
// remaining lifetime before the expiry, at most 30 s before it.
func newToken(v string, now time.Time) token {
	t := token{value: v}
	exp, iat, ok := tokenTimes(v)
	if !ok {
		return t
	}
	start, lifetime := now, exp.Sub(now)
	if !iat.IsZero() && exp.After(iat) {
		lifetime = exp.Sub(iat)
		if age := now.Sub(iat); age >= 0 && age < lifetime {
			start = iat // the clocks agree
		}
	}
	if lifetime <= 0 {
		t.renewAt, t.expires = now, now
		return t
	}
	t.expires = start.Add(lifetime)
	t.renewAt = t.expires.Add(-min(maxRenewMargin, t.expires.Sub(now)/3))
	return t
}

// due reports whether t should be replaced before it is used at now.
func (t token) due(now time.Time) bool {
	return t.value == "" || (!t.renewAt.IsZero() && !now.Before(t.renewAt))
}

// expired reports whether t is past its expiry at now.
func (t token) expired(now time.Time) bool {
	return t.value == "" || (!t.expires.IsZero() && !now.Before(t.expires))
}

// tokenTimes reads exp and iat (zero when absent) from a JWT's payload,
// without verifying it.
func tokenTimes(v string) (exp, iat time.Time, ok bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return exp, iat, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return exp, iat, false
	}
	var c struct {
		Exp, Iat *float64
	}
	if json.Unmarshal(payload, &c) != nil || c.Exp == nil {
		return exp, iat, false
	}
	at := func(s float64) time.Time {
		sec, frac := math.Modf(s)
		return time.Unix(int64(sec), int64(frac*1e9))
	}
	exp = at(*c.Exp)
	if c.Iat != nil {
		iat = at(*c.Iat)
	}
	return exp, iat, true
}

// errToken wraps an error returned by SubscribeOptions.Token.
var errToken = errors.New("hybridrt: get token")

// ErrRenew wraps the reason a token could not be renewed in place. It shows
// in State.Err while the stream is still connected; the stream then ends
// with token_expired at the old token's expiry and the subscription resumes
// from its cursor with a new token, losing and repeating nothing.
var ErrRenew = errors.New("hybridrt: renew token in place")

// renewLoop keeps SSE connection id alive past the expiry of t: before each
// token's expiry it calls Token and sends the new token to
// POST /api/realtime/connections/{id}/token. It returns when ctx ends (the
// stream is over) or when a renewal fails for good; the stream then ends
// with token_expired, which the subscription handles by reconnecting.
func (s *Subscription) renewLoop(ctx context.Context, id string, t token) {
	renewed := false
	for !t.renewAt.IsZero() {
		wait := time.Until(t.renewAt)
		if renewed {
			wait = max(wait, minRenewGap)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		nt, err := s.renew(ctx, id, t)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.setState(true, SSE, id, fmt.Errorf("%w: %w", ErrRenew, err))
			return
		}
		s.mu.Lock()
		s.tok = nt // a reconnect, should one come, uses it too
		s.mu.Unlock()
		t, renewed = nt, true
	}
}

// renew gets a new token and sends it for connection id. Network errors and
// answers worth retrying (5xx, 429) are retried with backoff while the
// current token t is valid; a refusal (401, 403, or 404 because the
// connection is not on any instance this user can reach) is returned at once.
func (s *Subscription) renew(ctx context.Context, id string, t token) (token, error) {
	backoff := 250 * time.Millisecond
	for {
		nt, err := s.renewOnce(ctx, id)
		var apiErr *Error
		retry := err != nil && ctx.Err() == nil &&
			(errors.Is(err, errToken) || !errors.As(err, &apiErr) || apiErr.Status >= 500 || apiErr.Status == http.StatusTooManyRequests)
		if !retry {
			return nt, err
		}
		d := backoff/2 + rand.N(backoff/2+1)
		if apiErr != nil && apiErr.RetryAfter > d {
			d = apiErr.RetryAfter
		}
		if !t.expires.IsZero() && time.Now().Add(d).After(t.expires) {
			return nt, err // too late: the stream ends at expiry anyway
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nt, ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Subscription) renewOnce(ctx context.Context, id string) (token, error) {
	v, err := s.opts.Token(ctx)
	if err != nil {
		return token{}, fmt.Errorf("%w: %w", errToken, err)
	}
	nt := newToken(v, time.Now())
	u := s.opts.URL + "/api/realtime/connections/" + url.PathEscape(id) + "/token"
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := doJSON(rctx, s.opts.HTTP, http.MethodPost, u, v, nil, nil, nil); err != nil {
		return token{}, err
	}
	return nt, nil
}
