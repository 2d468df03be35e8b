package hybridws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/web"
)

// opTimeout bounds the database work one client message may cause.
const opTimeout = 5 * time.Second

// readOne reads one message and acts on it; false ends the connection.
// The read has no deadline: the door's sweep closes a silent client.
func (c *conn) readOne() bool {
	typ, data, err := c.WS.ReadMessage()
	if err != nil {
		if errors.Is(err, websocket.ErrReadLimit) {
			c.closeWith(websocket.CloseMessageTooBig, fmt.Sprintf("a message is at most %d bytes", c.d.Config.MaxMessage))
		}
		return false
	}
	c.Touch()
	if typ != websocket.TextMessage {
		c.closeWith(websocket.CloseUnsupportedData, "binary messages are not part of "+Subprotocol+": send JSON text")
		return false
	}
	var m message
	if err := json.Unmarshal(data, &m); err != nil || m.Op == "" {
		c.closeWith(websocket.CloseInvalidFramePayloadData, `not a message of `+Subprotocol+`: send JSON objects such as {"op":"ping"}`)
		return false
	}
	if !validRef(m.Ref) {
		c.queue(errorReply(nil, "invalid_ref", `"ref" is a string or a number of at most 64 bytes`))
		return true
	}
	ctx, cancel := context.WithTimeout(c.Ctx, opTimeout)
	defer cancel()
	if !c.authed.Load() {
		return c.authenticate(ctx, m)
	}
	switch m.Op {
	case "ping":
		c.queue(reply("pong", m.Ref, nil))
	case "pong":
	case "subscribe":
		c.subscribe(ctx, m)
	case "unsubscribe":
		c.unsubscribe(ctx, m)
	case "token":
		c.renew(ctx, m)
	case "publish":
		c.publish(ctx, m)
	case "auth":
		c.queue(errorReply(m.Ref, "already_authenticated", `this connection is authenticated: renew its token with {"op":"token","token":"…"}`))
	default:
		c.queue(errorReply(m.Ref, "unknown_op", "unknown op "+strconv.Quote(clip(m.Op))+": send auth, subscribe, unsubscribe, token, publish, ping or pong"))
	}
	return true
}

// authenticate handles a message before the connection is authenticated:
// only auth (and ping) may come first.
func (c *conn) authenticate(ctx context.Context, m message) bool {
	switch m.Op {
	case "ping":
		c.queue(reply("pong", m.Ref, nil))
		return true
	case "auth":
	default:
		c.closeWith(CodeUnauthorized, `authenticate first: {"op":"auth","token":"…"}`)
		return false
	}
	sub, err := c.d.Verifier.Verify(ctx, m.Token)
	if errors.Is(err, auth.ErrInvalidToken) {
		c.closeWith(CodeUnauthorized, "invalid token")
		return false
	}
	if err != nil {
		c.closeWith(CodeUnavailable, "the service is unavailable; reconnect")
		return false
	}
	if code, reason := c.start(ctx, sub); code != 0 {
		c.closeWith(code, reason)
		return false
	}
	return true
}

// subscribe checks channels and a cursor and hands them to write, which
// replays what the client missed and answers subscribed. A refused
// subscribe answers error and leaves the connection as it was.
func (c *conn) subscribe(ctx context.Context, m message) {
	fail := func(code, message string) { c.queue(errorReply(m.Ref, code, message)) }
	if !c.subscribes.Allow() {
		fail("rate_limited", "too many subscribe messages: at most "+strconv.Itoa(c.d.Config.SubscribeRate)+" a second")
		return
	}
	if len(m.Channels) == 0 {
		fail("missing_channels", `name the channels: {"op":"subscribe","channels":["broadcast","user:42"]}`)
		return
	}
	c.mu.Lock()
	sub, tenantID := c.sub, c.info.TenantID
	c.mu.Unlock()
	limits, err := c.d.Limits.StreamConfigFor(ctx, tenantID)
	if err != nil {
		fail("unavailable", "the service is unavailable; subscribe again")
		return
	}
	var fresh []string
	seen := map[string]bool{}
	for _, name := range m.Channels {
		if err := channel.Valid(name); err != nil {
			fail("invalid_channel", err.Error())
			return
		}
		if !sub.Allows(name) {
			fail("insufficient_scope", fmt.Sprintf("the token does not allow channel %q: user: channels belong to the token's sub, other channels must be in its channels claim", name))
			return
		}
		if !seen[name] {
			seen[name] = true
			fresh = append(fresh, name)
		}
	}
	ch := change{ref: m.Ref}
	if m.Cursor != "" {
		cursor, _, err := realtime.ParseCursor(m.Cursor)
		if err != nil {
			fail("invalid_cursor", err.Error())
			return
		}
		pos, err := c.d.Store.Position(ctx, tenantID)
		if err != nil {
			fail("unavailable", "the service is unavailable; subscribe again")
			return
		}
		switch {
		case cursor > pos.Head:
			fail("cursor_ahead", fmt.Sprintf("event id %d is past this tenant's latest event (%d): ids belong to one tenant", cursor, pos.Head))
			return
		case cursor < pos.Pruned:
			cursor, ch.resync = pos.Pruned, true
		}
		ch.from, ch.given = cursor, true
	}
	c.mu.Lock()
	for _, name := range fresh {
		if !c.channels[name] {
			ch.channels = append(ch.channels, name)
		}
	}
	full := len(c.channels)+len(ch.channels) > limits.MaxChannels
	c.mu.Unlock()
	if full {
		fail("too_many_channels", fmt.Sprintf("a connection may subscribe to at most %d channels", limits.MaxChannels))
		return
	}
	if len(ch.channels) == 0 {
		c.queue(reply("subscribed", m.Ref, map[string]any{"channels": []string{}}))
		return
	}
	// Presence channels: join as the token's user, and watch from there.
	joined := map[string]*presenceSub{}
	undo := func() {
		for name, ps := range joined {
			c.leave(context.WithoutCancel(ctx), name, ps)
		}
	}
	for _, name := range ch.channels {
		if !realtime.IsPresence(name) {
			continue
		}
		ps, code, message := c.join(ctx, sub, name)
		if ps == nil {
			undo()
			fail(code, message)
			return
		}
		joined[name] = ps
	}
	c.mu.Lock()
	if c.Ctx.Err() != nil { // the connection ended meanwhile
		c.mu.Unlock()
		undo()
		return
	}
	for _, name := range ch.channels {
		c.channels[name] = true
	}
	for name, ps := range joined {
		c.presence[name] = ps
	}
	ch.presence = joined
	c.changes = append(c.changes, ch)
	c.mu.Unlock()
	c.Poke()
}

// unsubscribe hands channels to write to drop, and leaves presence
// channels; unknown ones are ignored.
func (c *conn) unsubscribe(ctx context.Context, m message) {
	ch := change{ref: m.Ref, unsubscribe: true, channels: []string{}}
	left := map[string]*presenceSub{}
	c.mu.Lock()
	for _, name := range m.Channels {
		if c.channels[name] {
			delete(c.channels, name)
			ch.channels = append(ch.channels, name)
		}
		if ps, ok := c.presence[name]; ok {
			delete(c.presence, name)
			left[name] = ps
		}
	}
	c.changes = append(c.changes, ch)
	c.mu.Unlock()
	c.Poke()
	for name, ps := range left {
		c.leave(ctx, name, ps)
	}
}

// renew replaces the connection's token in place: same tenant and user,
// every subscribed channel still allowed.
func (c *conn) renew(ctx context.Context, m message) {
	sub, err := c.d.Verifier.Verify(ctx, m.Token)
	if errors.Is(err, auth.ErrInvalidToken) {
		c.queue(errorReply(m.Ref, "invalid_token", "the new token is not valid; the connection goes on with the old one until it expires"))
		return
	}
	if err != nil {
		c.queue(errorReply(m.Ref, "unavailable", "the service is unavailable; send the token again"))
		return
	}
	c.mu.Lock()
	old, info := c.sub, c.info
	c.mu.Unlock()
	if sub.TenantID != old.TenantID || sub.Subject != old.Subject {
		c.queue(errorReply(m.Ref, "invalid_token", "the new token is for another user; reconnect to change users"))
		return
	}
	err = c.d.Registry.Renew(ctx, sub.TenantID, sub.Subject, info.ID, sub.Allows, sub.Expires, sub.Kid)
	switch {
	case errors.Is(err, realtime.ErrNotAllowed):
		c.queue(errorReply(m.Ref, "insufficient_scope", "the new token does not allow every channel of the connection"))
		return
	case err != nil:
		c.queue(errorReply(m.Ref, "unavailable", "the service is unavailable; send the token again"))
		return
	}
	c.mu.Lock()
	c.sub = sub
	c.mu.Unlock()
	c.queue(reply("token_renewed", m.Ref, map[string]any{"expiresAt": utc(sub.Expires)}))
}

// publish sends a client event from this connection, which does not get
// it back (realtime.ClientEvents).
func (c *conn) publish(ctx context.Context, m message) {
	c.mu.Lock()
	sub, connID := c.sub, c.info.ID
	c.mu.Unlock()
	evID, err := c.d.ClientEvents.Publish(ctx, sub, realtime.ClientEvent{Channel: m.Channel, Type: m.Type, Data: m.Data, ConnectionID: connID})
	if err != nil {
		code, message := "unavailable", "the event was not stored: the service is unavailable; send it again"
		var p *web.Problem
		if errors.As(err, &p) && p.Status < http.StatusInternalServerError {
			code, message = p.Code, p.Detail
			c.d.Hub.Rejected(sub.TenantID, code)
		}
		c.queue(errorReply(m.Ref, code, message))
		return
	}
	c.queue(reply("published", m.Ref, map[string]any{"id": id(evID)}))
}

// clip shortens a client's value for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
