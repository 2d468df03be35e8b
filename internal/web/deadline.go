package web

import (
	"context"
	"net/http"
	"time"
)

// WithConnectDeadline bounds the setup of a streaming request (an SSE
// stream, a long-poll): its authentication and database lookups must be
// done within d, or they fail, and the client gets a 503 with Retry-After
// (Unavailable) instead of waiting without bound on a starved pool. The
// stream itself, once set up, runs under StreamContext, which has no
// deadline.
func WithConnectDeadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			life := r.Context()
			ctx, cancel := context.WithTimeout(life, d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, streamLifeKey{}, life)))
		})
	}
}

type streamLifeKey struct{}

// StreamContext returns ctx (a request's context) for the streaming part of
// the request: its values, but ended only when the request is, not by the
// connect deadline of WithConnectDeadline.
func StreamContext(ctx context.Context) context.Context {
	life, ok := ctx.Value(streamLifeKey{}).(context.Context)
	if !ok {
		return ctx
	}
	return lifeOf{Context: ctx, life: life}
}

// lifeOf takes its values from Context and its end from life.
type lifeOf struct {
	context.Context
	life context.Context
}

func (c lifeOf) Deadline() (time.Time, bool) { return c.life.Deadline() }
func (c lifeOf) Done() <-chan struct{}       { return c.life.Done() }
func (c lifeOf) Err() error                  { return c.life.Err() }
