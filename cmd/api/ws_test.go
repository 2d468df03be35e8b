package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hybridrt/hybridrt/client"
	"github.com/hybridrt/hybridrt/internal/hybridws"
	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/usage"
)

// nativeWS is a client of hybridrt's own WebSocket protocol, for tests.
type nativeWS struct {
	t  *testing.T
	ws *websocket.Conn
}

// dialWS connects to /api/realtime/ws with query (a ticket, or nothing),
// offering the subprotocol.
func dialWS(t *testing.T, in *instance, query string) *nativeWS {
	t.Helper()
	return dialWSURL(t, in.url, query)
}

// dialWSURL is dialWS to the server at base.
func dialWSURL(t *testing.T, base, query string) *nativeWS {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{hybridws.Subprotocol}, HandshakeTimeout: 5 * time.Second}
	ws, res, err := d.Dial("ws"+strings.TrimPrefix(base, "http")+"/api/realtime/ws"+query, nil)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, res)
	}
	if got := ws.Subprotocol(); got != hybridws.Subprotocol {
		t.Fatalf("subprotocol %q, want %q", got, hybridws.Subprotocol)
	}
	t.Cleanup(func() { ws.Close() })
	return &nativeWS{t, ws}
}

func (c *nativeWS) send(m map[string]any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(m); err != nil {
		c.t.Fatal(err)
	}
}

// next reads the next message, failing after 10 s.
func (c *nativeWS) next() map[string]any {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m map[string]any
	if err := c.ws.ReadJSON(&m); err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

// expect reads the next message and checks its op.
func (c *nativeWS) expect(op string) map[string]any {
	c.t.Helper()
	m := c.next()
	if m["op"] != op {
		c.t.Fatalf("got %v, want op %q", m, op)
	}
	return m
}

// events reads n event messages and returns their ids, failing on any
// other message.
func (c *nativeWS) events(n int) []string {
	c.t.Helper()
	var ids []string
	for len(ids) < n {
		m := c.expect("event")
		e, _ := m["event"].(map[string]any)
		ids = append(ids, e["id"].(string))
	}
	return ids
}

// closed reads until the server closes, and returns the close code.
func (c *nativeWS) closed() int {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ws.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		if err != nil {
			c.t.Fatalf("read until close: %v", err)
		}
	}
}

// TestNativeWebSocket: over /api/realtime/ws a client authenticates in its
// first message, subscribes with a cursor (the events it missed first,
// then live, none twice), adds and drops channels without reconnecting,
// renews its token, pings, and sends client events that others get and it
// does not.
func TestNativeWebSocket(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	c := client.New(in.url, acme.APIKey)
	ctx := t.Context()
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"clientEvents":true}`); res.status != 200 {
		t.Fatalf("enable client events = %d %s", res.status, res.body)
	}
	mint := func(sub string) string {
		tok, err := c.Mint(ctx, client.TokenRequest{Sub: sub, Channels: []string{"feed", "news", "chat:*"}, Publish: []string{"chat:*"}})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Token
	}
	publish := func(ch string, n int) []string {
		var ids []string
		for i := range n {
			got, err := c.Publish(ctx, client.EventInput{Channel: ch, Type: "item", Data: i})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, got...)
		}
		return ids
	}
	start, _ := c.Head(ctx)
	missed := publish("feed", 3)
	publish("news", 2)

	a := dialWS(t, in, "")
	a.send(map[string]any{"op": "auth", "token": mint("ada")})
	ready := a.expect("ready")
	if id, _ := ready["connectionId"].(string); !strings.HasPrefix(id, "c_") {
		t.Fatalf("ready = %v, want a connectionId", ready)
	}
	// From the cursor given: the three missed, then subscribed, then live.
	a.send(map[string]any{"op": "subscribe", "channels": []string{"feed"}, "cursor": start, "ref": 1})
	if got := a.events(3); strings.Join(got, ",") != strings.Join(missed, ",") {
		t.Fatalf("replayed %v, want %v", got, missed)
	}
	if m := a.expect("subscribed"); m["ref"] != 1.0 {
		t.Fatalf("subscribed = %v, want ref 1", m)
	}
	live := publish("feed", 2)
	if got := a.events(2); strings.Join(got, ",") != strings.Join(live, ",") {
		t.Fatalf("live %v, want %v", got, live)
	}
	// A channel added later with the same cursor gets its missed events,
	// none of feed's twice.
	a.send(map[string]any{"op": "subscribe", "channels": []string{"news"}, "cursor": start})
	if got := a.events(2); len(got) != 2 {
		t.Fatalf("news replay %v", got)
	}
	a.expect("subscribed")
	a.send(map[string]any{"op": "unsubscribe", "channels": []string{"news"}, "ref": "u"})
	a.expect("unsubscribed")
	publish("news", 1)
	last := publish("feed", 1)
	if got := a.events(1); got[0] != last[0] {
		t.Fatalf("after unsubscribing news got %v, want feed's %v only", got, last)
	}

	// Ping, and a renewed token.
	a.send(map[string]any{"op": "ping", "ref": "p1"})
	if m := a.expect("pong"); m["ref"] != "p1" {
		t.Fatalf("pong = %v", m)
	}
	a.send(map[string]any{"op": "token", "token": mint("ada"), "ref": 2})
	a.expect("token_renewed")
	a.send(map[string]any{"op": "token", "token": mint("bob")})
	if m := a.expect("error"); m["code"] != "invalid_token" {
		t.Fatalf("another user's token = %v", m)
	}

	// Client events: Bob, on a ticket, gets Ada's; Ada does not.
	ticket := in.do("POST", "/api/realtime/tickets", mint("bob"), "")
	var tk struct{ Ticket string }
	_ = json.Unmarshal(ticket.body, &tk)
	b := dialWS(t, in, "?ticket="+tk.Ticket)
	b.expect("ready")
	for _, s := range []*nativeWS{a, b} {
		s.send(map[string]any{"op": "subscribe", "channels": []string{"chat:1"}})
		s.expect("subscribed")
	}
	a.send(map[string]any{"op": "publish", "channel": "chat:1", "type": "client-typing", "data": map[string]any{"typing": true}, "ref": "t"})
	pub := a.expect("published")
	if got := b.events(1); got[0] != pub["id"] {
		t.Fatalf("Bob got %v, want Ada's client event %v", got, pub["id"])
	}
	a.send(map[string]any{"op": "publish", "channel": "feed", "type": "client-typing", "ref": "x"})
	if m := a.expect("error"); m["code"] != "insufficient_scope" || m["ref"] != "x" {
		t.Fatalf("publish outside the claim = %v", m)
	}
	after := publish("chat:1", 1)
	if got := a.events(1); got[0] != after[0] {
		t.Fatalf("Ada got %v, want the backend's %v and never her own", got, after)
	}
}

// TestNativeWebSocketCloseHandshake: a client that closes gets one close
// frame back, echoing its code, and then the end of the connection. Two
// (gorilla's own answer and the door's) are a protocol error that browsers
// log as "Close received after close".
func TestNativeWebSocketCloseHandshake(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	tok, err := client.New(in.url, acme.APIKey).MintToken(t.Context(), "ada", []string{"feed"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a := dialWS(t, in, "")
	a.send(map[string]any{"op": "auth", "token": tok.Token})
	a.expect("ready")
	a.send(map[string]any{"op": "subscribe", "channels": []string{"feed"}})
	a.expect("subscribed")
	if err := a.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	nc := a.ws.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	raw, err := io.ReadAll(nc) // until the server ends the connection
	if err != nil {
		t.Fatalf("reading after the close: %v (%d bytes)", err, len(raw))
	}
	var closes []int
	for len(raw) >= 2 {
		op, n := raw[0]&0x0F, int(raw[1]&0x7F) // a server's frames are unmasked; these are short
		if n > 125 || len(raw) < 2+n {
			t.Fatalf("unexpected frame header % x", raw[:2])
		}
		if op != 0x8 {
			t.Fatalf("a frame of opcode %d after the client's close", op)
		}
		code := 0
		if n >= 2 {
			code = int(raw[2])<<8 | int(raw[3])
		}
		closes = append(closes, code)
		raw = raw[2+n:]
	}
	if len(closes) != 1 || closes[0] != websocket.CloseNormalClosure && closes[0] != websocket.CloseGoingAway {
		t.Errorf("after the client's close the server sent close frames %v, want exactly one", closes)
	}
}

// TestNativeWebSocketPublishRefusals: an expired token in the first
// message closes with 4001 before anything is read; client events past the
// per-connection rate get a rate_limited error each, with their ref, and
// only the accepted ones are stored; an event type that is not client- is
// refused; the connection goes on after every refusal.
func TestNativeWebSocketPublishRefusals(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	c := client.New(in.url, acme.APIKey)
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"clientEvents":true}`); res.status != 200 {
		t.Fatalf("enable client events = %d %s", res.status, res.body)
	}
	stored := func() int { return pgtest.Count(t, pool, `SELECT count(*) FROM events`) }
	mint := func(ttl time.Duration) string {
		tok, err := c.Mint(t.Context(), client.TokenRequest{Sub: "ada", Channels: []string{"chat:*"}, Publish: []string{"chat:*"}, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Token
	}

	expired := mint(time.Second)
	time.Sleep(2100 * time.Millisecond) // exp is in whole seconds
	s := dialWS(t, in, "")
	s.send(map[string]any{"op": "auth", "token": expired})
	if code := s.closed(); code != hybridws.CodeUnauthorized {
		t.Errorf("an expired token in the first message: closed with %d, want %d", code, hybridws.CodeUnauthorized)
	}

	s = dialWS(t, in, "")
	s.send(map[string]any{"op": "auth", "token": mint(time.Hour)})
	s.expect("ready")
	before := stored()
	s.send(map[string]any{"op": "publish", "channel": "chat:1", "type": "typing", "ref": "t"})
	if m := s.expect("error"); m["ref"] != "t" || m["code"] == nil || m["code"] == "" {
		t.Errorf("a client event whose type is not client-: %v, want an error with ref t", m)
	}
	if n := stored() - before; n != 0 {
		t.Errorf("a refused client event stored %d events", n)
	}
	// The rate is CLIENT_EVENT_RATE (10) a second with a burst of 10: a
	// burst of 15 gets errors for about 5, each with its ref.
	for i := range 15 {
		s.send(map[string]any{"op": "publish", "channel": "chat:1", "type": "client-cursor", "data": map[string]int{"x": i}, "ref": fmt.Sprint("b", i)})
	}
	accepted, limited := 0, 0
	for range 15 {
		switch m := s.next(); {
		case m["op"] == "published":
			accepted++
		case m["op"] == "error" && strings.HasSuffix(fmt.Sprint(m["code"]), "rate_limited"):
			limited++
		default:
			t.Fatalf("in a burst of client events: %v", m)
		}
	}
	if accepted < 9 || accepted > 11 || limited < 4 {
		t.Errorf("a burst of 15: %d published, %d rate-limited; want about 10 and the rest refused", accepted, limited)
	}
	if n := stored() - before; n != accepted {
		t.Errorf("stored %d of a burst with %d acknowledged", n, accepted)
	}
	// Usage counts each refusal by the rate, and each event published.
	if err := in.svc.usage.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := usage.Rollup(t.Context(), pool, time.Now()); err != nil {
		t.Fatal(err)
	}
	var rep usageReport
	in.do("GET", "/v1/usage", acme.APIKey, "").json(t, &rep)
	if got := rep.Total.Rejected["client_event_rate"]; got != int64(limited) || rep.Total.PublishedClient != int64(accepted) {
		t.Errorf("usage: %d client events, %d refused by the rate; want %d and %d", rep.Total.PublishedClient, got, accepted, limited)
	}
	s.send(map[string]any{"op": "ping", "ref": "after"})
	if m := s.expect("pong"); m["ref"] != "after" {
		t.Fatalf("after the refusals: %v", m)
	}
}

// TestNativeWebSocketRefusals: bad handshakes are 4xx before the upgrade;
// bad messages close with a code that says why; nothing is stored.
func TestNativeWebSocketRefusals(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.WS.AuthTimeout = 600 * time.Millisecond
	in := newInstance(t, pool, cfg)
	acme := in.signup("Acme")
	c := client.New(in.url, acme.APIKey)
	tok, err := c.MintToken(t.Context(), "ada", []string{"feed"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wsURL := "ws" + strings.TrimPrefix(in.url, "http") + "/api/realtime/ws"
	for _, tc := range []struct {
		what   string
		query  string
		protos []string
		status int
	}{
		{"no subprotocol", "", nil, 400},
		{"another subprotocol", "", []string{"pusher"}, 400},
		{"a token in the URL", "?token=" + tok.Token, []string{hybridws.Subprotocol}, 400},
		{"an unknown ticket", "?ticket=tk_nope", []string{hybridws.Subprotocol}, 401},
	} {
		d := websocket.Dialer{Subprotocols: tc.protos}
		_, res, err := d.Dial(wsURL+tc.query, nil)
		if err == nil || res == nil || res.StatusCode != tc.status {
			t.Errorf("%s: %v, %v; want %d", tc.what, err, res, tc.status)
		}
	}
	if res := in.send("GET", "/api/realtime/ws", "", http.Header{}); res.status != 400 {
		t.Errorf("a plain GET = %d, want 400", res.status)
	}

	before := pgtest.Count(t, pool, `SELECT count(*) FROM events`)
	auth := func(s *nativeWS) {
		s.send(map[string]any{"op": "auth", "token": tok.Token})
		s.expect("ready")
	}
	for _, tc := range []struct {
		what string
		run  func(s *nativeWS)
		code int
	}{
		{"no auth in time", func(s *nativeWS) {}, hybridws.CodeUnauthorized},
		{"another op first", func(s *nativeWS) { s.send(map[string]any{"op": "subscribe", "channels": []string{"feed"}}) }, hybridws.CodeUnauthorized},
		{"an invalid token", func(s *nativeWS) { s.send(map[string]any{"op": "auth", "token": "e30.e30.x"}) }, hybridws.CodeUnauthorized},
		{"not JSON", func(s *nativeWS) { auth(s); _ = s.ws.WriteMessage(websocket.TextMessage, []byte("hello")) }, websocket.CloseInvalidFramePayloadData},
		{"binary", func(s *nativeWS) { auth(s); _ = s.ws.WriteMessage(websocket.BinaryMessage, []byte{1, 2}) }, websocket.CloseUnsupportedData},
		{"too big", func(s *nativeWS) {
			auth(s)
			_ = s.ws.WriteMessage(websocket.TextMessage, []byte(`{"op":"publish","data":"`+strings.Repeat("x", 100<<10)+`"}`))
		}, websocket.CloseMessageTooBig},
		{"fragments that never end", func(s *nativeWS) {
			auth(s)
			w, err := s.ws.NextWriter(websocket.TextMessage)
			if err != nil {
				return
			}
			chunk := []byte(strings.Repeat("x", 4096))
			for range int(cfg.WS.MaxMessage)/len(chunk) + 2 {
				if _, err := w.Write(chunk); err != nil {
					return // the server closed: expected
				}
			}
		}, websocket.CloseMessageTooBig},
		{"JSON without an op", func(s *nativeWS) {
			auth(s)
			_ = s.ws.WriteMessage(websocket.TextMessage, []byte(`{"channels":["feed"]}`))
		}, websocket.CloseInvalidFramePayloadData},
	} {
		s := dialWS(t, in, "")
		tc.run(s)
		if code := s.closed(); code != tc.code {
			t.Errorf("%s: closed with %d, want %d", tc.what, code, tc.code)
		}
	}

	// Refusals that leave the connection usable.
	s := dialWS(t, in, "")
	auth(s)
	for _, tc := range []struct {
		msg  map[string]any
		code string
	}{
		{map[string]any{"op": "subscribe", "channels": []string{"secret"}}, "insufficient_scope"},
		{map[string]any{"op": "subscribe", "channels": []string{"bad name"}}, "invalid_channel"},
		{map[string]any{"op": "subscribe", "channels": []string{"feed"}, "cursor": "99999999"}, "cursor_ahead"},
		{map[string]any{"op": "subscribe", "channels": []string{"feed"}, "cursor": "x"}, "invalid_cursor"},
		{map[string]any{"op": "subscribe"}, "missing_channels"},
		{map[string]any{"op": "publish", "channel": "feed", "type": "client-x"}, "client_events_disabled"},
		{map[string]any{"op": "auth", "token": tok.Token}, "already_authenticated"},
		{map[string]any{"op": "dance"}, "unknown_op"},
		{map[string]any{"op": "ping", "ref": map[string]any{"a": 1}}, "invalid_ref"},
	} {
		s.send(tc.msg)
		if m := s.expect("error"); m["code"] != tc.code {
			t.Errorf("%v: %v, want code %s", tc.msg, m, tc.code)
		}
	}
	s.send(map[string]any{"op": "subscribe", "channels": []string{"feed"}})
	s.expect("subscribed")
	// A flood of subscribes is held to the rate, never a crash; the
	// connection goes on.
	limited := 0
	for range 30 {
		s.send(map[string]any{"op": "subscribe", "channels": []string{"feed"}})
	}
	for range 30 {
		if m := s.next(); m["op"] == "error" && m["code"] == "rate_limited" {
			limited++
		}
	}
	if limited == 0 {
		t.Error("30 subscribes at once were all answered; want rate_limited beyond the burst")
	}
	s.send(map[string]any{"op": "ping", "ref": "after"})
	if m := s.expect("pong"); m["ref"] != "after" {
		t.Fatalf("after the flood: %v", m)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events`) - before; n != 0 {
		t.Errorf("refused messages stored %d events", n)
	}
}

// presenceToken mints a token of user sub for presence-* channels, with
// {"name":sub} as its info.
func presenceToken(t *testing.T, c *client.Client, sub string) string {
	t.Helper()
	tok, err := c.Mint(t.Context(), client.TokenRequest{Sub: sub, Channels: []string{"presence-*"}, Info: json.RawMessage(`{"name":"` + sub + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// members reads a presence message and returns its member ids, in order.
func (c *nativeWS) members() []string {
	c.t.Helper()
	m := c.expect("presence")
	list, _ := m["members"].([]any)
	ids := []string{}
	for _, x := range list {
		ids = append(ids, x.(map[string]any)["id"].(string))
	}
	return ids
}

// member reads a member_added or member_removed message and returns its id.
func (c *nativeWS) member(op string) string {
	c.t.Helper()
	m := c.expect(op)
	return m["member"].(map[string]any)["id"].(string)
}

// TestNativeWebSocketPresence: a presence channel over the native
// WebSocket has its subscribers as members, shared with the Pusher door
// and across instances: the members after "subscribed", then every join
// and leave, once; info from the token's info claim.
func TestNativeWebSocketPresence(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	other := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	c := client.New(in.url, acme.APIKey)
	mint := func(sub string) string { return presenceToken(t, c, sub) }
	join := func(in *instance, sub string) *nativeWS {
		s := dialWS(t, in, "")
		s.send(map[string]any{"op": "auth", "token": mint(sub)})
		s.expect("ready")
		s.send(map[string]any{"op": "subscribe", "channels": []string{"presence-room"}})
		s.expect("subscribed")
		return s
	}
	ada := join(in, "ada")
	if got := ada.members(); strings.Join(got, ",") != "ada" {
		t.Fatalf("Ada sees %v, want herself", got)
	}
	bob := join(other, "bob") // another instance
	if got := bob.members(); strings.Join(got, ",") != "ada,bob" {
		t.Fatalf("Bob sees %v, want ada,bob", got)
	}
	if got := ada.member("member_added"); got != "bob" {
		t.Fatalf("Ada was told of %q joining, want bob", got)
	}
	// A Pusher client in the same channel is a member too, and sees both.
	pc := connectPusher(t, in.url, acme.SigningKey.Kid)
	if ids := pc.joinPresence(acme.SigningKey.Kid, acme.SigningKey.Secret, "presence-room", "cleo"); len(ids) != 3 {
		t.Fatalf("the Pusher client sees %v, want ada, bob and cleo", ids)
	}
	if ada.member("member_added") != "cleo" || bob.member("member_added") != "cleo" {
		t.Fatal("cleo's join did not reach the native clients")
	}
	// Bob's second connection is no new member; leaving with one of two
	// changes nothing, leaving with the last is one member_removed.
	bob2 := join(in, "bob")
	bob2.members()
	bob2.ws.Close()
	bob.send(map[string]any{"op": "unsubscribe", "channels": []string{"presence-room"}})
	bob.expect("unsubscribed")
	if got := ada.member("member_removed"); got != "bob" {
		t.Fatalf("Ada was told of %q leaving, want bob", got)
	}
	if got := pc.memberEvent("pusher_internal:member_removed"); got != "bob" {
		t.Fatalf("the Pusher client was told of %q leaving, want bob", got)
	}
	res := in.do("GET", "/v1/presence/presence-room", acme.APIKey, "")
	if res.status != 200 || !strings.Contains(string(res.body), `"id":"ada","info":{"name":"ada"}`) || strings.Contains(string(res.body), `"bob"`) {
		t.Fatalf("GET /v1/presence = %d %s, want ada (with her info) and cleo", res.status, res.body)
	}
}

// nextSystem returns the stream's next message that is not an event, with
// its data decoded, failing after 10 s.
func nextSystem(t *testing.T, s *stream, typ string) map[string]any {
	t.Helper()
	select {
	case e := <-s.system:
		if e.Type != typ {
			t.Fatalf("SSE %s %s, want %s", e.Type, e.Data, typ)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(e.Data), &m); err != nil {
			t.Fatalf("SSE %s data %q: %v", typ, e.Data, err)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("no SSE %s within 10 s", typ)
	}
	return nil
}

// TestSSEPresence: an SSE subscriber of a presence channel is one of its
// members, beside the native WebSocket's: it gets the members after ready,
// then every join and leave, as events without an id; its leaving is
// announced to the others.
func TestSSEPresence(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	c := client.New(in.url, acme.APIKey)
	mint := func(sub string) string { return presenceToken(t, c, sub) }
	ada := in.subscribe(acme.Tenant.ID, "ada", []string{"presence-*"}, []string{"presence-room"}, subscribeOpts{token: mint("ada")})
	nextSystem(t, ada, "ready")
	m := nextSystem(t, ada, "presence")
	if fmt.Sprint(m["members"]) != "[map[id:ada info:map[name:ada]]]" || m["channel"] != "presence-room" {
		t.Fatalf("Ada's presence = %v, want herself with her info", m)
	}
	bob := dialWS(t, in, "")
	bob.send(map[string]any{"op": "auth", "token": mint("bob")})
	bob.expect("ready")
	bob.send(map[string]any{"op": "subscribe", "channels": []string{"presence-room"}})
	bob.expect("subscribed")
	if got := bob.members(); strings.Join(got, ",") != "ada,bob" {
		t.Fatalf("Bob sees %v, want ada,bob", got)
	}
	if m := nextSystem(t, ada, "member_added"); fmt.Sprint(m["member"]) != "map[id:bob info:map[name:bob]]" {
		t.Fatalf("Ada's member_added = %v, want bob", m)
	}
	// A subscriber that is no member (a long-poller) reads them with its token.
	cleo := presenceToken(t, c, "cleo")
	if res := in.do("GET", "/api/realtime/presence?channel=presence-room", cleo, ""); res.status != 200 ||
		!strings.Contains(string(res.body), `{"id":"ada","info":{"name":"ada"}},{"id":"bob","info":{"name":"bob"}}`) {
		t.Fatalf("GET /api/realtime/presence = %d %s, want ada and bob", res.status, res.body)
	}
	noGrant, err := c.MintToken(t.Context(), "dan", []string{"feed"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	checkProblem(t, "presence without the channel's grant", in.do("GET", "/api/realtime/presence?channel=presence-room", noGrant.Token, ""), 403)
	checkProblem(t, "presence of a channel that is not one", in.do("GET", "/api/realtime/presence?channel=feed", noGrant.Token, ""), 400)
	checkProblem(t, "presence without a token", in.do("GET", "/api/realtime/presence?channel=presence-room", "", ""), 401)
	ada.close()
	if got := bob.member("member_removed"); got != "ada" {
		t.Fatalf("Bob was told of %q leaving, want ada", got)
	}
	res := in.do("GET", "/v1/presence/presence-room", acme.APIKey, "")
	if res.status != 200 || strings.Contains(string(res.body), `"ada"`) || !strings.Contains(string(res.body), `"bob"`) {
		t.Fatalf("GET /v1/presence = %d %s, want bob alone", res.status, res.body)
	}
}

// TestGoClientPresence: the Go subscriber is a member of its presence
// channels over the WebSocket, SSE and long-polling, keeps their members
// (Members) and reports every change (OnPresence). A long-poller that stops
// polling is removed once its time passes.
func TestGoClientPresence(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Stream.PollPresenceGrace = time.Second
	in := newInstance(t, pgtest.NewDB(t), cfg)
	acme := in.signup("Acme")
	c := client.New(in.url, acme.APIKey)
	changes := make(chan client.PresenceChange, 16)
	subscribe := func(user string, transport client.Transport, onPresence func(client.PresenceChange)) *client.Subscription {
		s, err := client.Subscribe(t.Context(), client.SubscribeOptions{
			URL: in.url, Channels: []string{"presence-room"}, Transports: []client.Transport{transport}, PollTimeout: time.Second,
			Token: func(ctx context.Context) (string, error) {
				// Not presenceToken: this runs on the subscription's goroutine,
				// which may outlive the test's context by a moment.
				tok, err := c.Mint(ctx, client.TokenRequest{Sub: user, Channels: []string{"presence-*"}, Info: json.RawMessage(`{"name":"` + user + `"}`)})
				return tok.Token, err
			},
			OnPresence: onPresence,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	waitMembers := func(s *client.Subscription, want string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ms, _ := s.Members("presence-room")
			var ids []string
			for _, m := range ms {
				ids = append(ids, m.ID)
			}
			if strings.Join(ids, ",") == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("members %v after 15 s, want %s", ids, want)
			}
		}
	}
	ada := subscribe("ada", client.WebSocket, func(p client.PresenceChange) { changes <- p })
	waitMembers(ada, "ada")
	bob := subscribe("bob", client.SSE, nil)
	waitMembers(bob, "ada,bob")
	waitMembers(ada, "ada,bob")
	if ms, _ := ada.Members("presence-room"); string(ms[1].Info) != `{"name":"bob"}` {
		t.Errorf("bob's info as Ada sees it: %s", ms[1].Info)
	}
	bob.Close()
	waitMembers(ada, "ada")
	var kinds []string
	for len(kinds) < 3 {
		select {
		case p := <-changes:
			kinds = append(kinds, p.Kind+" "+p.Member.ID)
		case <-time.After(5 * time.Second):
			t.Fatalf("OnPresence got %v, want the members, bob joining and leaving", kinds)
		}
	}
	if strings.Join(kinds, ",") != "presence ,member_added bob,member_removed bob" {
		t.Errorf("OnPresence got %v", kinds)
	}
	// A long-poller is a member while it polls, and hears the others.
	cleo := subscribe("cleo", client.Polling, nil)
	waitMembers(cleo, "ada,cleo")
	waitMembers(ada, "ada,cleo")
	time.Sleep(2500 * time.Millisecond) // past a poll's hold and grace: its polls keep it
	waitMembers(ada, "ada,cleo")
	cleo.Close()
	stopped := time.Now()
	waitMembers(ada, "ada")
	t.Logf("the long-poller was removed %v after its last poll", time.Since(stopped).Round(100*time.Millisecond))
}
