package hybridws

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/wsconn"
)

// readBatch is how many events the writer reads at a time.
const readBatch = 500

// maxQueued bounds the frames a connection may have waiting besides events
// (replies): a client that provokes more than this without reading is cut off.
const maxQueued = 1024

// conn is one connection. Like the Pusher door's, it holds no goroutine
// while idle (wsconn.Socket): the hub's poller says when the client sent
// something, and a goroutine reads one message and handles it (readOne);
// write runs, on the realtime core's writers, only while there is
// something to send.
type conn struct {
	wsconn.Socket // reads when the client sends, runs write when poked

	d       *Door
	req     *http.Request // what the registry entry is made from; nil once it is
	release func()
	opened  time.Time
	authed  atomic.Bool // start succeeded: info, hub and the write's cursor are set

	subscribes *rate.Limiter

	// Shared between read and write, under mu.
	mu       sync.Mutex
	sub      auth.Subscriber         // the latest token's
	info     *realtime.Conn          // this connection in the registry, once authenticated
	out      [][]byte                // frames, encoded
	changes  []change                // subscribes and unsubscribes for write to apply, in order
	channels map[string]bool         // subscribed, as read counts them
	presence map[string]*presenceSub // memberships of presence channels
	closing  *closeFrame

	// write's own.
	hub    *realtime.Subscription
	cursor int64            // the id up to which events were looked at
	starts map[string]int64 // per channel: events up to this id are not for the client
	live   bool             // past the first read: deliveries are live, for the latency histogram
}

type closeFrame struct {
	code   int
	reason string
}

// change is a subscribe (from: where the client's events start, after
// resync) or an unsubscribe, for write to apply between its deliveries.
type change struct {
	ref         json.RawMessage
	unsubscribe bool
	channels    []string
	from        int64
	given       bool                    // the client gave a cursor; else from now
	resync      bool                    // the client's cursor was older than retention
	presence    map[string]*presenceSub // the presence channels it joined
}

func (d *Door) newConn(r *http.Request, ws *websocket.Conn) *conn {
	c := &conn{
		d: d, req: r, opened: time.Now(),
		subscribes: rate.NewLimiter(rate.Limit(d.Config.SubscribeRate), 10),
		channels:   map[string]bool{},
		presence:   map[string]*presenceSub{},
		starts:     map[string]int64{},
		release:    func() {},
	}
	c.ReadOne = c.readOne
	c.Init(ws, d.Config.WriteTimeout, c.write)
	return c
}

// start authenticates the connection as sub: registers it, takes its
// place in the tenant's sequence and queues ready. It returns the close
// code and reason that refuse it, or 0.
func (c *conn) start(ctx context.Context, sub auth.Subscriber) (int, string) {
	d := c.d
	select {
	case <-d.Hub.Done():
		return CodeServiceRestart, "server shutting down; reconnect"
	default:
	}
	max, err := d.Limits.ConnectionsFor(ctx, sub.TenantID)
	if err != nil {
		return CodeUnavailable, "the service is unavailable; reconnect"
	}
	c.mu.Lock()
	req := c.req
	c.mu.Unlock()
	if req == nil {
		return CodeUnauthorized, "already authenticated"
	}
	info := realtime.NewConn(req, sub, []string{}, "ws")
	if err := d.Registry.Add(ctx, info, sub.Expires, max); err != nil {
		if errors.Is(err, realtime.ErrTooManyConnections) {
			return CodeTooMany, "this tenant has reached its connection limit; reconnect later"
		}
		return CodeUnavailable, "the service is unavailable; reconnect"
	}
	cursor, ok := d.Hub.Last(sub.TenantID)
	if !ok {
		pos, err := d.Store.Position(ctx, sub.TenantID)
		if err != nil {
			d.Registry.Remove(info)
			return CodeUnavailable, "the service is unavailable; reconnect"
		}
		cursor = pos.Head
	}
	select {
	case <-info.TenantSuspended():
		d.Registry.Remove(info)
		return CodeForbidden, "the tenant is suspended by the operator of this service"
	default:
	}
	hub := d.Hub.SubscribeFunc(sub.TenantID, []string{}, c.Poke)
	hub.BeforeBlock = c.Writer.Blocking
	c.mu.Lock()
	c.sub, c.info, c.req = sub, info, nil
	c.hub, c.cursor = hub, cursor // write runs only after this: under mu, or before Release
	c.out = append(c.out, reply("ready", nil, map[string]any{
		"connectionId": info.ID, "cursor": id(cursor), "expiresAt": utc(sub.Expires),
	}))
	c.mu.Unlock()
	c.authed.Store(true)
	c.Poke()
	return 0, ""
}

// refuse ends a connection that was not admitted.
func (c *conn) refuse(code int, reason string) {
	c.Refuse(wsconn.Close(code, reason))
	closes.WithLabelValues(strconv.Itoa(code)).Inc()
}

// queue adds an encoded frame for write to send. A client that provokes
// more than maxQueued frames without reading them is cut off.
func (c *conn) queue(f []byte) {
	c.mu.Lock()
	if len(c.out) >= maxQueued {
		c.mu.Unlock()
		c.closeWith(websocket.ClosePolicyViolation, "too many messages waiting: the client does not read")
		return
	}
	c.out = append(c.out, f)
	c.mu.Unlock()
	c.Poke()
}

// closeWith asks write to send a close frame with code and reason, and end
// the connection. The first reason given wins.
func (c *conn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closing == nil {
		c.closing = &closeFrame{code, reason}
	}
	c.mu.Unlock()
	c.Poke()
}

// write sends what there is to send, as the connection's Runner.Step, and
// ends the connection when that is what is left to do.
func (c *conn) write() bool {
	if !c.writeOnce() {
		c.Writer.Blocking() // cleanup waits for reads, and for the database
		c.cleanup()
		return false
	}
	return true
}

// writeOnce sends replies, applies subscription changes (with their
// replays), sends events, and reports whether the connection goes on.
func (c *conn) writeOnce() bool {
	c.mu.Lock()
	out, changes, closing := c.out, c.changes, c.closing
	c.out, c.changes = nil, nil
	c.mu.Unlock()
	if len(out) > 0 && c.Send(out...) != nil {
		return false
	}
	if closing != nil {
		c.sendClose(closing.code, closing.reason)
		return false
	}
	if c.ReadEnded() {
		// The client left, or read ended it. What read queued before it
		// ended, and why (closing), may have come after the take above:
		// readEnded is set after both, so take them again.
		c.mu.Lock()
		out, closing := c.out, c.closing
		c.out = nil
		c.mu.Unlock()
		if len(out) > 0 {
			_ = c.Send(out...)
		}
		if closing == nil {
			closing = &closeFrame{websocket.CloseNormalClosure, ""}
		}
		c.sendClose(closing.code, closing.reason)
		return false
	}
	if !c.authed.Load() {
		return true
	}
	// Events up to the cursor first, so that a subscription's replay ends
	// where the live events of the channels already subscribed stand.
	if !c.deliver() {
		return false
	}
	for _, ch := range changes {
		if !c.apply(ch) {
			return false
		}
	}
	return c.deliver()
}

// deliver sends the events after the cursor of the subscribed channels.
func (c *conn) deliver() bool {
	self := c.info.ID
	for {
		evs, scanned, err := c.hub.After(c.Ctx, c.cursor, readBatch)
		if err != nil {
			if c.Ctx.Err() == nil {
				c.sendClose(CodeUnavailable, "the service is unavailable; reconnect")
			}
			return false
		}
		c.cursor = scanned
		var frames [][]byte
		for _, e := range evs {
			start, ok := c.starts[e.Channel]
			if !ok || e.ID <= start || e.Origin == self {
				continue
			}
			frames = append(frames, eventFrame(e))
		}
		if len(frames) > 0 {
			if c.Send(frames...) != nil {
				return false
			}
			c.d.Hub.ObserveDelivery(c.info.TenantID, "ws", len(frames), realtime.FramesLen(frames), evs[len(evs)-1].Time, c.live)
		}
		if len(evs) < readBatch {
			c.live = true
			return true
		}
	}
}

// apply takes a subscribe or unsubscribe into the hub subscription and
// answers it. A subscribe from a cursor behind the connection's first
// replays its channels' events up to the connection's cursor from the
// store; after the answer they go on live, with no gap and no duplicate.
func (c *conn) apply(ch change) bool {
	var frames [][]byte
	if ch.unsubscribe {
		for _, name := range ch.channels {
			delete(c.starts, name)
		}
		frames = append(frames, reply("unsubscribed", ch.ref, map[string]any{"channels": ch.channels}))
	} else {
		if ch.resync {
			frames = append(frames, reply("resync", ch.ref, map[string]any{"channels": ch.channels, "cursor": id(ch.from)}))
		}
		from := c.cursor // from now, unless the client said where it stands
		if ch.given {
			from = ch.from
		}
		for from < c.cursor {
			c.Writer.Blocking() // a read from the store
			ctx, cancel := context.WithTimeout(c.Ctx, 5*time.Second)
			evs, err := c.d.Store.ReadChannels(ctx, c.info.TenantID, ch.channels, from, c.cursor, readBatch)
			cancel()
			if err != nil {
				if c.Ctx.Err() == nil {
					c.sendClose(CodeUnavailable, "the service is unavailable; reconnect")
				}
				return false
			}
			for _, e := range evs {
				if e.Origin != c.info.ID {
					frames = append(frames, eventFrame(e))
				}
			}
			if len(evs) < readBatch {
				break
			}
			from = evs[len(evs)-1].ID
			if c.Send(frames...) != nil {
				return false
			}
			frames = nil
		}
		start := max(c.cursor, ch.from)
		for _, name := range ch.channels {
			c.starts[name] = start
		}
		frames = append(frames, reply("subscribed", ch.ref, map[string]any{"channels": ch.channels, "cursor": id(start)}))
		frames = append(frames, c.presenceFrames(ch)...)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range c.starts {
			if !yield(name) {
				return
			}
		}
	})
	c.hub.Set(names)
	c.d.Registry.SetChannels(c.info, names)
	return c.Send(frames...) == nil
}

// sendClose sends a close frame, briefly: the client may be gone.
func (c *conn) sendClose(code int, reason string) {
	c.SendClose(wsconn.Close(code, reason))
	closes.WithLabelValues(strconv.Itoa(code)).Inc()
}

// cleanup ends the connection: the socket, then (once read has stopped)
// its registry and hub entries.
func (c *conn) cleanup() {
	c.Shutdown()
	d := c.d
	d.mu.Lock()
	delete(d.conns, c)
	d.mu.Unlock()
	if c.authed.Load() {
		c.mu.Lock()
		memberships := c.presence
		c.presence = nil
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for name, ps := range memberships {
			c.leave(ctx, name, ps)
		}
		cancel()
		c.hub.Close()
		d.Registry.Remove(c.info)
		d.Log.LogAttrs(context.Background(), slog.LevelInfo, "websocket closed",
			slog.String("connection_id", c.info.ID), slog.Int64("tenant_id", int64(c.info.TenantID)))
	}
	c.release()
}

// sweep is the door's periodic look at the connection (Door.Run).
func (c *conn) sweep(ctx context.Context, now time.Time, checkKeys bool, revoked map[string]bool) {
	cfg := c.d.Config
	if !c.authed.Load() {
		if now.Sub(c.opened) >= cfg.AuthTimeout {
			c.closeWith(CodeUnauthorized, `send {"op":"auth","token":"…"} first, within `+cfg.AuthTimeout.String())
		}
		return
	}
	silent := c.Silent(now)
	if silent >= cfg.ActivityTimeout+cfg.PongTimeout {
		c.closeWith(CodePingTimeout, "no pong: the client was silent too long")
		return
	}
	if silent >= cfg.ActivityTimeout && c.FirstPing() {
		c.queue(reply("ping", nil, nil))
	}
	c.mu.Lock()
	info, expires := c.info, c.sub.Expires
	c.mu.Unlock()
	select {
	case <-info.TenantSuspended():
		c.closeWith(CodeForbidden, "the tenant is suspended by the operator of this service")
		return
	default:
	}
	if exp := info.Expires(); exp.After(expires) {
		expires = exp // renewed through the HTTP route, maybe on another instance
	}
	if !now.Before(expires) {
		c.queue(reply("token_expired", nil, map[string]any{"reason": "the token expired; reconnect with a new one and your cursor"}))
		c.closeWith(CodeUnauthorized, "token expired")
		return
	}
	if !checkKeys {
		return
	}
	kid := info.Kid()
	gone, ok := revoked[kid]
	if !ok {
		active, err := c.d.Verifier.KeyActive(ctx, kid)
		gone = err == nil && !active // an error: ask again next time
		revoked[kid] = gone
	}
	if gone {
		c.queue(reply("token_expired", nil, map[string]any{"reason": "the signing key was revoked"}))
		c.closeWith(CodeUnauthorized, "signing key revoked")
	}
}
