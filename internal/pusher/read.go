package pusher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/wsconn"
)

// opTimeout bounds the database work one client message may cause.
const opTimeout = 5 * time.Second

// readOne reads one message and acts on it; false ends the connection.
// The read has no deadline of its own: the door's sweep closes a client
// that has been silent too long (see Door.Run), which ends it too.
// gorilla/websocket reads from a wsconn.Conn, so after a message nothing of
// the next one is left in its buffer, only in the socket, where the poller
// sees it.
func (c *conn) readOne() bool {
	typ, data, err := c.WS.ReadMessage()
	if err != nil {
		if errors.Is(err, websocket.ErrReadLimit) {
			// gorilla/websocket has sent close 1009 already.
			c.closeWith(websocket.CloseMessageTooBig, "message too big")
		}
		return false
	}
	c.Touch()
	if typ != websocket.TextMessage {
		c.closeWith(websocket.CloseUnsupportedData, "binary messages are not part of the Pusher protocol")
		return false
	}
	var m message
	if err := json.Unmarshal(data, &m); err != nil || m.Event == "" {
		c.queue(errorFrame(0, "Invalid message: send JSON such as {\"event\":\"pusher:ping\",\"data\":{}}"))
		c.closeWith(websocket.CloseInvalidFramePayloadData, "not a JSON message")
		return false
	}
	return c.handle(m)
}

// handle acts on one message; false ends the connection.
func (c *conn) handle(m message) bool {
	ctx, cancel := context.WithTimeout(c.Ctx, opTimeout)
	defer cancel()
	switch {
	case m.Event == "pusher:ping":
		c.queue(frame("pusher:pong", "", "{}"))
	case m.Event == "pusher:pong":
	case m.Event == "pusher:subscribe":
		var d struct {
			Channel     string `json:"channel"`
			Auth        string `json:"auth"`
			ChannelData string `json:"channel_data"`
		}
		if decodeData(m.Data, &d) != nil {
			c.queue(errorFrame(0, "Invalid pusher:subscribe: data must be {\"channel\":…,\"auth\":…,\"channel_data\":…}"))
			return true
		}
		c.subscribe(ctx, d.Channel, d.Auth, d.ChannelData)
	case m.Event == "pusher:unsubscribe":
		var d struct {
			Channel string `json:"channel"`
		}
		if decodeData(m.Data, &d) == nil {
			c.unsubscribe(ctx, d.Channel)
		}
	case m.Event == "pusher:signin":
		return c.signin(ctx, m.Data)
	case strings.HasPrefix(m.Event, "client-"):
		c.clientEvent(ctx, m)
	default:
		c.queue(errorFrame(0, "Unknown event "+strconv.Quote(clip(m.Event))+": clients send pusher:ping, pusher:subscribe, pusher:unsubscribe, pusher:signin and client- events"))
	}
	return true
}

// decodeData reads a message's data, an object or a string holding one.
func decodeData(raw json.RawMessage, v any) error {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		raw = json.RawMessage(s)
	}
	return json.Unmarshal(raw, v)
}

// subscribe checks and adds a channel, answering subscription_succeeded
// (with the members of a presence channel, and the last event of a cache
// channel) or subscription_error. A refused subscription leaves the
// connection usable.
func (c *conn) subscribe(ctx context.Context, name, auth, channelData string) {
	fail := func(status int, reason string) {
		subscribeErrors.WithLabelValues(strconv.Itoa(status)).Inc()
		c.queue(subscriptionError(name, status, reason))
	}
	if !c.subscribes.Allow() {
		fail(http.StatusTooManyRequests, "Too many subscribe requests: at most "+strconv.Itoa(c.d.Config.SubscribeRate)+" a second")
		return
	}
	if err := channel.Valid(name); err != nil || strings.Contains(name, ":") {
		fail(http.StatusBadRequest, "Invalid channel name "+strconv.Quote(clip(name))+": 1 to 200 characters of A-Z a-z 0-9 _ - . @ =")
		return
	}
	c.mu.Lock()
	_, already := c.channels[name]
	count := len(c.channels)
	c.mu.Unlock()
	if already {
		if !kindOf(name).presence {
			c.queue(frame("pusher_internal:subscription_succeeded", name, "{}"))
		}
		return // a presence channel's members were sent with its first success
	}
	if count >= c.d.Config.MaxChannels {
		fail(http.StatusForbidden, "Too many channels: a connection may subscribe to at most "+strconv.Itoa(c.d.Config.MaxChannels))
		return
	}

	k := kindOf(name)
	if k.authorized() {
		_, secret, err := c.d.Keys.KeySecret(ctx, c.key)
		if err != nil {
			fail(http.StatusServiceUnavailable, "The service is unavailable; subscribe again")
			return
		}
		if !k.presence {
			channelData = ""
		}
		if !ValidChannelAuth(auth, c.key, secret, c.socketID, name, channelData) {
			fail(http.StatusUnauthorized, "Invalid signature: the auth must be the app key, a colon, and HMAC-SHA256 of \""+c.socketID+":"+name+"[:channel_data]\" with the app secret, as the server libraries' authorizeChannel computes it")
			return
		}
	} else {
		settings, err := c.d.Settings.Settings(ctx, c.tenantID)
		if err != nil {
			fail(http.StatusServiceUnavailable, "The service is unavailable; subscribe again")
			return
		}
		if !settings.IsPublic(name) {
			fail(http.StatusForbidden, "Channel "+strconv.Quote(name)+" is not public: add it (or a prefix*) to the app's publicChannels setting, or use a private- channel")
			return
		}
	}

	s := &subscription{presence: k.presence, cache: k.cache} // write sends a cache channel's last event
	var frames [][]byte
	if k.presence {
		member, err := parseChannelData(channelData)
		if err == nil {
			err = presence.CheckMember(member)
		}
		if err != nil {
			fail(http.StatusBadRequest, "Invalid channel_data: "+err.Error())
			return
		}
		version, err := c.d.Presence.Join(ctx, c.tenantID, name, c.socketID, member)
		if errors.Is(err, presence.ErrFull) {
			fail(http.StatusForbidden, fmt.Sprintf("The presence channel is full: at most %d members", c.d.Presence.MaxMembers))
			return
		}
		if err != nil {
			fail(http.StatusServiceUnavailable, "The service is unavailable; subscribe again")
			return
		}
		members, w, err := c.d.Presence.Watch(ctx, c.tenantID, name, version, func(ch presence.Change) { c.memberChanged(name, s, ch) })
		if err != nil {
			_ = c.d.Presence.Leave(context.WithoutCancel(ctx), c.tenantID, name, c.socketID)
			fail(http.StatusServiceUnavailable, "The service is unavailable; subscribe again")
			return
		}
		s.watcher, s.user = w, member.UserID
		frames = append(frames, wsconn.Text(jsonFrame("pusher_internal:subscription_succeeded", name, presenceData(members))))
	} else {
		frames = append(frames, wsconn.Text(frame("pusher_internal:subscription_succeeded", name, "{}")))
	}

	c.mu.Lock()
	if c.Ctx.Err() != nil { // the connection ended meanwhile
		c.mu.Unlock()
		c.leave(context.WithoutCancel(ctx), name, s)
		return
	}
	c.channels[name] = s
	c.changed = true
	s.ready = true
	c.out = append(c.out, frames...)
	for _, ch := range s.pending {
		c.out = append(c.out, wsconn.Text(memberFrame(name, ch)))
	}
	s.pending = nil
	names := c.channelNames()
	c.mu.Unlock()
	c.Poke()
	c.d.Registry.SetChannels(c.info, names)
	subscriptions.WithLabelValues(k.label()).Inc()
}

// unsubscribe removes a channel; unknown ones are ignored, as Pusher does.
func (c *conn) unsubscribe(ctx context.Context, name string) {
	c.mu.Lock()
	s, ok := c.channels[name]
	delete(c.channels, name)
	c.changed = ok
	names := c.channelNames()
	c.mu.Unlock()
	if !ok {
		return
	}
	c.Poke()
	c.leave(ctx, name, s)
	c.d.Registry.SetChannels(c.info, names)
}

// channelNames lists the subscribed channels; c.mu is held.
func (c *conn) channelNames() []string {
	names := make([]string, 0, len(c.channels))
	for n := range c.channels {
		names = append(names, n)
	}
	return names
}

// memberChanged queues a presence change for the client, after the
// channel's subscription_succeeded; it runs on the presence registry's
// goroutine and never blocks.
func (c *conn) memberChanged(name string, s *subscription, ch presence.Change) {
	c.mu.Lock()
	if !s.ready {
		s.pending = append(s.pending, ch)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.queue(memberFrame(name, ch)) // after subscription_succeeded, which ready follows
}

func memberFrame(channel string, ch presence.Change) []byte {
	if ch.Added {
		d := map[string]any{"user_id": ch.Member.UserID}
		if len(ch.Member.Info) > 0 {
			d["user_info"] = ch.Member.Info
		}
		return jsonFrame("pusher_internal:member_added", channel, d)
	}
	return jsonFrame("pusher_internal:member_removed", channel, map[string]string{"user_id": ch.Member.UserID})
}

// presenceData is subscription_succeeded's data on a presence channel.
func presenceData(members []presence.Member) any {
	ids := make([]string, 0, len(members))
	hash := make(map[string]json.RawMessage, len(members))
	for _, m := range members {
		ids = append(ids, m.UserID)
		info := m.Info
		if len(info) == 0 {
			info = json.RawMessage("null")
		}
		hash[m.UserID] = info
	}
	return map[string]any{"presence": map[string]any{"ids": ids, "hash": hash, "count": len(ids)}}
}

// parseChannelData reads a presence subscription's channel_data:
// {"user_id": string or number, "user_info": any}.
func parseChannelData(s string) (presence.Member, error) {
	var d struct {
		UserID   json.RawMessage `json:"user_id"`
		UserInfo json.RawMessage `json:"user_info"`
	}
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&d); err != nil {
		return presence.Member{}, errors.New(`channel_data must be JSON such as {"user_id":"42","user_info":{"name":"Ann"}}`)
	}
	var m presence.Member
	switch {
	case len(d.UserID) > 0 && d.UserID[0] == '"':
		_ = json.Unmarshal(d.UserID, &m.UserID)
	case len(d.UserID) > 0 && (d.UserID[0] == '-' || d.UserID[0] >= '0' && d.UserID[0] <= '9'):
		m.UserID = string(d.UserID) // a number: its text, as Pusher keeps it
	default:
		return m, errors.New("channel_data needs a user_id, a string or a number")
	}
	if len(d.UserInfo) > 0 && !bytes.Equal(d.UserInfo, []byte("null")) {
		var b bytes.Buffer
		if err := json.Compact(&b, d.UserInfo); err == nil {
			m.Info = b.Bytes()
		}
	}
	return m, nil
}

// signin authenticates the connection's user (pusher:signin), or ends the
// connection with 4009 as Pusher does.
func (c *conn) signin(ctx context.Context, raw json.RawMessage) bool {
	var d struct {
		Auth     string `json:"auth"`
		UserData string `json:"user_data"`
	}
	var user struct {
		ID json.RawMessage `json:"id"`
	}
	_, secret, err := c.d.Keys.KeySecret(ctx, c.key)
	if err != nil {
		c.queue(errorFrame(0, "The service is unavailable; sign in again"))
		return true
	}
	ok := decodeData(raw, &d) == nil && ValidUserAuth(d.Auth, c.key, secret, c.socketID, d.UserData) &&
		json.Unmarshal([]byte(d.UserData), &user) == nil
	var id string
	if ok && len(user.ID) > 0 && user.ID[0] == '"' {
		_ = json.Unmarshal(user.ID, &id)
	}
	if !ok || id == "" || len(id) > presence.MaxUserID {
		signins.WithLabelValues("refused").Inc()
		c.closeWith(codeUnauthorized, "Invalid sign-in: user_data must be JSON with a string id, signed as the server libraries' authenticateUser does")
		return false
	}
	c.user.Store(&id)
	c.d.Registry.SetSubject(c.info, id)
	signins.WithLabelValues("ok").Inc()
	c.queue(jsonFrame("pusher:signin_success", "", map[string]string{"user_data": d.UserData}))
	return true
}

// clientEvent publishes a client- event the connection sends on one of its
// private or presence channels, when the tenant allows them: stored, given
// an id, delivered everywhere but back to this connection.
func (c *conn) clientEvent(ctx context.Context, m message) {
	fail := func(code int, reason string) {
		clientEvents.WithLabelValues("refused").Inc()
		c.queue(errorFrame(code, reason))
	}
	settings, err := c.d.Settings.Settings(ctx, c.tenantID)
	if err != nil {
		fail(0, "The service is unavailable; send the event again")
		return
	}
	if !settings.ClientEvents {
		fail(0, "Client events are disabled for this app: enable clientEvents in its settings")
		return
	}
	k := kindOf(m.Channel)
	c.mu.Lock()
	s, subscribed := c.channels[m.Channel]
	var sender string
	if subscribed {
		sender = s.user
	}
	c.mu.Unlock()
	switch {
	case !(k.private || k.presence) || k.encrypted:
		fail(0, "Client event rejected: client events go on private- and presence- channels only (not encrypted ones)")
		return
	case !subscribed:
		fail(0, "Client event rejected: subscribe to "+strconv.Quote(clip(m.Channel))+" first")
		return
	case !c.clientEvents.Allow():
		c.d.Hub.Rejected(c.tenantID, "client_event_rate_limited")
		fail(codeClientEventLimit, fmt.Sprintf("Client event rejected due to rate limit: at most %d a second", c.d.Config.ClientEventRate))
		return
	}
	if err := realtime.ValidType(m.Event); err != nil {
		fail(0, "Client event rejected: "+err.Error())
		return
	}
	data := m.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil || b.Len() > c.d.Config.MaxEventData {
		fail(0, fmt.Sprintf("Client event rejected: data is at most %d bytes", c.d.Config.MaxEventData))
		return
	}
	if _, err := c.d.Limits.TakePublish(ctx, c.tenantID); err != nil {
		c.d.Hub.Rejected(c.tenantID, "tenant_rate_limited")
		fail(codeClientEventLimit, "Client event rejected: this app is over its publish rate")
		return
	}
	d := realtime.Draft{Channel: m.Channel, Type: m.Event, Data: b.Bytes(), Origin: c.socketID, Sender: sender, Door: realtime.DoorClient}
	if c.d.Webhook != nil {
		d.Webhook = c.d.Webhook(settings, d)
	}
	_, err = c.d.Publisher.Publish(ctx, c.tenantID, d.One(), "", nil)
	if err != nil {
		fail(0, "Client event not stored: the service is unavailable; send it again")
		return
	}
	clientEvents.WithLabelValues("published").Inc()
}
