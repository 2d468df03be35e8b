package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// bodyOf is a server-library call's parsed response body, or fails the test.
func bodyOf(t *testing.T, what string, res map[string]any) map[string]any {
	t.Helper()
	if res["status"] != 200.0 {
		t.Fatalf("%s = %v, want status 200", what, res)
	}
	body, _ := res["body"].(map[string]any)
	if body == nil {
		body = map[string]any{}
	}
	return body
}

// TestPusherServerLibraries: every Pusher HTTP API call of the Node
// library, and trigger and channel queries of the Go library, against two
// instances sharing a database: what the API triggers on one reaches
// pusher-js on the other and SSE subscribers, channel queries count
// subscribers of every transport on every instance, and a pusher-js client
// event reaches an SSE subscriber.
func TestPusherServerLibraries(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	a, b := newInstance(t, db, testConfig()), newInstance(t, db, testConfig())
	acme, cfgA := pusherApp(t, a, "Acme", `{"publicChannels":["news"],"clientEvents":true}`)
	cfgB := pusherConfigAt(t, b.url, cfgA.AppID, cfgA.Key, cfgA.Secret)

	ann := startPusherJS(t, cfgA)
	annSocket := ann.socketID()
	for _, ch := range []string{"news", "private-a"} {
		ann.do(map[string]any{"op": "subscribe", "channel": ch})
		ann.waitFor(pusherLine("subscribed", "channel", ch), 10*time.Second)
	}
	bob := startPusherJS(t, cfgA)
	for _, p := range []struct {
		c    *pusherJS
		user string
	}{{ann, "ann"}, {bob, "bob"}} {
		p.c.do(map[string]any{"op": "subscribe", "channel": "presence-room", "user": map[string]any{"user_id": p.user}})
		p.c.waitFor(pusherLine("subscribed", "channel", "presence-room"), 10*time.Second)
	}
	// An SSE subscriber on the other instance whose token grants the channels.
	pub := b.publisher(acme)
	sse := b.subscribe(acme.Tenant.ID, "s", []string{"news", "private-a"}, []string{"news", "private-a"},
		subscribeOpts{token: pub.token("s", []string{"news", "private-a"}, 600)})
	time.Sleep(1200 * time.Millisecond) // the connections tables are written every second

	// Trigger on B, to two channels, asking for their subscription counts.
	res := runPusherServer(t, cfgB, map[string]any{"call": "trigger", "channels": []string{"news", "private-a"}, "event": "App\\Events\\OrderShipped", "data": map[string]any{"id": 1.0}, "info": "subscription_count"})
	body := bodyOf(t, "trigger", res)
	if got := dataJSON(body["channels"]); got != `{"news":{"subscription_count":2},"private-a":{"subscription_count":2}}` {
		t.Errorf("trigger info = %s, want 2 subscribers (pusher-js and SSE) on each", got)
	}
	for _, ch := range []string{"news", "private-a"} {
		if line := ann.waitFor(eventLine(ch, `App\Events\OrderShipped`), 10*time.Second); dataOf(line) != `{"id":1}` {
			t.Errorf("pusher-js on the other instance got %v", line)
		}
	}
	evs := sse.collect(2, 10*time.Second)
	for _, e := range evs {
		if e.Type != `App\Events\OrderShipped` || string(e.Data) != `{"id":1}` {
			t.Errorf("SSE got %+v, want the trigger's data as an object", e)
		}
	}

	// socket_id excludes that connection only.
	bodyOf(t, "trigger with socket_id", runPusherServer(t, cfgB, map[string]any{"call": "trigger", "channel": "news", "event": "excluded", "data": "x", "socket_id": annSocket}))
	if e := sse.collect(1, 10*time.Second)[0]; e.Type != "excluded" || string(e.Data) != `"x"` {
		t.Errorf("SSE got %+v", e)
	}
	// A batch, then an event ann must get: the excluded one never came first.
	bodyOf(t, "triggerBatch", runPusherServer(t, cfgB, map[string]any{"call": "triggerBatch", "batch": []map[string]any{
		{"channel": "news", "name": "b1", "data": "1"}, {"channel": "private-a", "name": "b2", "data": "2"},
	}}))
	ann.waitFor(eventLine("news", "b1"), 10*time.Second)
	ann.waitFor(eventLine("private-a", "b2"), 10*time.Second)
	for _, l := range ann.lines() {
		if l["event"] == "excluded" {
			t.Errorf("the socket_id excluded from a trigger got it: %v", l)
		}
	}
	sse.collect(2, 10*time.Second)

	// Channel queries, by both libraries.
	for _, lib := range []struct {
		name string
		run  func(*testing.T, pusherConfig, map[string]any) map[string]any
	}{{"node", runPusherServer}, {"go", runPusherGo}} {
		body := bodyOf(t, lib.name+" channels", lib.run(t, cfgB, map[string]any{"call": "channels"}))
		chans, _ := body["channels"].(map[string]any)
		for _, ch := range []string{"news", "private-a", "presence-room"} {
			if _, ok := chans[ch]; !ok {
				t.Errorf("%s channels = %v, want %s among them", lib.name, body, ch)
			}
		}
		body = bodyOf(t, lib.name+" presence channels", lib.run(t, cfgB, map[string]any{"call": "channels", "params": map[string]any{"filter_by_prefix": "presence-", "info": "user_count"}}))
		if got := dataJSON(body); got != `{"channels":{"presence-room":{"user_count":2}}}` {
			t.Errorf("%s presence channels = %s", lib.name, got)
		}
		body = bodyOf(t, lib.name+" channel", lib.run(t, cfgB, map[string]any{"call": "channel", "channel": "presence-room", "params": map[string]any{"info": "subscription_count,user_count"}}))
		delete(body, "Name") // the Go library's own struct field
		if got := dataJSON(body); got != `{"occupied":true,"subscription_count":2,"user_count":2}` {
			t.Errorf("%s channel = %s", lib.name, got)
		}
		body = bodyOf(t, lib.name+" trigger", lib.run(t, cfgB, map[string]any{"call": "trigger", "channel": "news", "event": "from-" + lib.name, "data": map[string]any{"lib": lib.name}}))
		ann.waitFor(eventLine("news", "from-"+lib.name), 10*time.Second)
		sse.collect(1, 10*time.Second)
	}
	body = bodyOf(t, "users", runPusherServer(t, cfgB, map[string]any{"call": "users", "channel": "presence-room"}))
	if got := dataJSON(body); got != `{"users":[{"id":"ann"},{"id":"bob"}]}` {
		t.Errorf("users = %s", got)
	}
	body = bodyOf(t, "empty channel", runPusherServer(t, cfgB, map[string]any{"call": "channel", "channel": "nobody-here"}))
	if got := dataJSON(body); got != `{"occupied":false}` {
		t.Errorf("an empty channel = %s", got)
	}

	// A pusher-js client event reaches the SSE subscriber on the other instance.
	ann.do(map[string]any{"op": "trigger", "channel": "private-a", "event": "client-note", "data": map[string]any{"n": 1.0}})
	if e := sse.collect(1, 10*time.Second)[0]; e.Type != "client-note" || string(e.Data) != `{"n":1}` {
		t.Errorf("SSE got the client event as %+v", e)
	}

	// Sign-in, then terminate_connections from the other instance.
	ann.do(map[string]any{"op": "signin", "user": map[string]any{"id": "ann"}})
	ann.waitFor(pusherLine("event", "event", "pusher:signin_success"), 10*time.Second)
	bodyOf(t, "terminateUserConnections", runPusherServer(t, cfgB, map[string]any{"call": "terminateUserConnections", "userId": "ann"}))
	line := ann.waitFor(pusherLine("closed"), 10*time.Second)
	if line["code"] != 4009.0 {
		t.Errorf("terminated connection closed with %v, want 4009", line)
	}
	time.Sleep(300 * time.Millisecond)
	for _, l := range bob.lines() {
		if l["kind"] == "closed" {
			t.Errorf("bob, not signed in as ann, was closed too: %v", l)
		}
	}
	if strings.Contains(a.logs.String(), cfgA.Secret) || strings.Contains(b.logs.String(), cfgA.Secret) {
		t.Error("the secret is in the logs")
	}

	// What happened is in the metrics (process-wide: both instances count).
	metrics := string(a.do("GET", "/metrics", "", "").body)
	for _, series := range []string{
		`hybridrt_connections{transport="websocket"}`,
		`hybridrt_events_delivered_total{transport="websocket"}`,
		`hybridrt_presence_channels`,
		`hybridrt_presence_members`,
		`hybridrt_pusher_connections_total{outcome="ok"}`,
		`hybridrt_pusher_subscriptions_total{kind="presence"}`,
		`hybridrt_pusher_client_events_total{outcome="published"}`,
		`hybridrt_pusher_signins_total{outcome="ok"}`,
		`hybridrt_pusher_api_requests_total{`,
	} {
		if !strings.Contains(metrics, series) {
			t.Errorf("/metrics has no %s", series)
		}
	}
}
