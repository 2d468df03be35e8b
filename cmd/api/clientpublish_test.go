package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/client"
	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestClientPublish: SSE and long-poll clients send client events with
// POST /api/realtime/publish when their token's publish claim names the
// channel and the tenant takes client events. Every other subscriber gets
// the event with an id; the sender does not get it back, over SSE (skipped
// by its stream) or polling (dropped by id). Refusals change nothing.
func TestClientPublish(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	c := client.New(in.url, acme.APIKey)
	ctx := t.Context()
	mint := func(r client.TokenRequest) string {
		t.Helper()
		tok, err := c.Mint(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Token
	}
	ada := mint(client.TokenRequest{Sub: "ada", Channels: []string{"chat:*"}, Publish: []string{"chat:*"}, Info: json.RawMessage(`{"name":"Ada"}`)})
	reader := mint(client.TokenRequest{Sub: "bob", Channels: []string{"chat:*"}})
	stored := func() int { return pgtest.Count(t, pool, `SELECT count(*) FROM events`) }
	send := func(token, body string) response { return in.do("POST", "/api/realtime/publish", token, body) }

	// Off until the tenant enables client events.
	before := stored()
	checkProblem(t, "client events disabled", send(ada, `{"channel":"chat:1","type":"client-typing"}`), 403)
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"clientEvents":true}`); res.status != 200 {
		t.Fatalf("enable client events = %d %s", res.status, res.body)
	}
	for _, tc := range []struct {
		what, token, body string
		status            int
		code              string
	}{
		{"no publish claim", reader, `{"channel":"chat:1","type":"client-typing"}`, 403, "insufficient_scope"},
		{"a channel the claim does not name", ada, `{"channel":"news","type":"client-typing"}`, 403, "insufficient_scope"},
		{"a type without client-", ada, `{"channel":"chat:1","type":"order.shipped"}`, 400, "invalid_event_type"},
		{"a pusher: type", ada, `{"channel":"chat:1","type":"client-pusher:x y"}`, 400, "invalid_event_type"},
		{"a bad channel", ada, `{"channel":"chat 1","type":"client-typing"}`, 400, "invalid_channel"},
		{"a connection id that is not one", ada, `{"channel":"chat:1","type":"client-typing","connectionId":"42"}`, 400, "invalid_connection_id"},
		{"an unknown field", ada, `{"channel":"chat:1","type":"client-typing","user":"eve"}`, 400, ""},
		{"data that is not JSON", ada, `{"channel":"chat:1","type":"client-typing","data":{]}`, 400, ""},
		{"no token", "", `{"channel":"chat:1","type":"client-typing"}`, 401, ""},
	} {
		res := send(tc.token, tc.body)
		if code := checkProblem(t, tc.what, res, tc.status); tc.code != "" && code != tc.code {
			t.Errorf("%s: code %q, want %q", tc.what, code, tc.code)
		}
	}
	if n := stored() - before; n != 0 {
		t.Fatalf("refused client events stored %d events", n)
	}
	checkProblem(t, "a poll with a connection id that is not one", in.do("GET", "/api/realtime/polling?timeout=0&channels=chat:1&connectionId=x", ada, ""), 400)

	// Ada on SSE, Bob on polling, both on chat:1 from the head.
	head, _ := c.Head(ctx)
	subscribe := func(token string, transports ...client.Transport) *client.Subscription {
		s, err := client.Subscribe(ctx, client.SubscribeOptions{
			URL: in.url, Channels: []string{"chat:1"}, Cursor: head, Transports: transports, PollTimeout: time.Second,
			Token: func(context.Context) (string, error) { return token, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	adaSub := subscribe(ada, client.SSE)
	bobSub := subscribe(mint(client.TokenRequest{Sub: "bob", Channels: []string{"chat:*"}, Publish: []string{"chat:1"}}), client.Polling)
	deadline := time.Now().Add(5 * time.Second)
	for adaSub.State().ConnectionID == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if adaSub.State().ConnectionID == "" {
		t.Fatalf("Ada's SSE stream never got ready: %+v", adaSub.State())
	}
	id, err := adaSub.Publish(ctx, "chat:1", "client-typing", map[string]any{"typing": true})
	if err != nil {
		t.Fatal(err)
	}
	bobsID, err := bobSub.Publish(ctx, "chat:1", "client-typing", map[string]any{"typing": false})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, client.EventInput{Channel: "chat:1", Type: "message", Data: "hi"}); err != nil {
		t.Fatal(err)
	}
	// Bob gets Ada's event and the backend's, not his own; Ada gets Bob's
	// and the backend's, not hers.
	for who, s := range map[string]*client.Subscription{"bob": bobSub, "ada": adaSub} {
		got := collectEvents(t, s, 2, 10*time.Second)
		want := map[string]string{"bob": id, "ada": bobsID}[who]
		if got[0].ID != want || got[0].Type != "client-typing" || got[1].Type != "message" {
			t.Errorf("%s got %s %s, then %s %s; want the other's client event %s, then the message", who, got[0].ID, got[0].Type, got[1].ID, got[1].Type, want)
		}
		sender := map[string]string{"bob": "ada", "ada": "bob"}[who]
		if got[0].User != sender || got[1].User != "" {
			t.Errorf("%s got senders %q and %q; want %q for the client event, none for the backend's", who, got[0].User, got[1].User, sender)
		}
	}

	// At most CLIENT_EVENT_RATE (10) a second per connection, with a burst
	// of 10 of which Ada's stream used one above: a burst of 15 from it gets
	// 429s, and stores only what was accepted.
	before = stored()
	accepted, limited := 0, 0
	body := `{"channel":"chat:1","type":"client-cursor","data":{"x":1},"connectionId":"` + adaSub.State().ConnectionID + `"}`
	for range 15 {
		switch res := send(ada, body); res.status {
		case 201:
			accepted++
		case 429:
			limited++
			if !strings.Contains(string(res.body), "client_event_rate_limited") {
				t.Errorf("429 body %s", res.body)
			}
		default:
			t.Fatalf("burst: %d %s", res.status, res.body)
		}
	}
	if accepted < 9 || accepted > 11 || limited < 4 {
		t.Errorf("a burst of 15: %d accepted, %d limited; want about 9 and the rest 429s", accepted, limited)
	}
	if n := stored() - before; n != accepted {
		t.Errorf("stored %d of a burst with %d accepted", n, accepted)
	}
	var apiErr *client.Error
	if _, err := adaSub.Publish(ctx, "news", "client-typing", nil); !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Errorf("Publish to a channel the claim does not name = %v, want a 403", err)
	}
}
