package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/pusher"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// TestPusherBadUpgrades: TESTPLAN F, first row. A request that is not a
// proper WebSocket upgrade gets a 4xx problem; an unknown key or a protocol
// version the server does not speak gets the protocol's close code. None
// leaves a goroutine behind.
func TestPusherBadUpgrades(t *testing.T) {
	checkResources(t)
	db := pgtest.NewDB(t)
	in := newInstance(t, db, testConfig())
	acme := in.signup("Acme")

	for _, c := range []struct {
		name   string
		header []string
		want   int
	}{
		{"not an upgrade", nil, 400},
		{"no Sec-WebSocket-Key", []string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13"}, 400},
		{"wrong version", []string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "8", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, 400},
	} {
		res := in.do("GET", "/app/"+acme.SigningKey.Kid+"?protocol=7", "", "", c.header...)
		if res.status != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, res.status, res.body, c.want)
		}
	}
	for _, c := range []struct {
		name, key, query string
		code             int
	}{
		{"unknown key", "sk_0000000000000000", "protocol=7", 4001},
		{"made-up key", "not-a-key", "protocol=7", 4001},
		{"no protocol", acme.SigningKey.Kid, "client=js", 4008},
		{"protocol 4", acme.SigningKey.Kid, "protocol=4", 4007},
		{"protocol junk", acme.SigningKey.Kid, "protocol=7x", 4007},
	} {
		ws, _, err := dialPusher(t, in.url, c.key, c.query)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if m := <-ws.msgs; m.Event != "pusher:error" {
			t.Errorf("%s: first message %s, want pusher:error", c.name, m.Event)
		}
		if code := ws.closeCode(); code != c.code {
			t.Errorf("%s: closed with %d, want %d", c.name, code, c.code)
		}
	}
	if n := pgtest.Count(t, db, `SELECT count(*) FROM connections`); n != 0 {
		t.Errorf("%d connections recorded for refused upgrades", n)
	}
}

// TestPusherBadFrames: TESTPLAN F, second row. A frame that is not JSON,
// a binary frame, a frame over the read limit and a message whose fragments
// never end each close the connection with the protocol's code; nothing is
// stored and no goroutine is left.
func TestPusherBadFrames(t *testing.T) {
	checkResources(t)
	db := pgtest.NewDB(t)
	cfg := testConfig()
	in := newInstance(t, db, cfg)
	acme := in.signup("Acme")
	enableClientEvents(t, in, acme, "news")

	for _, c := range []struct {
		name string
		send func(ws *websocket.Conn) error
		code int
	}{
		{"not JSON", func(ws *websocket.Conn) error { return ws.WriteMessage(websocket.TextMessage, []byte("hello")) }, websocket.CloseInvalidFramePayloadData},
		{"JSON without event", func(ws *websocket.Conn) error { return ws.WriteMessage(websocket.TextMessage, []byte(`{"data":{}}`)) }, websocket.CloseInvalidFramePayloadData},
		{"binary", func(ws *websocket.Conn) error {
			return ws.WriteMessage(websocket.BinaryMessage, []byte(`{"event":"pusher:ping"}`))
		}, websocket.CloseUnsupportedData},
		{"over the read limit", func(ws *websocket.Conn) error {
			big := `{"event":"client-x","channel":"private-a","data":"` + strings.Repeat("x", int(cfg.Pusher.MaxMessage)) + `"}`
			return ws.WriteMessage(websocket.TextMessage, []byte(big))
		}, websocket.CloseMessageTooBig},
		{"fragments that never end", func(ws *websocket.Conn) error {
			w, err := ws.NextWriter(websocket.TextMessage)
			if err != nil {
				return err
			}
			chunk := []byte(strings.Repeat("x", 4096))
			for range int(cfg.Pusher.MaxMessage)/len(chunk) + 2 {
				if _, err := w.Write(chunk); err != nil {
					return nil // the server closed: expected
				}
			}
			return nil // never closed: the message never ends
		}, websocket.CloseMessageTooBig},
	} {
		ws := connectPusher(t, in.url, acme.SigningKey.Kid)
		if err := c.send(ws.ws); err != nil {
			t.Errorf("%s: send: %v", c.name, err)
			continue
		}
		if code := ws.closeCode(); code != c.code {
			t.Errorf("%s: closed with %d, want %d", c.name, code, c.code)
		}
	}
	if n := pgtest.Count(t, db, `SELECT count(*) FROM events`); n != 0 {
		t.Errorf("%d events stored from bad frames", n)
	}
}

// enableClientEvents turns on client events and makes channels public.
func enableClientEvents(t *testing.T, in *instance, s signedUp, public ...string) {
	t.Helper()
	if public == nil {
		public = []string{}
	}
	body, _ := json.Marshal(map[string]any{"clientEvents": true, "publicChannels": public})
	if res := in.do("PATCH", "/v1/tenant/settings", s.APIKey, string(body)); res.status != 200 {
		t.Fatalf("PATCH settings = %d %s", res.status, res.body)
	}
}

// subscribePrivate subscribes c to a private or presence channel with a
// signature made by secret (the tenant's, unless a test forges one).
func (c *wsClient) subscribePrivate(key, secret, channel, channelData string) {
	c.t.Helper()
	auth := pusher.ChannelAuth(key, []byte(secret), c.socketID, channel, channelData)
	d := map[string]string{"channel": channel, "auth": auth}
	if channelData != "" {
		d["channel_data"] = channelData
	}
	c.send("pusher:subscribe", d)
}

// TestPusherBadSubscriptions: TESTPLAN F, third and fourth rows. Each
// refused subscription gets pusher:subscription_error and leaves the socket
// usable; a flood is rate-limited, never a crash.
func TestPusherBadSubscriptions(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme, other := in.signup("Acme"), in.signup("Other")
	enableClientEvents(t, in, acme, "news", "scores-*")
	key, secret := acme.SigningKey.Kid, acme.SigningKey.Secret

	c := connectPusher(t, in.url, key)
	other2 := connectPusher(t, in.url, key) // another socket, whose id a replayed auth names
	for _, sub := range []struct {
		name   string
		data   map[string]string
		status int
	}{
		{"private without auth", map[string]string{"channel": "private-a"}, 401},
		{"private with auth for another socket", map[string]string{"channel": "private-a", "auth": pusher.ChannelAuth(key, []byte(secret), other2.socketID, "private-a", "")}, 401},
		{"private signed with another tenant's secret", map[string]string{"channel": "private-a", "auth": pusher.ChannelAuth(key, []byte(other.SigningKey.Secret), c.socketID, "private-a", "")}, 401},
		{"private with another tenant's key and secret", map[string]string{"channel": "private-a", "auth": pusher.ChannelAuth(other.SigningKey.Kid, []byte(other.SigningKey.Secret), c.socketID, "private-a", "")}, 401},
		{"private with auth for another channel", map[string]string{"channel": "private-a", "auth": pusher.ChannelAuth(key, []byte(secret), c.socketID, "private-b", "")}, 401},
		{"presence with malformed channel_data", map[string]string{"channel": "presence-a", "channel_data": "{not json", "auth": pusher.ChannelAuth(key, []byte(secret), c.socketID, "presence-a", "{not json")}, 400},
		{"presence without user_id", map[string]string{"channel": "presence-a", "channel_data": `{"user_info":{}}`, "auth": pusher.ChannelAuth(key, []byte(secret), c.socketID, "presence-a", `{"user_info":{}}`)}, 400},
		{"presence with user_info over 1 KB", func() map[string]string {
			cd := `{"user_id":"1","user_info":{"bio":"` + strings.Repeat("x", 1100) + `"}}`
			return map[string]string{"channel": "presence-a", "channel_data": cd, "auth": pusher.ChannelAuth(key, []byte(secret), c.socketID, "presence-a", cd)}
		}(), 400},
		{"presence with channel_data not signed", map[string]string{"channel": "presence-a", "channel_data": `{"user_id":"2"}`, "auth": pusher.ChannelAuth(key, []byte(secret), c.socketID, "presence-a", `{"user_id":"1"}`)}, 401},
		{"public channel outside publicChannels", map[string]string{"channel": "secret-news"}, 403},
		{"hybridrt's own user:42", map[string]string{"channel": "user:42"}, 400},
		{"a name with a space", map[string]string{"channel": "a b"}, 400},
		{"an empty name", map[string]string{"channel": ""}, 400},
	} {
		c.send("pusher:subscribe", sub.data)
		m := c.next("pusher:subscription_error")
		var d struct {
			Type, Error string
			Status      int
		}
		if err := json.Unmarshal([]byte(m.dataString(t)), &d); err != nil || d.Status != sub.status || d.Error == "" {
			t.Errorf("%s: subscription_error %s, want status %d with a reason", sub.name, m.Data, sub.status)
		}
		if strings.Contains(string(m.Data), secret) {
			t.Errorf("%s: the error shows the secret", sub.name)
		}
	}
	// Still usable, for public and private channels alike.
	c.send("pusher:subscribe", map[string]string{"channel": "scores-1"})
	c.next("pusher_internal:subscription_succeeded")
	c.subscribePrivate(key, secret, "private-a", "")
	c.next("pusher_internal:subscription_succeeded")

	// A flood: 1,000 subscribes in a burst. The connection answers each,
	// refuses past the channel limit and the rate, and stays up.
	flood := connectPusher(t, in.url, key)
	for i := range 1000 {
		flood.send("pusher:subscribe", map[string]string{"channel": fmt.Sprintf("scores-%d", i)})
	}
	ok, refused := 0, 0
	for range 1000 {
		select {
		case m := <-flood.msgs:
			switch m.Event {
			case "pusher_internal:subscription_succeeded":
				ok++
			case "pusher:subscription_error":
				refused++
			default:
				t.Fatalf("flood: got %s", m.Event)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("flood: %d answers of 1000 after 10 s", ok+refused)
		}
	}
	if ok > testConfig().Pusher.MaxChannels || refused < 1000-testConfig().Pusher.MaxChannels {
		t.Errorf("flood: %d subscribed, %d refused; want at most %d subscribed", ok, refused, testConfig().Pusher.MaxChannels)
	}
	flood.send("pusher:ping", map[string]string{})
	flood.next("pusher:pong")
}

// TestPusherBadClientEvents: TESTPLAN F, fifth row. Client events when
// disabled, on a public channel, on a channel not subscribed, over the
// rate, over 10 KB, or with a pusher: name get pusher:error; nothing is
// stored or delivered.
func TestPusherBadClientEvents(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	in := newInstance(t, db, testConfig())
	acme := in.signup("Acme")
	key, secret := acme.SigningKey.Kid, acme.SigningKey.Secret
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"publicChannels":["news"]}`); res.status != 200 {
		t.Fatal(res.status)
	}
	sender, receiver := connectPusher(t, in.url, key), connectPusher(t, in.url, key)
	for _, c := range []*wsClient{sender, receiver} {
		c.subscribePrivate(key, secret, "private-chat", "")
		c.next("pusher_internal:subscription_succeeded")
		c.send("pusher:subscribe", map[string]string{"channel": "news"})
		c.next("pusher_internal:subscription_succeeded")
	}
	expectError := func(what string, code int) {
		t.Helper()
		m := sender.next("pusher:error")
		var d struct {
			Code    *int
			Message string
		}
		if err := json.Unmarshal(m.Data, &d); err != nil || d.Message == "" {
			t.Errorf("%s: pusher:error data %s", what, m.Data)
		}
		if got := 0; d.Code != nil {
			got = *d.Code
			if got != code {
				t.Errorf("%s: code %d, want %d", what, got, code)
			}
		} else if code != 0 {
			t.Errorf("%s: no code, want %d", what, code)
		}
	}

	sender.send("client-typing", map[string]any{"on": true}, "private-chat")
	expectError("disabled", 0)
	enableClientEvents(t, in, acme, "news")
	sender.send("client-typing", map[string]any{"on": true}, "news")
	expectError("on a public channel", 0)
	sender.send("client-typing", map[string]any{"on": true}, "private-other")
	expectError("on a channel not subscribed", 0)
	sender.send("client-big", strings.Repeat("x", 11<<10), "private-chat")
	expectError("11 KB of data", 0)
	sender.send("pusher:client-x", map[string]any{}, "private-chat")
	m := sender.next("pusher:error") // an unknown pusher: event, not a client event
	if !strings.Contains(string(m.Data), "Unknown event") {
		t.Errorf("pusher: name: %s", m.Data)
	}
	receiver.quiet(300 * time.Millisecond)
	if n := pgtest.Count(t, db, `SELECT count(*) FROM events`); n != 0 {
		t.Errorf("%d events stored from refused client events", n)
	}

	// Over the rate: 10 a second pass (and reach the receiver, not the
	// sender), the rest are refused with 4301.
	for i := range 15 {
		sender.send("client-typing", map[string]int{"i": i}, "private-chat")
	}
	passed := 0
	for range 15 {
		select {
		case m := <-sender.msgs:
			if m.Event != "pusher:error" || !strings.Contains(string(m.Data), "4301") {
				t.Fatalf("sender got %s %s, want only rate errors", m.Event, m.Data)
			}
		case m := <-receiver.msgs:
			if m.Event != "client-typing" {
				t.Fatalf("receiver got %s", m.Event)
			}
			passed++
		case <-time.After(5 * time.Second):
			t.Fatalf("after 5 s: %d delivered", passed)
		}
	}
	if passed < 10 || passed > 11 {
		t.Errorf("%d of 15 client events in a burst passed, want 10", passed)
	}
	if n := pgtest.Count(t, db, `SELECT count(*) FROM events WHERE origin = $1`, sender.socketID); n != passed {
		t.Errorf("%d client events stored with the sender as origin, %d delivered", n, passed)
	}
	sender.quiet(300 * time.Millisecond) // never its own events
}

// TestPusherPresenceLimits: TESTPLAN F, last row. The 101st member is
// refused; one user on 50 sockets is one member.
func TestPusherPresenceLimits(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	key, secret := acme.SigningKey.Kid, acme.SigningKey.Secret
	join := func(c *wsClient, user string) wsMessage {
		cd := `{"user_id":"` + user + `"}`
		c.subscribePrivate(key, secret, "presence-room", cd)
		m := <-c.msgs
		return m
	}
	watcher := connectPusher(t, in.url, key)
	if m := join(watcher, "watcher"); m.Event != "pusher_internal:subscription_succeeded" {
		t.Fatalf("watcher: %s %s", m.Event, m.Data)
	}
	// One user on 50 sockets: one member_added, one member.
	for range 50 {
		c := connectPusher(t, in.url, key)
		if m := join(c, "same"); m.Event != "pusher_internal:subscription_succeeded" {
			t.Fatalf("same user: %s %s", m.Event, m.Data)
		}
	}
	m := watcher.next("pusher_internal:member_added")
	if !strings.Contains(m.dataString(t), `"same"`) {
		t.Errorf("member_added %s", m.Data)
	}
	watcher.quiet(300 * time.Millisecond)
	members := in.presenceCount(acme, "presence-room")
	if members != 2 {
		t.Errorf("%d members, want 2 (watcher and same)", members)
	}
	// 98 more users fill the channel to 100; the 101st is refused.
	for i := range 98 {
		c := connectPusher(t, in.url, key)
		if m := join(c, fmt.Sprintf("u%d", i)); m.Event != "pusher_internal:subscription_succeeded" {
			t.Fatalf("member %d: %s %s", i+3, m.Event, m.Data)
		}
	}
	late := connectPusher(t, in.url, key)
	if m := join(late, "late"); m.Event != "pusher:subscription_error" || !strings.Contains(m.dataString(t), "403") {
		t.Errorf("101st member: %s %s, want subscription_error 403", m.Event, m.Data)
	}
	// An existing member may still open another connection.
	again := connectPusher(t, in.url, key)
	if m := join(again, "same"); m.Event != "pusher_internal:subscription_succeeded" {
		t.Errorf("existing member on a new socket: %s %s", m.Event, m.Data)
	}
	if n := in.presenceCount(acme, "presence-room"); n != 100 {
		t.Errorf("%d members, want 100", n)
	}
}

// presenceCount reads the member count of a presence channel from the store.
func (in *instance) presenceCount(s signedUp, ch string) int {
	in.t.Helper()
	members, err := in.svc.presence.Members(in.t.Context(), tenantIDOf(in.t, s), ch)
	if err != nil {
		in.t.Fatal(err)
	}
	return len(members)
}

// tenantIDOf is a signed-up tenant's id.
func tenantIDOf(t *testing.T, s signedUp) tenant.ID {
	t.Helper()
	id, err := strconv.ParseInt(s.Tenant.ID, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return tenant.ID(id)
}

// TestPusherAPIBadRequests: TESTPLAN F, the HTTP API row, through the
// server as a client sees it: each bad request gets Pusher's status and a
// plain-text reason (O5 checks the shape), nothing is stored, and nothing
// reaches a subscriber of the tenant or of another.
func TestPusherAPIBadRequests(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	in := newInstance(t, db, testConfig())
	acme, other := in.signup("Acme"), in.signup("Other")
	key, secret := acme.SigningKey.Kid, []byte(acme.SigningKey.Secret)
	watch := connectPusher(t, in.url, key)
	watch.subscribePrivate(key, acme.SigningKey.Secret, "private-a", "")
	watch.next("pusher_internal:subscription_succeeded")
	otherWatch := connectPusher(t, in.url, other.SigningKey.Kid)
	otherWatch.subscribePrivate(other.SigningKey.Kid, other.SigningKey.Secret, "private-a", "")
	otherWatch.next("pusher_internal:subscription_succeeded")

	path := "/apps/" + acme.Tenant.ID + "/events"
	signed := func(method, path, body string, k string, s []byte, now time.Time) string {
		return path + "?" + pusher.SignQuery(k, s, method, path, nil, []byte(body), now)
	}
	channels := make([]string, 101)
	for i := range channels {
		channels[i] = fmt.Sprintf("private-c%d", i)
	}
	many, _ := json.Marshal(map[string]any{"name": "e", "data": "x", "channels": channels})
	batch := make([]map[string]any, 11)
	for i := range batch {
		batch[i] = map[string]any{"channel": "private-a", "name": "e", "data": "x"}
	}
	eleven, _ := json.Marshal(map[string]any{"batch": batch})
	ok := `{"name":"e","data":"x","channel":"private-a"}`
	now := time.Now()
	for _, c := range []struct {
		name, url, body string
		status          int
	}{
		{"wrong signature", signed("POST", path, ok, key, []byte("not the secret"), now), ok, 401},
		{"another tenant's secret", signed("POST", path, ok, key, []byte(other.SigningKey.Secret), now), ok, 401},
		{"another tenant's key and secret", signed("POST", path, ok, other.SigningKey.Kid, []byte(other.SigningKey.Secret), now), ok, 401},
		{"timestamp 601 s old", signed("POST", path, ok, key, secret, now.Add(-601*time.Second)), ok, 401},
		{"timestamp 601 s ahead", signed("POST", path, ok, key, secret, now.Add(601*time.Second)), ok, 401},
		{"body_md5 of another body", signed("POST", path, `{"name":"e","data":"y","channel":"private-a"}`, key, secret, now), ok, 401},
		{"no signature", path, ok, 401},
		{"101 channels", signed("POST", path, string(many), key, secret, now), string(many), 400},
		{"11 batch events", signed("POST", "/apps/"+acme.Tenant.ID+"/batch_events", string(eleven), key, secret, now), string(eleven), 400},
		{"data over 10 KB", signed("POST", path, `{"name":"e","channel":"private-a","data":"`+strings.Repeat("x", 10241)+`"}`, key, secret, now), `{"name":"e","channel":"private-a","data":"` + strings.Repeat("x", 10241) + `"}`, 413},
		{"a pusher: event name", signed("POST", path, `{"name":"pusher:x","data":"x","channel":"private-a"}`, key, secret, now), `{"name":"pusher:x","data":"x","channel":"private-a"}`, 400},
		{"hybridrt's user:42", signed("POST", path, `{"name":"e","data":"x","channel":"user:42"}`, key, secret, now), `{"name":"e","data":"x","channel":"user:42"}`, 400},
		{"not JSON", signed("POST", path, `{`, key, secret, now), `{`, 400},
	} {
		res := in.do("POST", c.url, "", c.body)
		if res.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, res.status, res.body, c.status)
		}
		if strings.Contains(string(res.body), acme.SigningKey.Secret) {
			t.Errorf("%s: the answer shows the secret", c.name)
		}
	}
	if n := pgtest.Count(t, db, `SELECT count(*) FROM events`); n != 0 {
		t.Errorf("%d events stored by bad requests", n)
	}
	watch.quiet(200 * time.Millisecond)
	otherWatch.quiet(10 * time.Millisecond)
	// The good request works, to the tenant only.
	if res := in.do("POST", signed("POST", path, ok, key, secret, time.Now()), "", ok); res.status != 200 {
		t.Fatalf("a good trigger = %d %s", res.status, res.body)
	}
	watch.next("e")
	otherWatch.quiet(300 * time.Millisecond)
}

// TestPusherAPIRate: PUBLISH_RATE holds for the key that signs Pusher
// triggers as it does for an API key: beyond it, 429 with Retry-After in
// Pusher's plain text, and nothing stored for the refused.
func TestPusherAPIRate(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.PublishRate = 5
	in := newInstance(t, db, cfg)
	acme := in.signup("Acme")
	path := "/apps/" + acme.Tenant.ID + "/events"
	body := `{"name":"e","data":"x","channel":"private-a"}`
	ok, limited := 0, 0
	for range 20 {
		res := in.do("POST", path+"?"+pusher.SignQuery(acme.SigningKey.Kid, []byte(acme.SigningKey.Secret), "POST", path, nil, []byte(body), time.Now()), "", body)
		switch res.status {
		case 200:
			ok++
		case 429:
			limited++
			if res.header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		default:
			t.Fatalf("trigger = %d %s", res.status, res.body)
		}
	}
	if limited == 0 || ok > 7 {
		t.Errorf("%d triggers passed and %d were refused at PUBLISH_RATE=5, want about 5 to pass", ok, limited)
	}
	if n := pgtest.Count(t, db, `SELECT count(*) FROM events`); n != ok {
		t.Errorf("%d events stored for %d accepted triggers", n, ok)
	}
}
