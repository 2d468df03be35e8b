package main

// Webhooks as the outside sees them: hybridrt's real deliveries checked by
// the pusher Node library as a Pusher app checks them
// (testdata/pusher/webhook.mjs), and channel_occupied and channel_vacated
// decided across real api processes on one database, one of them SIGKILLed.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/client"
	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/webhook"
)

// everyWebhookEvent is every webhook event hybridrt sends, as a tenant's
// webhookEvents setting names them.
var everyWebhookEvent = []string{"channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "cache_miss"}

// nodeHooks is a Pusher app's webhook endpoint in Node (webhook.mjs): it
// checks each request with the pusher library and answers 200 when
// isValid(), 401 otherwise.
type nodeHooks struct {
	*pusherJS
	url string
}

// nodeRequest is one request as webhook.mjs reported it.
type nodeRequest struct {
	Valid  bool        `json:"valid"`
	Key    string      `json:"key"`
	Events []hookEvent `json:"events"` // getEvents(), when valid
	Time   int64       `json:"time"`   // getTime(), when valid
	Sent   int         `json:"sent"`   // the events in the body, valid or not
}

// startNodeHooks starts webhook.mjs as the Pusher app (appID, key, secret).
func startNodeHooks(t *testing.T, appID, key, secret string) *nodeHooks {
	t.Helper()
	p := startPusherDriver(t, "webhook.mjs", pusherConfig{AppID: appID, Key: key, Secret: secret})
	for _, l := range p.lines() {
		if port, ok := l["port"].(float64); ok && l["kind"] == "listening" {
			return &nodeHooks{p, fmt.Sprintf("http://127.0.0.1:%d/pusher/webhook", int(port))}
		}
	}
	t.Fatalf("webhook.mjs did not say where it listens\n%s", p.transcript())
	return nil
}

// requests is every request so far, in the order they arrived.
func (h *nodeHooks) requests() []nodeRequest {
	h.t.Helper()
	var rs []nodeRequest
	for _, l := range h.lines() {
		if l["kind"] != "webhook" {
			continue
		}
		b, _ := json.Marshal(l)
		var r nodeRequest
		if err := json.Unmarshal(b, &r); err != nil {
			h.t.Fatalf("webhook.mjs reported %s: %v", b, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// waitValid waits up to timeout for an event, in a request the library
// found valid, that match accepts.
func (h *nodeHooks) waitValid(what string, timeout time.Duration, match func(hookEvent) bool) {
	h.t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		for _, r := range h.requests() {
			if r.Valid && slices.ContainsFunc(r.Events, match) {
				return
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no valid webhook with %s within %v\n%s", what, timeout, h.transcript())
		}
	}
}

// waitQueued waits up to timeout for an event that match accepts among a
// tenant's webhooks waiting in the outbox: those sent to an endpoint that
// refuses them stay there.
func waitQueued(t *testing.T, pool *pgxpool.Pool, id tenant.ID, what string, timeout time.Duration, match func(hookEvent) bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		queued := outboxOf(t, pool, id)
		if slices.ContainsFunc(queued, match) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the outbox within %v; it holds %+v", what, timeout, queued)
		}
	}
}

// outboxOf is a tenant's webhook events not yet delivered, in order.
func outboxOf(t *testing.T, pool *pgxpool.Pool, id tenant.ID) []hookEvent {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT event::text FROM webhook_outbox WHERE tenant_id = $1 ORDER BY id`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var es []hookEvent
	for rows.Next() {
		var s string
		var e hookEvent
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(s), &e); err != nil {
			t.Fatalf("outbox event %s: %v", s, err)
		}
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return es
}

// sendEveryWebhookEvent makes the instance at url send tenant s (whose
// settings take every event, allow client events and the public cache-*
// channels) each kind of webhook event, as TestWebhooksEveryEvent does:
// occupied, member_added twice (WebSocket and SSE), client_event,
// cache_miss, member_removed twice, vacated. After each step it calls seen,
// which returns once hybridrt has the event.
func sendEveryWebhookEvent(t *testing.T, url string, s signedUp, seen func(what string, match func(hookEvent) bool)) {
	t.Helper()
	ctx := t.Context()
	c := client.New(url, s.APIKey)
	join := func(user string, transport client.Transport) *client.Subscription {
		t.Helper()
		tok, err := c.Mint(ctx, client.TokenRequest{Sub: user, Channels: []string{"presence-room"}, Publish: []string{"presence-room"}})
		if err != nil {
			t.Fatal(err)
		}
		connected := make(chan struct{})
		var once sync.Once
		sub, err := client.Subscribe(ctx, client.SubscribeOptions{
			URL: url, Channels: []string{"presence-room"}, Transports: []client.Transport{transport},
			Token: func(context.Context) (string, error) { return tok.Token, nil },
			OnState: func(st client.State) {
				if st.Connected {
					once.Do(func() { close(connected) })
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Close)
		select {
		case <-connected:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not connect over %s", user, transport)
		}
		return sub
	}
	member := func(name, user string) func(hookEvent) bool {
		return func(e hookEvent) bool { return e.Name == name && e.Channel == "presence-room" && e.UserID == user }
	}

	ada := join("ada", client.WebSocket)
	seen("channel_occupied", named("channel_occupied", "presence-room"))
	seen("member_added ada", member("member_added", "ada"))
	bo := join("bo", client.SSE)
	seen("member_added bo", member("member_added", "bo"))
	if _, err := ada.Publish(ctx, "presence-room", "client-typing", map[string]any{"typing": true}); err != nil {
		t.Fatal(err)
	}
	seen("client_event", func(e hookEvent) bool {
		return e.Name == "client_event" && e.Channel == "presence-room" && e.Event == "client-typing" && e.UserID == "ada" && e.Data == `{"typing":true}`
	})
	ws := connectPusher(t, url, s.SigningKey.Kid)
	ws.send("pusher:subscribe", map[string]any{"channel": "cache-prices"})
	ws.next("pusher_internal:subscription_succeeded")
	ws.next("pusher:cache_miss")
	seen("cache_miss", named("cache_miss", "cache-prices"))
	bo.Close()
	seen("member_removed bo", member("member_removed", "bo"))
	ada.Close()
	seen("member_removed ada", member("member_removed", "ada"))
	seen("channel_vacated", named("channel_vacated", "presence-room"))
}

// TestWebhooksValidInPusherLibrary: hybridrt's webhooks, every kind, reach
// an endpoint written with the pusher Node library (webhook.mjs), and
// pusher.webhook({headers, rawBody}).isValid() accepts every one when the
// app has the tenant's signing key and secret: getEvents() then holds each
// kind, and hybridrt records each request delivered. With a wrong secret
// the library refuses every request; the endpoint answers 401, and hybridrt
// records each attempt as retrying with status 401 and keeps the events.
func TestWebhooksValidInPusherLibrary(t *testing.T) {
	t.Parallel()
	pusherDir(t) // node, and the pusher library
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.WebhookAllowPrivate = true // the endpoints are on loopback
	in := newInstance(t, pool, cfg)
	setUp := func(name string, secret func(signedUp) string) (signedUp, *nodeHooks) {
		s := in.signup(name)
		hooks := startNodeHooks(t, s.Tenant.ID, s.SigningKey.Kid, secret(s))
		events, _ := json.Marshal(everyWebhookEvent)
		settings := `{"webhookUrl":"` + hooks.url + `","clientEvents":true,"publicChannels":["cache-*"],"webhookEvents":` + string(events) + `}`
		if res := in.do("PATCH", "/v1/tenant/settings", s.APIKey, settings); res.status != 200 {
			t.Fatalf("PATCH settings = %d %s", res.status, res.body)
		}
		return s, hooks
	}
	// Signed up here, not in the subtests: in fails the test it was made in.
	acme, right := setUp("Acme", func(s signedUp) string { return s.SigningKey.Secret })
	globex, wrong := setUp("Globex", func(signedUp) string { return "not-the-signing-secret" })

	t.Run("right secret", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		sendEveryWebhookEvent(t, in.url, acme, func(what string, match func(hookEvent) bool) {
			t.Helper()
			right.waitValid(what, 20*time.Second, match)
		})
		// Each request is recorded once it is answered: wait for the last.
		id := tenantIDOf(t, acme)
		var ds []webhook.Delivery
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			var err error
			if ds, err = webhook.Recent(t.Context(), pool, id, 500); err != nil {
				t.Fatal(err)
			}
			if len(ds) == len(right.requests()) && len(outboxOf(t, pool, id)) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d deliveries recorded for %d requests, %d events still in the outbox", len(ds), len(right.requests()), len(outboxOf(t, pool, id)))
			}
		}
		for _, d := range ds {
			if d.Outcome != "delivered" || d.Status != 200 || d.Error != "" {
				t.Errorf("delivery %+v, want delivered with 200", d)
			}
		}
		got := map[string]int{}
		seen := map[hookEvent]bool{}
		for _, r := range right.requests() {
			if !r.Valid || r.Key != acme.SigningKey.Kid || len(r.Events) == 0 || len(r.Events) != r.Sent || r.Time < start.UnixMilli()-1000 {
				t.Errorf("request %+v: want isValid() true, key %s, getEvents() all %d events, getTime() now", r, acme.SigningKey.Kid, r.Sent)
			}
			for _, e := range r.Events {
				got[e.Name]++
				if seen[e] {
					t.Errorf("%+v delivered twice", e)
				}
				seen[e] = true
			}
		}
		for _, name := range everyWebhookEvent {
			if got[name] == 0 {
				t.Errorf("no %s among the valid webhooks' getEvents(): %v", name, got)
			}
		}
		t.Logf("%d requests, all valid in the pusher library; events by name %v", len(right.requests()), got)
	})

	t.Run("wrong secret", func(t *testing.T) {
		t.Parallel()
		id := tenantIDOf(t, globex)
		sendEveryWebhookEvent(t, in.url, globex, func(what string, match func(hookEvent) bool) {
			t.Helper()
			waitQueued(t, pool, id, what, 20*time.Second, match)
		})
		// The first attempt and at least one retry (after 3 to 5 s), each
		// recorded once answered.
		var ds []webhook.Delivery
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			var err error
			if ds, err = webhook.Recent(t.Context(), pool, id, 500); err != nil {
				t.Fatal(err)
			}
			if n := len(wrong.requests()); n >= 2 && len(ds) == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d requests and %d deliveries recorded within 20 s, want at least 2 of each, as many", len(wrong.requests()), len(ds))
			}
		}
		for _, r := range wrong.requests() {
			if r.Valid || r.Key != globex.SigningKey.Kid || r.Sent == 0 {
				t.Errorf("request %+v with a wrong secret: want isValid() false, key %s, events in the body", r, globex.SigningKey.Kid)
			}
		}
		for _, d := range ds {
			if d.Outcome != "retrying" || d.Status != 401 || !strings.Contains(d.Error, "401") || d.NextRetryAt == "" {
				t.Errorf("delivery %+v, want retrying after a 401", d)
			}
		}
		got := map[string]bool{}
		for _, e := range outboxOf(t, pool, id) {
			got[e.Name] = true
		}
		for _, name := range everyWebhookEvent {
			if !got[name] {
				t.Errorf("no %s kept in the outbox for the retries: %v", name, got)
			}
		}
		t.Logf("%d requests, all invalid in the pusher library; %d attempts recorded retrying with 401", len(wrong.requests()), len(ds))
	})
}

// TestWebhookOccupancyAcrossInstances: subscribers of one channel come and
// go on two api processes on one database, and the tenant's endpoint is
// told channel_occupied when the channel gets its first subscriber
// anywhere and channel_vacated when it has none anywhere for the grace
// period: not when one instance's last subscriber leaves while another
// instance has one, not when the last one leaves and another comes back
// within the grace period, and, when the instance with the last
// subscriber is SIGKILLed, once its heartbeat is stale and the grace
// period over, exactly once. Each event arrives once, in order.
func TestWebhookOccupancyAcrossInstances(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewURL(t, true)
	procs := startProcs(t, 2, dbURL, "WEBHOOK_ALLOW_PRIVATE=true") // the receiver is on loopback
	p1, p2 := procs[0], procs[1]
	acme := setupTenant(t, p1, "Acme")
	hook := newHookReceiver(t, acme.SigningKey.Kid, acme.SigningKey.Secret)
	hc := &http.Client{Timeout: 10 * time.Second}
	// Set on p1 before p2 has read the tenant's settings: p2's cache would
	// otherwise keep the old ones, without a webhook URL, for up to
	// tenant.CacheTTL, and its worker would park the events it claimed.
	settings := `{"webhookUrl":"` + hook.srv.URL + `/pusher/webhook","webhookEvents":["channel_occupied","channel_vacated"]}`
	if status, body, err := httpCall(hc, "PATCH", p1.url+"/v1/tenant/settings", acme.APIKey, settings); err != nil || status != 200 {
		t.Fatalf("PATCH settings = %d %s (%v)", status, body, err)
	}
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	id := tenantIDOf(t, acme.signedUp)
	c := client.New(p1.url, acme.APIKey)

	// join subscribes user to "room" on p, where it is the only one, and
	// waits until p has written the connection, where every instance's
	// decider sees it.
	join := func(user string, p *apiProc, transport client.Transport) *client.Subscription {
		t.Helper()
		connected := make(chan struct{})
		var once sync.Once
		s, err := client.Subscribe(ctx, client.SubscribeOptions{
			URL: p.url, Channels: []string{"room"}, Transports: []client.Transport{transport},
			Token: func(ctx context.Context) (string, error) {
				tok, err := c.Mint(ctx, client.TokenRequest{Sub: user, Channels: []string{"room"}})
				return tok.Token, err
			},
			OnState: func(st client.State) {
				if st.Connected {
					once.Do(func() { close(connected) })
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		select {
		case <-connected:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not connect to instance %s over %s", user, p.name, transport)
		}
		waitRoomConns(t, pool, id, p, 1)
		return s
	}
	// occupancy is the occupancy events of "room" received so far, in order.
	occupancy := func() []string {
		var names []string
		for _, e := range hook.received() {
			if e.Channel == "room" {
				names = append(names, e.Name)
			}
		}
		return names
	}
	want := func(step string, names ...string) {
		t.Helper()
		if got := occupancy(); !slices.Equal(got, names) {
			t.Fatalf("%s: room's webhooks are %q, want %q", step, got, names)
		}
	}
	// A quiet spell, to show that something does not happen, lasts the
	// grace period and two more seconds: a registry flush and a decision
	// (a second each) and a delivery (the outbox's one-second batch window).
	quiet := webhook.DefaultGrace + 2*time.Second

	// A on instance 1: the channel is occupied.
	a := join("a", p1, client.SSE)
	hook.waitFor("channel_occupied", 10*time.Second, named("channel_occupied", "room"))
	// B on instance 2, then A leaves: B is still there.
	b := join("b", p2, client.WebSocket)
	a.Close()
	waitRoomConns(t, pool, id, p1, 0)
	time.Sleep(quiet)
	want("A left, B on the other instance", "channel_occupied")

	// B leaves, and C comes on instance 1 within the grace period, as a
	// reconnect would: the decider sees the channel empty, then full again.
	b.Close()
	waitEmptySince(t, pool, id, true, 5*time.Second)
	emptied := time.Now()
	cc := join("c", p1, client.WebSocket)
	waitEmptySince(t, pool, id, false, 5*time.Second)
	if gap := time.Since(emptied); gap >= webhook.DefaultGrace-time.Second {
		t.Fatalf("C took %v to count after the channel emptied: too close to the %v grace period for this test to say anything", gap, webhook.DefaultGrace)
	} else {
		t.Logf("C counted %v after the decider found the channel empty", gap.Round(time.Millisecond))
	}
	time.Sleep(quiet)
	want("B left and C came back within the grace period", "channel_occupied")

	// C moves to instance 2, the one to be killed: C there, then C here gone.
	c2 := join("c", p2, client.SSE)
	cc.Close()
	waitRoomConns(t, pool, id, p1, 0)
	want("C moved to instance 2", "channel_occupied")

	// Instance 2 dies with the channel's last subscriber. Its connections
	// count until its heartbeat is realtime.InstanceDead old; it beat at
	// most 5 s before the kill, so the channel cannot be vacated before
	// InstanceDead-5s plus the grace period after it.
	want("before the kill", "channel_occupied")
	p2.kill()
	killed := time.Now()
	hook.waitFor("channel_vacated", 45*time.Second, named("channel_vacated", "room"))
	took := time.Since(killed)
	if earliest := realtime.InstanceDead - 5*time.Second + webhook.DefaultGrace; took < earliest {
		t.Errorf("channel_vacated %v after the kill, before the earliest it could (%v)", took, earliest)
	}
	t.Logf("channel_vacated %v after the instance with the last subscriber was killed", took.Round(time.Millisecond))
	c2.Close() // it has been retrying the dead instance

	// The channel is occupied again, and vacated again, by D on the survivor.
	before := len(hook.received())
	d := join("d", p1, client.SSE)
	hook.waitFrom(before, "channel_occupied again", 10*time.Second, named("channel_occupied", "room"))
	d.Close()
	left := time.Now()
	hook.waitFrom(before, "channel_vacated again", 20*time.Second, named("channel_vacated", "room"))
	if since := time.Since(left); since < webhook.DefaultGrace {
		t.Errorf("channel_vacated %v after D left, before the %v grace period", since, webhook.DefaultGrace)
	}
	// Time for a second vacated to show, were one sent: the decider writes
	// webhook_channels and the outbox in one transaction, so a second one
	// would come from the next decision (a second later) and its batch (a
	// second's window). A redelivery after a lost acknowledgement would
	// take the worker's one-minute lease; the deliveries below show none
	// was lost.
	time.Sleep(3 * time.Second)
	want("the end", "channel_occupied", "channel_vacated", "channel_occupied", "channel_vacated")

	for _, e := range hook.received() {
		if e.Channel != "room" {
			t.Errorf("a webhook for %+v: no subscriber was ever on that channel", e)
		}
	}
	if hook.mu.Lock(); hook.bad != 0 {
		t.Errorf("%d webhooks failed the signature check", hook.bad)
	}
	hook.mu.Unlock()
	ds, err := webhook.Recent(ctx, pool, id, 500)
	if err != nil {
		t.Fatal(err)
	}
	events := 0
	for _, d := range ds {
		events += d.Events
		if d.Outcome != "delivered" {
			t.Errorf("delivery %+v, want every one delivered at the first attempt", d)
		}
	}
	if events != len(hook.received()) {
		t.Errorf("%d events recorded delivered, %d received", events, len(hook.received()))
	}
	if left := outboxOf(t, pool, id); len(left) != 0 {
		t.Errorf("events still in the outbox: %+v", left)
	}
	checkLogs(t, procs, acme.APIKey, acme.token, acme.SigningKey.Secret)
}

// waitRoomConns waits until instance p has written n connections of the
// tenant subscribed to "room".
func waitRoomConns(t *testing.T, pool *pgxpool.Pool, id tenant.ID, p *apiProc, n int) {
	t.Helper()
	var got int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := pool.QueryRow(t.Context(),
			`SELECT count(*) FROM connections WHERE instance_id = $1 AND tenant_id = $2 AND 'room' = ANY (channels)`,
			p.instanceID, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s has %d connections on room after 10 s, want %d", p.name, got, n)
		}
	}
}

// waitEmptySince waits until the decider has found "room" empty (its grace
// period running) or, with empty false, occupied again.
func waitEmptySince(t *testing.T, pool *pgxpool.Pool, id tenant.ID, empty bool, timeout time.Duration) {
	t.Helper()
	var got bool
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if err := pool.QueryRow(t.Context(),
			`SELECT empty_since IS NOT NULL FROM webhook_channels WHERE tenant_id = $1 AND channel = 'room'`, id).Scan(&got); err != nil {
			t.Fatalf("room's webhook_channels row: %v", err)
		}
		if got == empty {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("room's empty_since set = %v after %v, want %v", got, timeout, empty)
		}
	}
}
