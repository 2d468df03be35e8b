package main

// The Pusher door tested with the real clients: pusher-js (Node), Laravel
// Echo, and the Pusher server libraries (see pusherjs_helpers_test.go).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hybridrt/hybridrt/internal/faultproxy"
	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// pusherApp signs a tenant up on in, allows public and client events as
// given, and returns the Pusher configuration of its first key.
func pusherApp(t *testing.T, in *instance, name string, settings string) (signedUp, pusherConfig) {
	t.Helper()
	s := in.signup(name)
	if settings != "" {
		if res := in.do("PATCH", "/v1/tenant/settings", s.APIKey, settings); res.status != 200 {
			t.Fatalf("PATCH settings = %d %s", res.status, res.body)
		}
	}
	return s, pusherConfigAt(t, in.url, s.Tenant.ID, s.SigningKey.Kid, s.SigningKey.Secret)
}

// eventLine accepts an event line on channel of type event.
func eventLine(channel, event string) func(map[string]any) bool {
	return pusherLine("event", "channel", channel, "event", event)
}

// dataOf is an event line's data as JSON.
func dataOf(line map[string]any) string { return dataJSON(line["data"]) }

// TestPusherJS: pusher-js, unchanged but for its host, against hybridrt:
// public, private, presence, encrypted and cache channels, client events,
// and events crossing doors (the HTTP API of hybridrt and Pusher's, SSE).
func TestPusherJS(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme, cfg := pusherApp(t, in, "Acme", `{"publicChannels":["news","cache-news","cache-empty"],"clientEvents":true}`)
	pub := in.publisher(acme)

	ann := startPusherJS(t, cfg)
	ann.socketID()

	// Public: an event from /v1/events, its JSON data handed to the app as the value.
	ann.do(map[string]any{"op": "subscribe", "channel": "news"})
	ann.waitFor(pusherLine("subscribed", "channel", "news"), 10*time.Second)
	ids := pub.events(`{"channel":"news","type":"App\\Events\\OrderShipped","data":{"order":7,"text":"<b>&</b>"}}`)
	line := ann.waitFor(eventLine("news", `App\Events\OrderShipped`), 10*time.Second)
	if dataOf(line) != `{"order":7,"text":"<b>&</b>"}` || line["id"] != ids[0] {
		t.Errorf("public event line %v, want the data and id %s", line, ids[0])
	}

	// Private: triggered through the Pusher HTTP API by the Node library;
	// the data the library sent is what the app gets, object or string.
	ann.do(map[string]any{"op": "subscribe", "channel": "private-orders"})
	ann.waitFor(pusherLine("subscribed", "channel", "private-orders"), 10*time.Second)
	for _, data := range []any{map[string]any{"a": 1.0}, "plain text", 42.0, []any{"x"}} {
		res := runPusherServer(t, cfg, map[string]any{"call": "trigger", "channel": "private-orders", "event": "placed", "data": data})
		if res["status"] != 200.0 {
			t.Fatalf("trigger %v = %v", data, res)
		}
		line := ann.waitFor(eventLine("private-orders", "placed"), 10*time.Second)
		want, _ := json.Marshal(data)
		if dataOf(line) != string(want) {
			t.Errorf("trigger of %s reached pusher-js as %s", want, dataOf(line))
		}
	}

	// Encrypted: the library encrypts, hybridrt relays, pusher-js decrypts.
	ann.do(map[string]any{"op": "subscribe", "channel": "private-encrypted-vault"})
	ann.waitFor(pusherLine("subscribed", "channel", "private-encrypted-vault"), 10*time.Second)
	res := runPusherServer(t, cfg, map[string]any{"call": "trigger", "channel": "private-encrypted-vault", "event": "secret", "data": map[string]any{"pin": "1234"}})
	if res["status"] != 200.0 {
		t.Fatalf("encrypted trigger = %v", res)
	}
	if line := ann.waitFor(eventLine("private-encrypted-vault", "secret"), 10*time.Second); dataOf(line) != `{"pin":"1234"}` {
		t.Errorf("encrypted event decrypted to %s", dataOf(line))
	}
	var stored string
	if err := in.svc.pool.QueryRow(t.Context(), `SELECT data::text FROM events WHERE channel = 'private-encrypted-vault'`).Scan(&stored); err != nil || strings.Contains(stored, "1234") || !strings.Contains(stored, "ciphertext") {
		t.Errorf("stored encrypted event = %s (%v), want ciphertext only", stored, err)
	}

	// Cache: the last event, then live; a channel with none gets cache_miss.
	pub.events(`{"channel":"cache-news","type":"headline","data":{"v":1}}`)
	pub.events(`{"channel":"cache-news","type":"headline","data":{"v":2}}`)
	ann.do(map[string]any{"op": "subscribe", "channel": "cache-news"})
	if line := ann.waitFor(eventLine("cache-news", "headline"), 10*time.Second); dataOf(line) != `{"v":2}` {
		t.Errorf("cache channel sent %s on subscribe, want the last event", dataOf(line))
	}
	pub.events(`{"channel":"cache-news","type":"headline","data":{"v":3}}`)
	if line := ann.waitFor(eventLine("cache-news", "headline"), 10*time.Second); dataOf(line) != `{"v":3}` {
		t.Errorf("cache channel then sent %s, want v 3", dataOf(line))
	}
	ann.do(map[string]any{"op": "subscribe", "channel": "cache-empty"})
	ann.waitFor(eventLine("cache-empty", "pusher:cache_miss"), 10*time.Second)

	// Presence and client events: two users; bob's client event reaches
	// ann, not bob; bob leaves.
	bob := startPusherJS(t, cfg)
	ann.do(map[string]any{"op": "subscribe", "channel": "presence-room", "user": map[string]any{"user_id": "ann", "user_info": map[string]any{"name": "Ann"}}})
	ann.waitFor(pusherLine("subscribed", "channel", "presence-room"), 10*time.Second)
	bob.do(map[string]any{"op": "subscribe", "channel": "presence-room", "user": map[string]any{"user_id": "bob", "user_info": map[string]any{"name": "Bob"}}})
	line = bob.waitFor(pusherLine("subscribed", "channel", "presence-room"), 10*time.Second)
	if members, _ := json.Marshal(line["members"]); string(members) != `{"ann":{"name":"Ann"},"bob":{"name":"Bob"}}` || line["count"] != 2.0 {
		t.Errorf("bob's presence subscription: %v", line)
	}
	if line := ann.waitFor(eventLine("presence-room", "pusher:member_added"), 10*time.Second); !strings.Contains(dataOf(line), `"bob"`) {
		t.Errorf("ann's member_added: %v", line)
	}
	bob.do(map[string]any{"op": "trigger", "channel": "presence-room", "event": "client-typing", "data": map[string]any{"on": true}})
	if line := ann.waitFor(eventLine("presence-room", "client-typing"), 10*time.Second); dataOf(line) != `{"on":true}` || line["userId"] != "bob" {
		t.Errorf("client event reached ann as %v, want its data and user_id bob", line)
	}
	bob.do(map[string]any{"op": "unsubscribe", "channel": "presence-room"})
	if line := ann.waitFor(eventLine("presence-room", "pusher:member_removed"), 10*time.Second); !strings.Contains(dataOf(line), `"bob"`) {
		t.Errorf("ann's member_removed: %v", line)
	}
	for _, l := range bob.lines() {
		if l["event"] == "client-typing" {
			t.Errorf("bob got his own client event: %v", l)
		}
	}
}

// TestPusherJSReconnect: the server side drops pusher-js's socket (a load
// balancer restart, here a proxy resetting every connection); pusher-js
// reconnects with a new socket id, subscribes again, and receives.
func TestPusherJSReconnect(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme, _ := pusherApp(t, in, "Acme", `{"publicChannels":["news"]}`)
	proxy, err := faultproxy.Start(strings.TrimPrefix(in.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	cfg := pusherConfigAt(t, "http://"+proxy.Addr(), acme.Tenant.ID, acme.SigningKey.Kid, acme.SigningKey.Secret)
	p := startPusherJS(t, cfg)
	first := p.socketID()
	p.do(map[string]any{"op": "subscribe", "channel": "news"})
	p.do(map[string]any{"op": "subscribe", "channel": "private-a"})
	p.waitFor(pusherLine("subscribed", "channel", "news"), 10*time.Second)
	p.waitFor(pusherLine("subscribed", "channel", "private-a"), 10*time.Second)

	proxy.ResetAll()
	second := p.socketID()
	if second == first {
		t.Errorf("socket id %s after reconnecting, want a new one", second)
	}
	p.waitFor(pusherLine("subscribed", "channel", "news"), 15*time.Second)
	p.waitFor(pusherLine("subscribed", "channel", "private-a"), 15*time.Second)
	pub := in.publisher(acme)
	pub.events(`{"channel":"news","type":"after","data":1}`)
	pub.events(`{"channel":"private-a","type":"after","data":2}`)
	p.waitFor(eventLine("news", "after"), 10*time.Second)
	p.waitFor(eventLine("private-a", "after"), 10*time.Second)
	waitFor(t, 5*time.Second, func() string {
		if n := pgtest.Count(t, in.svc.pool, `SELECT count(*) FROM connections`); n != 1 {
			return "connections recorded: want 1 after the reconnect"
		}
		return ""
	})
}

// TestLaravelEcho: Laravel Echo on pusher-js, as a Laravel app's frontend
// uses it: a private channel's listen('.OrderShipped'), and a presence
// channel's here/joining/leaving.
func TestLaravelEcho(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme, cfg := pusherApp(t, in, "Acme", "")

	echo := startLaravelEcho(t, cfg)
	echo.do(map[string]any{"op": "private", "channel": "orders.1", "listen": ".OrderShipped"})
	time.Sleep(300 * time.Millisecond) // Echo reports nothing on subscription
	// Laravel broadcasts App\Events\OrderShipped with broadcastAs
	// 'OrderShipped' on private-orders.1 through the Pusher API.
	res := runPusherServer(t, cfg, map[string]any{"call": "trigger", "channel": "private-orders.1", "event": "OrderShipped", "data": map[string]any{"order": map[string]any{"id": 1.0}}})
	if res["status"] != 200.0 {
		t.Fatalf("trigger = %v", res)
	}
	line := echo.waitFor(pusherLine("event", "channel", "private-orders.1"), 10*time.Second)
	if dataOf(line) != `{"order":{"id":1}}` {
		t.Errorf("Echo listener got %v", line)
	}
	// The same event from hybridrt's own API reaches Echo too.
	in.publisher(acme).events(`{"channel":"private-orders.1","type":"OrderShipped","data":{"order":{"id":2}}}`)
	if line := echo.waitFor(pusherLine("event", "channel", "private-orders.1"), 10*time.Second); dataOf(line) != `{"order":{"id":2}}` {
		t.Errorf("Echo listener got %v", line)
	}

	ann := startLaravelEcho(t, cfg)
	ann.do(map[string]any{"op": "join", "channel": "room", "user": map[string]any{"user_id": "ann", "user_info": map[string]any{"name": "Ann"}}})
	if line := ann.waitFor(pusherLine("here", "channel", "presence-room"), 10*time.Second); !strings.Contains(dataJSON(line["users"]), "Ann") {
		t.Errorf("ann here: %v", line)
	}
	bob := startLaravelEcho(t, cfg)
	bob.do(map[string]any{"op": "join", "channel": "room", "user": map[string]any{"user_id": "bob", "user_info": map[string]any{"name": "Bob"}}})
	if line := bob.waitFor(pusherLine("here", "channel", "presence-room"), 10*time.Second); !strings.Contains(dataJSON(line["users"]), "Ann") || !strings.Contains(dataJSON(line["users"]), "Bob") {
		t.Errorf("bob here: %v", line)
	}
	if line := ann.waitFor(pusherLine("joining", "channel", "presence-room"), 10*time.Second); !strings.Contains(dataJSON(line["user"]), "Bob") {
		t.Errorf("ann joining: %v", line)
	}
	bob.do(map[string]any{"op": "leave", "channel": "room"})
	if line := ann.waitFor(pusherLine("leaving", "channel", "presence-room"), 10*time.Second); !strings.Contains(dataJSON(line["user"]), "Bob") {
		t.Errorf("ann leaving: %v", line)
	}
}

func dataJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSpace(b.String())
}

// TestPusherJSChromium: pusher-js's web build in Chromium, authorizing
// through an app backend's endpoint: public, private and presence channels,
// an event from the Pusher library and one from hybridrt's API, and a
// client event from the page to a Node pusher-js client.
func TestPusherJSChromium(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme, cfg := pusherApp(t, in, "Acme", `{"publicChannels":["news"],"clientEvents":true}`)
	page := httptest.NewServer(pusherPageHandler(t, cfg))
	t.Cleanup(page.Close)
	ctx, cancel := context.WithTimeout(newBrowser(t, t.Context()), 90*time.Second)
	defer cancel()
	run := func(js string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](js)); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
	}
	waitResult := func(pred func(map[string]any) bool) map[string]any { t.Helper(); return waitPageResult(t, ctx, pred) }
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL+"/")); err != nil {
		t.Fatal(err)
	}
	run(fmt.Sprintf(`pusherTest.connect({key: %q, wsHost: "127.0.0.1", wsPort: %d, params: {user_id: "page", user_info: '{"name":"Page"}'}})`, cfg.Key, cfg.Port))
	for _, ch := range []string{"news", "private-orders", "presence-room"} {
		run(fmt.Sprintf(`pusherTest.subscribe(%q)`, ch))
		waitResult(pusherLine("subscribed", "channel", ch))
	}
	node := startPusherJS(t, cfg)
	node.do(map[string]any{"op": "subscribe", "channel": "presence-room", "user": map[string]any{"user_id": "node"}})
	node.waitFor(pusherLine("subscribed", "channel", "presence-room"), 10*time.Second)
	waitResult(pusherLine("event", "channel", "presence-room", "event", "pusher:member_added"))

	if res := runPusherServer(t, cfg, map[string]any{"call": "trigger", "channel": "private-orders", "event": "placed", "data": map[string]any{"n": 1.0}}); res["status"] != 200.0 {
		t.Fatalf("trigger = %v", res)
	}
	waitResult(pusherLine("event", "channel", "private-orders", "event", "placed", "data", map[string]any{"n": 1}))
	id := in.publisher(acme).events(`{"channel":"news","type":"headline","data":"<img src=x onerror=alert(1)>"}`)[0]
	if r := waitResult(pusherLine("event", "channel", "news", "event", "headline")); r["id"] != id || r["data"] != "<img src=x onerror=alert(1)>" {
		t.Errorf("the page got %v, want event %s with the text as sent", r, id)
	}
	run(`pusherTest.trigger("presence-room", "client-wave", {from: "page"})`)
	if line := node.waitFor(eventLine("presence-room", "client-wave"), 10*time.Second); dataOf(line) != `{"from":"page"}` {
		t.Errorf("node got the page's client event as %v", line)
	}
}
