package hybridws

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/web"
	"github.com/hybridrt/hybridrt/internal/wsconn"
)

// Config holds the door's knobs.
type Config struct {
	// ActivityTimeout: a client silent this long is sent a ping, and is
	// dropped (4008) when PongTimeout more passes without a word.
	ActivityTimeout time.Duration
	PongTimeout     time.Duration
	AuthTimeout     time.Duration // to send {"op":"auth"} when no ticket was given
	WriteTimeout    time.Duration // a client that does not take a write within this is cut off
	KeyCheck        time.Duration // how often a connection checks that its token's key is still active
	MaxMessage      int64         // the largest message a client may send
	SubscribeRate   int           // subscribe messages per second, beyond a burst of 10
}

// DefaultConfig fits proxies' idle timeouts (a ping every 30 s of silence)
// and the tenant's largest event (64 KiB of data, and room for the rest).
var DefaultConfig = Config{
	ActivityTimeout: 30 * time.Second,
	PongTimeout:     30 * time.Second,
	AuthTimeout:     10 * time.Second,
	WriteTimeout:    10 * time.Second,
	KeyCheck:        15 * time.Second,
	MaxMessage:      80 << 10,
	SubscribeRate:   10,
}

// Door serves hybridrt's own WebSocket protocol at /api/realtime/ws.
type Door struct {
	Log          *slog.Logger
	Hub          *realtime.Hub
	Store        *realtime.Store
	Registry     *realtime.Registry
	Verifier     *auth.Verifier
	Tickets      *auth.Tickets
	Limits       *realtime.Limits
	ClientEvents *realtime.ClientEvents
	Presence     *presence.Registry
	Config       Config

	upgrader websocket.Upgrader

	mu    sync.Mutex
	conns map[*conn]struct{}
}

// Init readies the door; call it once, before it serves.
func (d *Door) Init() {
	d.conns = map[*conn]struct{}{}
	d.upgrader = websocket.Upgrader{
		ReadBufferSize:  256,
		WriteBufferPool: &sync.Pool{},
		Subprotocols:    []string{Subprotocol},
		// Pages on any origin connect, as to SSE: a connection carries a
		// token or a ticket, never a cookie.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			web.Error(w, status, "websocket_upgrade", reason.Error()+": connect with a WebSocket client, subprotocol "+Subprotocol)
		},
	}
}

// ServeHTTP upgrades GET /api/realtime/ws and serves the connection. The
// client authenticates with ?ticket= (POST /api/realtime/tickets), checked
// before the upgrade, or with its token in its first message; a token in
// the URL is refused, as it would end up in logs.
func (d *Door) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("token") {
		web.Error(w, http.StatusBadRequest, "credentials_in_url",
			`a token in the URL ends up in logs: send {"op":"auth","token":"…"} as the first message, or connect with ?ticket= from POST /api/realtime/tickets`)
		return
	}
	if !slices.Contains(websocket.Subprotocols(r), Subprotocol) {
		web.Error(w, http.StatusBadRequest, "unsupported_subprotocol",
			"offer the WebSocket subprotocol "+Subprotocol+" (new WebSocket(url, ['"+Subprotocol+"']))")
		return
	}
	var (
		sub    auth.Subscriber
		ticket = q.Has("ticket")
	)
	if ticket {
		var err error
		sub, err = d.Tickets.Redeem(r.Context(), q.Get("ticket"))
		if errors.Is(err, auth.ErrInvalidToken) {
			web.Error(w, http.StatusUnauthorized, "invalid_token", "the ticket is unknown, expired, or was not used within 60 s: get a new one")
			return
		}
		if err != nil {
			web.Fail(w, r, d.Log, web.Unavailable(err))
			return
		}
	}
	ws, err := d.upgrader.Upgrade(wsconn.Hijacker{ResponseWriter: w}, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	c := d.newConn(r, ws)
	if ticket {
		if code, reason := c.start(r.Context(), sub); code != 0 {
			c.refuse(code, reason)
			return
		}
	}
	d.mu.Lock()
	d.conns[c] = struct{}{}
	d.mu.Unlock()
	c.release = d.Hub.Hold()
	c.Serve(d.Hub, d.Config.MaxMessage)
}

// Run looks after the door's connections until ctx ends, in one sweep for
// all of them: it closes those that did not authenticate in time, pings
// the silent ones and closes those that stay silent, ends those whose token
// expired, whose key was revoked or whose tenant was suspended, and asks
// every client to reconnect elsewhere when the hub shuts down.
func (d *Door) Run(ctx context.Context) error {
	cfg := d.Config
	wsconn.Sweep(ctx, d.Hub, min(cfg.ActivityTimeout, cfg.PongTimeout, cfg.AuthTimeout)/3, cfg.KeyCheck,
		func() {
			for _, c := range d.live() {
				c.closeWith(CodeServiceRestart, "server shutting down; reconnect")
			}
		},
		func(now time.Time, checkKeys bool) {
			revoked := map[string]bool{} // by kid, asked once a sweep
			for _, c := range d.live() {
				c.sweep(ctx, now, checkKeys, revoked)
			}
		})
	return nil
}

// live returns the door's connections.
func (d *Door) live() []*conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Collect(maps.Keys(d.conns))
}
