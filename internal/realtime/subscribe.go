package realtime

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/web"
)

// StreamConfig holds the subscribe side's knobs.
type StreamConfig struct {
	Heartbeat    time.Duration // comment line interval on SSE (DESIGN: 15 s)
	WriteTimeout time.Duration // a client that does not take a write within this is cut off
	MaxChannels  int           // channels per subscription (DESIGN: 100)
	Retry        time.Duration // the reconnection delay sent in the retry: field
	// PollPresenceGrace is how long a long-poller stays a member of its
	// presence channels after its poll's hold, for its next poll to come.
	PollPresenceGrace time.Duration
}

// DefaultStreamConfig is DESIGN's defaults.
var DefaultStreamConfig = StreamConfig{
	Heartbeat:    15 * time.Second,
	WriteTimeout: 10 * time.Second,
	MaxChannels:  100,
	Retry:        2 * time.Second,

	PollPresenceGrace: 15 * time.Second,
}

// subscription is a checked subscribe request.
type subscription struct {
	sub      auth.Subscriber
	channels []string
	cursor   int64
	resync   bool // the cursor was older than retention and was moved forward
}

// parseSubscription reads the channels and the cursor of a subscribe or poll
// request and checks them against the subscriber's token and the tenant's
// position. cursorParams are the query parameters that may hold the cursor,
// after the Last-Event-ID header, which wins.
func parseSubscription(ctx context.Context, r *http.Request, store *Store, cfg StreamConfig, cursorParams ...string) (subscription, error) {
	s := subscription{sub: auth.SubscriberFrom(ctx)}
	q := r.URL.Query()
	seen := map[string]bool{}
	for _, v := range q["channels"] {
		for _, name := range strings.Split(v, ",") {
			if seen[name] {
				continue
			}
			seen[name] = true
			if len(seen) > cfg.MaxChannels {
				countRejection("too_many_channels")
				return s, web.NewProblem(http.StatusBadRequest, "too_many_channels",
					fmt.Sprintf("a subscription may name at most %d channels", cfg.MaxChannels))
			}
			if err := channel.Valid(name); err != nil {
				return s, web.NewProblem(http.StatusBadRequest, "invalid_channel", err.Error())
			}
			s.channels = append(s.channels, name)
		}
	}
	if len(s.channels) == 0 {
		return s, web.NewProblem(http.StatusBadRequest, "missing_channels",
			"name the channels to subscribe to, e.g. ?channels=broadcast,user:42")
	}
	for _, name := range s.channels {
		if !s.sub.Allows(name) {
			return s, web.NewProblem(http.StatusForbidden, "insufficient_scope",
				fmt.Sprintf("the token does not allow channel %q: user: channels belong to the token's sub, other channels must be in its channels claim", name))
		}
	}

	raw := r.Header.Get("Last-Event-ID")
	for _, p := range cursorParams {
		if raw == "" {
			raw = q.Get(p)
		}
	}
	cursor, given, err := ParseCursor(raw)
	if err != nil {
		return s, web.NewProblem(http.StatusBadRequest, "invalid_cursor", err.Error())
	}
	pos, err := store.Position(ctx, s.sub.TenantID)
	if err != nil {
		return s, web.Unavailable(err)
	}
	switch {
	case !given:
		cursor = pos.Head // from now on
	case cursor > pos.Head:
		return s, web.NewProblem(http.StatusBadRequest, "cursor_ahead",
			fmt.Sprintf("event id %d is past this tenant's latest event (%d): ids belong to one tenant", cursor, pos.Head))
	case cursor < pos.Pruned:
		cursor, s.resync = pos.Pruned, true
	}
	s.cursor = cursor
	return s, nil
}

// subscribeError maps registry errors to problems.
func subscribeError(err error) error {
	if errors.Is(err, ErrTooManyConnections) {
		countRejection("too_many_connections")
		return web.NewProblem(http.StatusTooManyRequests, "too_many_connections",
			"this tenant has reached its connection limit; retry later").WithHeader("Retry-After", "5")
	}
	return err
}

func newConn(r *http.Request, s subscription, transport string) *Conn {
	return NewConn(r, s.sub, s.channels, transport)
}

// NewConn returns a registry entry for a connection of sub's over
// transport, as r made it, with a new id.
func NewConn(r *http.Request, sub auth.Subscriber, channels []string, transport string) *Conn {
	ua := r.UserAgent()
	if len(ua) > 300 {
		ua = ua[:300]
	}
	c := &Conn{
		ID:          NewConnID(),
		TenantID:    sub.TenantID,
		Subject:     sub.Subject,
		Channels:    channels,
		Transport:   transport,
		RemoteAddr:  web.ClientAddrString(r),
		UserAgent:   ua,
		ConnectedAt: time.Now(),
	}
	c.kid.Store(&sub.Kid)
	return c
}
