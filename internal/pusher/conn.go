package pusher

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
	"github.com/hybridrt/hybridrt/internal/wsconn"
)

// readBatch is how many events the writer reads at a time.
const readBatch = 500

// maxQueued bounds the frames a connection may have waiting besides events
// (replies, member changes): a client that provokes more than this without
// reading is cut off.
const maxQueued = 1024

// conn is one WebSocket connection. It holds no goroutine while idle.
//
// Reading: the hub's poller says when the client has sent something, and
// a goroutine reads one message and handles it, then asks the poller for
// the next; so messages are handled one at a time, in order. (Where there
// is no poller, one goroutine reads them all, in a loop.)
//
// Writing: write sends everything the client gets. It runs only while
// there is something to send (a realtime.Runner: poke starts it). At most
// one write runs at a time, so frames leave in the order they were queued.
type conn struct {
	wsconn.Socket // reads when the client sends, runs write when poked

	d        *Door
	socketID string
	tenantID tenant.ID
	key      string
	info     *realtime.Conn // this connection in the registry
	sub      *realtime.Subscription
	release  func()

	user atomic.Pointer[string] // signed in as (pusher:signin)

	clientEvents *rate.Limiter
	subscribes   *rate.Limiter

	// Shared between read (and presence) and write, under mu.
	mu       sync.Mutex
	out      [][]byte                 // frames, encoded
	channels map[string]*subscription // subscribed, by name
	changed  bool                     // channels changed since write last looked
	closing  *closeFrame

	// write's own.
	cursor int64            // the id up to which events were looked at
	starts map[string]int64 // per channel: events up to this id predate the subscription
	live   bool             // past the first read: deliveries are live, for the latency histogram
}

type closeFrame struct {
	code   int
	reason string
}

// subscription is one channel of a connection.
type subscription struct {
	cache    bool // a cache- channel: its last event goes first
	watcher  *presence.Watcher
	ready    bool // subscription_succeeded is queued: member changes may follow
	pending  []presence.Change
	presence bool
	user     string // the member this connection is, on a presence channel
}

func (d *Door) newConn(r *http.Request, ws *websocket.Conn, prefix int64) *conn {
	ua := r.UserAgent()
	if len(ua) > 300 {
		ua = ua[:300]
	}
	socketID := strconv.FormatInt(prefix, 10) + "." + strconv.FormatInt(d.sockets.Add(1), 10)
	c := &conn{
		d: d, socketID: socketID,
		info: &realtime.Conn{
			ID: socketID, Channels: []string{}, Transport: "websocket",
			RemoteAddr: web.ClientAddrString(r), UserAgent: ua, ConnectedAt: time.Now().UTC(),
		},
		clientEvents: rate.NewLimiter(rate.Limit(d.Config.ClientEventRate), d.Config.ClientEventRate),
		subscribes:   rate.NewLimiter(rate.Limit(d.Config.SubscribeRate), d.Config.MaxChannels),
		channels:     map[string]*subscription{},
		starts:       map[string]int64{},
	}
	c.ReadOne = c.readOne
	c.Init(ws, d.Config.WriteTimeout, c.write) // write waits until ServeHTTP has set the connection up
	return c
}

// refuse ends a connection that was not admitted.
func (c *conn) refuse(code int, reason string) {
	c.Refuse(wsconn.Text(errorFrame(code, reason)), wsconn.Close(code, reason))
}

// queue adds a message for write to send.
func (c *conn) queue(msg []byte) { c.queueFrame(wsconn.Text(msg)) }

// queueFrame adds an encoded frame for write to send.
// A client that provokes more than maxQueued frames without reading them
// is cut off.
func (c *conn) queueFrame(f []byte) {
	c.mu.Lock()
	if len(c.out) >= maxQueued {
		c.mu.Unlock()
		c.closeWith(codeReconnect, "Too many messages waiting: the client does not read")
		return
	}
	c.out = append(c.out, f)
	c.mu.Unlock()
	c.Poke()
}

// closeWith asks write to send pusher:error and a close frame with code and
// reason, and end the connection. The first reason given wins.
func (c *conn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closing == nil {
		c.closing = &closeFrame{code, reason}
	}
	c.mu.Unlock()
	c.Poke()
}

// take returns, and clears, what read and presence left for write.
// channels maps every subscribed channel to whether it is a cache channel,
// or is nil when they did not change.
func (c *conn) take() (out [][]byte, channels map[string]bool, closing *closeFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out, c.out = c.out, nil
	if c.changed {
		channels = make(map[string]bool, len(c.channels))
		for name, s := range c.channels {
			channels[name] = s.cache
		}
		c.changed = false
	}
	return out, channels, c.closing
}

// write sends what there is to send (replies, member changes, events), as
// the connection's Runner.Step, and ends the connection (close frame,
// cleanup) when that is what is left to do.
func (c *conn) write() bool {
	if !c.writeOnce() {
		c.Writer.Blocking() // cleanup waits for reads, and for the database
		c.cleanup()
		return false
	}
	return true
}

// writeOnce sends everything waiting, and reports whether the connection
// goes on.
func (c *conn) writeOnce() bool {
	out, channels, closing := c.take()
	if channels != nil {
		// After the replies (subscription_succeeded), before any event.
		out = append(out, c.activate(channels)...)
	}
	if len(out) > 0 && c.send(out...) != nil {
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
		out, _, closing := c.take()
		if len(out) > 0 {
			_ = c.send(out...)
		}
		if closing == nil {
			closing = &closeFrame{websocket.CloseNormalClosure, ""}
		}
		c.sendClose(closing.code, closing.reason)
		return false
	}

	for {
		evs, scanned, err := c.sub.After(c.Ctx, c.cursor, readBatch)
		if err != nil {
			if c.Ctx.Err() == nil {
				c.sendClose(codeReconnect, "The service is unavailable; reconnect")
			}
			return false
		}
		c.cursor = scanned
		var frames [][]byte
		for _, e := range evs {
			start, ok := c.starts[e.Channel]
			if !ok || e.ID <= start || e.Origin == c.socketID {
				continue
			}
			frames = append(frames, eventFrame(e))
		}
		if len(frames) > 0 {
			if c.send(frames...) != nil {
				return false
			}
			c.d.Hub.ObserveDelivery(c.tenantID, "websocket", len(frames), realtime.FramesLen(frames), evs[len(evs)-1].Time, c.live)
		}
		if len(evs) < readBatch {
			c.live = true
			return true
		}
	}
}

// activate takes the channels read subscribed to into the hub
// subscription. A new channel's events count from the cursor on. A new
// cache channel first gets its last event, read now: the latest up to the
// cursor, or one past it, from which its events then count; so the client
// has the channel's current state and every change after it, once.
func (c *conn) activate(channels map[string]bool) [][]byte {
	var frames [][]byte
	starts := make(map[string]int64, len(channels))
	names := make([]string, 0, len(channels))
	for name, cache := range channels {
		names = append(names, name)
		if start, ok := c.starts[name]; ok {
			starts[name] = start
			continue
		}
		starts[name] = c.cursor
		if !cache {
			continue
		}
		c.Writer.Blocking() // a read from the store
		ctx, cancel := context.WithTimeout(c.Ctx, opTimeout)
		last, err := c.d.Store.Last(ctx, c.tenantID, name)
		cancel()
		if err != nil || last == nil { // a store error: no cache is better than no subscription
			frames = append(frames, wsconn.Text([]byte(`{"event":"pusher:cache_miss","channel":`+string(appendJSONString(nil, name))+`}`)))
			cacheMisses.Inc()
			if c.d.CacheMiss != nil && err == nil {
				// Not on the writer's time: the webhook is an INSERT.
				go c.d.CacheMiss(context.WithoutCancel(c.Ctx), c.tenantID, name)
			}
			continue
		}
		frames = append(frames, eventFrame(last))
		starts[name] = max(c.cursor, last.ID)
	}
	slices.Sort(names)
	c.starts = starts
	c.sub.Set(names)
	return frames
}

// send writes frames within the write timeout.
func (c *conn) send(frames ...[]byte) error {
	return c.Send(frames...)
}

// sendClose sends pusher:error (for the protocol's own codes) and a close
// frame, briefly: the client may be gone.
func (c *conn) sendClose(code int, reason string) {
	frames := [][]byte{wsconn.Close(code, reason)}
	if code >= 4000 {
		frames = append([][]byte{wsconn.Text(errorFrame(code, reason))}, frames...)
	}
	c.SendClose(frames...)
	closes.WithLabelValues(strconv.Itoa(code)).Inc()
}

// cleanup ends the connection: the socket, then (once read has stopped and
// can subscribe to nothing more) its presence, registry and hub entries.
func (c *conn) cleanup() {
	c.Shutdown()
	d := c.d
	d.mu.Lock()
	delete(d.conns, c)
	d.mu.Unlock()

	c.mu.Lock()
	subs := c.channels
	c.channels = map[string]*subscription{}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, s := range subs {
		c.leave(ctx, name, s)
	}
	c.sub.Close()
	d.Registry.Remove(c.info)
	c.release()
	d.Log.LogAttrs(ctx, slog.LevelInfo, "websocket closed",
		slog.String("socket_id", c.socketID), slog.Int64("tenant_id", int64(c.tenantID)))
}

// leave undoes a subscription's presence.
func (c *conn) leave(ctx context.Context, name string, s *subscription) {
	if !s.presence {
		return
	}
	if s.watcher != nil {
		s.watcher.Stop()
	}
	if err := c.d.Presence.Leave(ctx, c.tenantID, name, c.socketID); err != nil {
		// The row stays until the instance's rows are swept, or a restart.
		c.d.Log.Warn("pusher: leaving a presence channel failed", "channel", name, "err", err)
	}
}

// isTimeout reports a read that hit its deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
