package pusher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
	"github.com/hybridrt/hybridrt/internal/wsconn"
)

// Config holds the WebSocket door's knobs.
type Config struct {
	// ActivityTimeout is sent to clients, which ping after that much
	// silence; the server pings a client silent for as long, and drops it
	// when PongTimeout more passes without a word.
	ActivityTimeout time.Duration
	PongTimeout     time.Duration
	WriteTimeout    time.Duration // a client that does not take a write within this is cut off
	KeyCheck        time.Duration // how often a connection checks that its key is still active
	MaxMessage      int64         // the largest message a client may send
	MaxEventData    int           // bytes of a client event's data (Pusher: 10 KB)
	MaxChannels     int           // channels one connection may subscribe to
	ClientEventRate int           // client events per second per connection (Pusher: 10)
	SubscribeRate   int           // subscribe messages per second per connection, beyond a burst of MaxChannels
}

// DefaultConfig is Pusher's limits and timings, but for the activity
// timeout: 30 s rather than Pusher's 120, so that an idle connection still
// carries a ping and its pong within the idle timeouts of proxies and load
// balancers (nginx's proxy_read_timeout in deploy/nginx is 75 s, an AWS ALB's
// 60 s); pusher-js takes the shorter of its own and the server's.
var DefaultConfig = Config{
	ActivityTimeout: 30 * time.Second,
	PongTimeout:     30 * time.Second,
	WriteTimeout:    10 * time.Second,
	KeyCheck:        15 * time.Second,
	MaxMessage:      32 << 10,
	MaxEventData:    10 << 10,
	MaxChannels:     100,
	ClientEventRate: 10,
	SubscribeRate:   10,
}

// ControlChannel is the PostgreSQL channel on which instances ask each
// other to close connections (a user's terminate_connections).
const ControlChannel = "hybridrt_pusher"

// Door serves the Pusher Channels protocol over WebSocket at /app/{key}.
type Door struct {
	Log      *slog.Logger
	Hub      *realtime.Hub
	Store    *realtime.Store
	Registry *realtime.Registry
	Keys     *auth.Verifier
	Settings interface {
		Settings(context.Context, tenant.ID) (tenant.Settings, error)
	}
	Presence  *presence.Registry
	Publisher *realtime.Publisher
	Limits    *realtime.Limits
	Pool      *pgxpool.Pool
	Config    Config
	// Webhook, when set, gives the webhook a client event sends.
	Webhook realtime.WebhookFunc
	// CacheMiss, when set, is told of every subscription to a cache-
	// channel that has no event to give (the cache_miss webhook).
	CacheMiss func(ctx context.Context, tenantID tenant.ID, channel string)

	prefixMu sync.Mutex
	prefix   int64        // this instance's socket id prefix, unique across instances; 0 until taken
	sockets  atomic.Int64 // the last socket number handed out
	upgrader websocket.Upgrader

	mu    sync.Mutex
	conns map[*conn]struct{}
}

// Init readies the door; call it once, before it serves.
func (d *Door) Init() {
	d.sockets.Store(rand.Int64N(1 << 20))
	d.conns = map[*conn]struct{}{}
	d.upgrader = websocket.Upgrader{
		// A small read buffer held for the connection's life, and write
		// buffers from a pool: an idle connection holds neither much.
		ReadBufferSize:  256,
		WriteBufferPool: &sync.Pool{},
		// pusher-js connects from any page: the app key is public, and
		// private channels need the tenant backend's signature anyway.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			web.Error(w, status, "websocket_upgrade", reason.Error()+": connect with a WebSocket client such as pusher-js")
		},
	}
}

// socketPrefix returns this instance's socket id prefix, taking it from a
// database sequence the first time: socket ids are prefix.n, unique across
// the instances that share the database. Taken on first use, not at start,
// so an instance starts (and says it is not ready) while the database is away.
func (d *Door) socketPrefix(ctx context.Context) (int64, error) {
	d.prefixMu.Lock()
	defer d.prefixMu.Unlock()
	if d.prefix == 0 {
		if err := d.Pool.QueryRow(ctx, `SELECT nextval('pusher_socket_prefix')`).Scan(&d.prefix); err != nil {
			return 0, fmt.Errorf("pusher: take a socket id prefix: %w", err)
		}
	}
	return d.prefix, nil
}

// ServeHTTP upgrades GET /app/{key} and serves the connection.
func (d *Door) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := chi.URLParam(r, "key")
	ws, err := d.upgrader.Upgrade(wsconn.Hijacker{ResponseWriter: w}, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	prefix, err := d.socketPrefix(r.Context())
	c := d.newConn(r, ws, prefix)
	if err != nil {
		d.Log.Warn("pusher: cannot number the connection; refused it", "err", err)
		upgrades.WithLabelValues(strconv.Itoa(codeReconnect)).Inc()
		c.refuse(codeReconnect, "The service is unavailable; reconnect")
		return
	}
	if code, reason := d.admit(r, c, key); code != 0 {
		upgrades.WithLabelValues(strconv.Itoa(code)).Inc()
		c.refuse(code, reason)
		return
	}
	upgrades.WithLabelValues("ok").Inc()
	c.release = d.Hub.Hold()
	c.Serve(d.Hub, d.Config.MaxMessage) // write may run from here on: it sends connection_established
}

// admit checks the connection's protocol version, key and tenant, and
// registers it, or returns the close code and reason that refuse it.
func (d *Door) admit(r *http.Request, c *conn, key string) (int, string) {
	ctx := r.Context()
	select {
	case <-d.Hub.Done():
		return codeOverCapacity, "Server shutting down; reconnect"
	default:
	}
	switch v := r.URL.Query().Get("protocol"); {
	case v == "":
		return codeNoProtocol, "No protocol version supplied: connect with ?protocol=7"
	case v != "5" && v != "6" && v != "7":
		return codeBadProtocol, "Unsupported protocol version " + strconv.Quote(v) + ": this server speaks 7"
	}
	tenantID, _, err := d.Keys.KeySecret(ctx, key)
	if errors.Is(err, auth.ErrNotFound) {
		return codeAppNotFound, "App key " + strconv.Quote(clip(key)) + " not in this cluster: use a signing key id (sk_…) of your hybridrt tenant"
	}
	if err != nil {
		return codeReconnect, "The service is unavailable; reconnect"
	}
	max, err := d.Limits.ConnectionsFor(ctx, tenantID)
	if err != nil {
		return codeReconnect, "The service is unavailable; reconnect"
	}
	c.tenantID, c.key = tenantID, key
	c.info.TenantID = tenantID
	c.info.Subject = ""
	if err := d.Registry.Add(ctx, c.info, time.Now().Add(100*365*24*time.Hour), max); err != nil {
		if errors.Is(err, realtime.ErrTooManyConnections) {
			// Not Pusher's 4004, after which pusher-js never reconnects: the
			// limit holds across instances within a margin that moves (a
			// dead instance's connections count for InstanceDead), so a
			// refusal may pass a moment later.
			return codeOverCapacity, "This app has reached its connection limit; reconnect later"
		}
		return codeReconnect, "The service is unavailable; reconnect"
	}
	// Events count from now: from what this instance has read of the
	// tenant's, else from the store's head (a first connection).
	cursor, ok := d.Hub.Last(tenantID)
	if !ok {
		pos, err := d.Store.Position(ctx, tenantID)
		if err != nil {
			d.Registry.Remove(c.info)
			return codeReconnect, "The service is unavailable; reconnect"
		}
		cursor = pos.Head
	}
	select {
	case <-c.info.TenantSuspended():
		d.Registry.Remove(c.info)
		return codeAppDisabled, "This app is suspended by the operator of this service"
	default:
	}
	c.cursor = cursor
	c.sub = d.Hub.SubscribeFunc(tenantID, []string{}, c.Poke) // channels come with pusher:subscribe
	c.sub.BeforeBlock = c.Writer.Blocking
	d.mu.Lock()
	d.conns[c] = struct{}{}
	d.mu.Unlock()
	c.queue(jsonFrame("pusher:connection_established", "", map[string]any{
		"socket_id":        c.socketID,
		"activity_timeout": int(d.Config.ActivityTimeout.Seconds()),
	}))
	return 0, ""
}

// Run looks after the door's connections until ctx ends, one sweep for all
// of them rather than timers per connection: it pings the silent ones and
// closes those that stay silent, closes those whose key was revoked or
// whose tenant was suspended, and,
// when the hub shuts down, asks every client to reconnect elsewhere.
func (d *Door) Run(ctx context.Context) error {
	cfg := d.Config
	// Often enough that the ping goes out well before the read deadline
	// (activity + pong timeout) drops a client that would have answered
	// it: a client that only receives never pings itself.
	wsconn.Sweep(ctx, d.Hub, min(cfg.ActivityTimeout, cfg.PongTimeout)/3, cfg.KeyCheck,
		func() {
			// Shutting down: pusher-js reconnects after a back-off, to
			// another instance, with its subscriptions.
			for _, c := range d.live() {
				c.closeWith(codeOverCapacity, "Server shutting down; reconnect")
			}
		},
		func(now time.Time, checkKeys bool) { d.sweep(ctx, now, checkKeys) })
	return nil
}

// sweep is one look at every connection (Run).
func (d *Door) sweep(ctx context.Context, now time.Time, checkKeys bool) {
	cfg := d.Config
	revoked := map[string]bool{} // by key, asked once a sweep
	for _, c := range d.live() {
		silent := c.Silent(now)
		if silent >= cfg.ActivityTimeout+cfg.PongTimeout {
			// No read waits on a deadline (idle connections hold no
			// goroutine): the sweep is what drops a silent client.
			c.closeWith(codePongTimeout, "Pong reply not received: the client was silent too long")
			continue
		}
		if silent >= cfg.ActivityTimeout && c.FirstPing() {
			c.queue(frame("pusher:ping", "", "{}"))
		}
		select {
		case <-c.info.TenantSuspended():
			c.closeWith(codeAppDisabled, "This app is suspended by the operator of this service")
			continue
		default:
		}
		if !checkKeys {
			continue
		}
		gone, ok := revoked[c.key]
		if !ok {
			active, err := d.Keys.KeyActive(ctx, c.key)
			gone = err == nil && !active // an error: ask again next time
			revoked[c.key] = gone
		}
		if gone {
			c.closeWith(codeUnauthorized, "The app key was revoked")
		}
	}
}

// live returns the door's connections.
func (d *Door) live() []*conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Collect(maps.Keys(d.conns))
}

// Notified is the door's share of the instance's LISTEN connection: asks
// from other instances to close a user's connections.
func (d *Door) Notified() realtime.Notified {
	return realtime.Notified{
		Channel: ControlChannel,
		Handle: func(payload string) {
			var m struct {
				Tenant tenant.ID `json:"t"`
				User   string    `json:"u"`
			}
			if json.Unmarshal([]byte(payload), &m) == nil {
				d.terminateLocal(m.Tenant, m.User)
			}
		},
	}
}

// Terminate closes every connection signed in as userID on every instance.
func (d *Door) Terminate(ctx context.Context, tenantID tenant.ID, userID string) error {
	payload, _ := json.Marshal(map[string]any{"t": tenantID, "u": userID})
	if _, err := d.Pool.Exec(ctx, `SELECT pg_notify($1, $2)`, ControlChannel, string(payload)); err != nil {
		return fmt.Errorf("pusher: terminate the connections of user %q: %w", userID, err)
	}
	return nil
}

// terminateLocal closes this instance's connections signed in as userID.
func (d *Door) terminateLocal(tenantID tenant.ID, userID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.conns {
		if c.tenantID == tenantID && c.user.Load() != nil && *c.user.Load() == userID {
			c.closeWith(codeUnauthorized, "Connection terminated by the app's server")
		}
	}
}

// clip shortens a client's value for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
