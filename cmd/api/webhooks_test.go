package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/client"
	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/webhook"
)

// hookEvent is one webhook event as a receiver decodes it.
type hookEvent struct {
	Name     string `json:"name"`
	Channel  string `json:"channel"`
	UserID   string `json:"user_id"`
	Event    string `json:"event"`
	Data     string `json:"data"`
	SocketID string `json:"socket_id"`
}

// hookReceiver is a tenant's webhook endpoint: it checks every request's
// key and signature, and records the events it acknowledged, in order.
type hookReceiver struct {
	t      *testing.T
	srv    *httptest.Server
	key    string
	secret string

	mu     sync.Mutex
	events []hookEvent
	bad    int // requests whose signature did not verify
	added  chan struct{}
}

func newHookReceiver(t *testing.T, key, secret string) *hookReceiver {
	h := &hookReceiver{t: t, key: key, secret: secret, added: make(chan struct{}, 1)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if r.Header.Get(webhook.HeaderKey) != h.key || r.Header.Get(webhook.HeaderSignature) != webhook.Sign(h.secret, body) {
			h.bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var b struct {
			TimeMS int64       `json:"time_ms"`
			Events []hookEvent `json:"events"`
		}
		if err := json.Unmarshal(body, &b); err != nil || b.TimeMS == 0 || len(b.Events) == 0 {
			t.Errorf("webhook body %s: %v", body, err)
		}
		h.events = append(h.events, b.Events...)
		select {
		case h.added <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// waitFor waits up to timeout for an event that match accepts, and returns it.
func (h *hookReceiver) waitFor(what string, timeout time.Duration, match func(hookEvent) bool) hookEvent {
	h.t.Helper()
	return h.waitFrom(0, what, timeout, match)
}

// waitFrom is waitFor among the events from the index from on.
func (h *hookReceiver) waitFrom(from int, what string, timeout time.Duration, match func(hookEvent) bool) hookEvent {
	h.t.Helper()
	deadline := time.After(timeout)
	for {
		h.mu.Lock()
		i := slices.IndexFunc(h.events[from:], match)
		var e hookEvent
		if i >= 0 {
			e = h.events[from+i]
		}
		h.mu.Unlock()
		if i >= 0 {
			return e
		}
		select {
		case <-h.added:
		case <-deadline:
			h.mu.Lock()
			defer h.mu.Unlock()
			h.t.Fatalf("no %s webhook within %s; received %+v", what, timeout, h.events)
		}
	}
}

func (h *hookReceiver) received() []hookEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

func named(name, channel string) func(hookEvent) bool {
	return func(e hookEvent) bool { return e.Name == name && e.Channel == channel }
}

// TestWebhooksEveryEvent: a tenant's endpoint gets, signed with its
// signing key, channel_occupied when a channel gets its first subscriber,
// member_added and member_removed as users come and go on a presence
// channel over the WebSocket and SSE, client_event for a client's event
// (data as a string, the sender's user and connection), cache_miss for a
// Pusher subscription to an empty cache channel, and channel_vacated once
// the last subscriber has been gone for the grace period. Events the
// tenant did not choose are not sent; a changed choice applies at once.
func TestWebhooksEveryEvent(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.WebhookAllowPrivate = true // the receiver is on loopback
	in := newInstance(t, pool, cfg)
	acme := in.signup("Acme")
	hook := newHookReceiver(t, acme.SigningKey.Kid, acme.SigningKey.Secret)
	settings := `{"webhookUrl":"` + hook.srv.URL + `/pusher/webhook","clientEvents":true,"publicChannels":["cache-*"],
		"webhookEvents":["channel_occupied","channel_vacated","member_added","member_removed","client_event","cache_miss"]}`
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, settings); res.status != 200 {
		t.Fatalf("PATCH settings = %d %s", res.status, res.body)
	}

	c := client.New(in.url, acme.APIKey)
	ctx := t.Context()
	subscribe := func(sub string, transport client.Transport) *client.Subscription {
		t.Helper()
		tok, err := c.Mint(ctx, client.TokenRequest{Sub: sub, Channels: []string{"presence-room"}, Publish: []string{"presence-room"}})
		if err != nil {
			t.Fatal(err)
		}
		connected := make(chan struct{})
		var once sync.Once
		s, err := client.Subscribe(ctx, client.SubscribeOptions{
			URL: in.url, Channels: []string{"presence-room"}, Transports: []client.Transport{transport},
			Token: func(ctx context.Context) (string, error) { return tok.Token, nil },
			OnState: func(st client.State) {
				if st.Connected {
					once.Do(func() { close(connected) })
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-connected:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not connect over %s", sub, transport)
		}
		return s
	}

	ada := subscribe("ada", client.WebSocket)
	hook.waitFor("channel_occupied", 10*time.Second, named("channel_occupied", "presence-room"))
	hook.waitFor("member_added ada", 10*time.Second, func(e hookEvent) bool { return e.Name == "member_added" && e.UserID == "ada" })
	bo := subscribe("bo", client.SSE)
	hook.waitFor("member_added bo", 10*time.Second, func(e hookEvent) bool { return e.Name == "member_added" && e.UserID == "bo" })

	if _, err := ada.Publish(ctx, "presence-room", "client-typing", map[string]any{"typing": true}); err != nil {
		t.Fatal(err)
	}
	ce := hook.waitFor("client_event", 10*time.Second, named("client_event", "presence-room"))
	if ce.Event != "client-typing" || ce.UserID != "ada" || ce.Data != `{"typing":true}` || !strings.HasPrefix(ce.SocketID, "c_") {
		t.Errorf("client_event = %+v, want client-typing from ada with data as a string and her connection", ce)
	}

	ws := connectPusher(t, in.url, acme.SigningKey.Kid)
	ws.send("pusher:subscribe", map[string]any{"channel": "cache-prices"})
	ws.next("pusher_internal:subscription_succeeded")
	ws.next("pusher:cache_miss")
	hook.waitFor("cache_miss", 10*time.Second, named("cache_miss", "cache-prices"))

	bo.Close()
	hook.waitFor("member_removed bo", 10*time.Second, func(e hookEvent) bool { return e.Name == "member_removed" && e.UserID == "bo" })
	left := time.Now()
	ada.Close()
	hook.waitFor("channel_vacated", 20*time.Second, named("channel_vacated", "presence-room"))
	if since := time.Since(left); since < webhook.DefaultGrace {
		t.Errorf("channel_vacated %s after the last subscriber left, before the %s grace period", since, webhook.DefaultGrace)
	}

	// Per channel, in the order of what happened.
	var order []string
	for _, e := range hook.received() {
		if e.Channel == "presence-room" {
			order = append(order, e.Name+" "+e.UserID)
		}
	}
	removedAda := slices.Index(order, "member_removed ada")
	if removedAda < 0 || order[len(order)-1] != "channel_vacated " || slices.Index(order, "member_removed bo") > removedAda ||
		slices.Index(order, "member_added bo") > slices.Index(order, "client_event ada") {
		t.Errorf("presence-room's webhooks in the order %q", order)
	}

	// Only the chosen events: without member_*, a join sends none.
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"webhookEvents":["channel_occupied"]}`); res.status != 200 {
		t.Fatalf("PATCH settings = %d %s", res.status, res.body)
	}
	before := len(hook.received())
	cy := subscribe("cy", client.SSE)
	defer cy.Close()
	hook.waitFrom(before, "channel_occupied again", 10*time.Second, named("channel_occupied", "presence-room"))
	time.Sleep(2 * time.Second) // a member_added would have come with it
	for _, e := range hook.received()[before:] {
		if e.Name != "channel_occupied" {
			t.Errorf("sent %+v, which the tenant no longer takes", e)
		}
	}
	if hook.mu.Lock(); hook.bad != 0 {
		t.Errorf("%d webhooks failed the signature check", hook.bad)
	}
	hook.mu.Unlock()
}

// TestWebhookURLRefused: PATCH /v1/tenant/settings refuses a webhook URL
// that points, or resolves, to an internal address, or is plain http, with
// a 400 that says why, and keeps the one set before.
func TestWebhookURLRefused(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"webhookUrl":"https://hooks.example.com/pusher"}`); res.status != 200 {
		t.Fatalf("PATCH a public URL = %d %s", res.status, res.body)
	}
	for _, tc := range []struct{ url, says string }{
		{"https://127.0.0.1/hook", "loopback"},
		{"https://localhost:8443/hook", "loopback"}, // a name that resolves to it
		{"https://10.1.2.3/hook", "private"},
		{"https://169.254.169.254/latest/meta-data", "metadata"},
		{"https://[::1]/hook", "loopback"},
		{"https://[::ffff:127.0.0.1]/hook", "loopback"},
		{"http://hooks.example.com/pusher", "WEBHOOK_ALLOW_PRIVATE"},
	} {
		res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"webhookUrl":"`+tc.url+`"}`)
		if code := checkProblem(t, tc.url, res, 400); code != "invalid_webhook_url" {
			t.Errorf("%s: code %q, want invalid_webhook_url", tc.url, code)
		}
		if !strings.Contains(string(res.body), tc.says) {
			t.Errorf("%s: %s does not say %q", tc.url, res.body, tc.says)
		}
	}
	var got struct {
		Settings struct {
			WebhookURL string `json:"webhookUrl"`
		} `json:"settings"`
	}
	in.do("GET", "/v1/tenant", acme.APIKey, "").json(t, &got)
	if got.Settings.WebhookURL != "https://hooks.example.com/pusher" {
		t.Errorf("webhookUrl after refusals = %q", got.Settings.WebhookURL)
	}
}
