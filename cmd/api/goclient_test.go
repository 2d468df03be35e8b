package main

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/client"
	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// testProxy sits between a client and an instance and misbehaves on demand:
// refuse SSE, buffer SSE like a misconfigured proxy, lose the response to
// the next publish after the instance has committed it, or cut every token
// renewal off. It counts what went through.
type testProxy struct {
	url           string
	blockWS       atomic.Bool // refuse WebSocket upgrades, as a proxy without WebSocket support does
	silentWS      atomic.Bool // accept the upgrade, then pass nothing either way
	blockSSE      atomic.Bool
	bufferSSE     atomic.Bool
	dropNextReply atomic.Bool
	breakRenew    atomic.Bool
	publishes     atomic.Int64

	sseConnects  atomic.Int64 // SSE requests
	renewOK      atomic.Int64 // renewals the instance accepted
	renewFailed  atomic.Int64 // renewals refused, or cut off by breakRenew
	polls        atomic.Int64
	expiredPolls atomic.Int64 // polls sent with a token past its exp
	refusedPolls atomic.Int64 // polls answered 401
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bearerExpired reports whether the JWT in an Authorization header is past
// its exp, read without verifying it.
func bearerExpired(t *testing.T, h string) bool {
	parts := strings.Split(strings.TrimPrefix(h, "Bearer "), ".")
	if len(parts) != 3 {
		t.Errorf("Authorization %q holds no JWT", h)
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct{ Exp float64 }
	if err != nil || json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		t.Errorf("JWT payload %q has no exp", parts[1])
		return false
	}
	return float64(time.Now().UnixMilli())/1000 >= claims.Exp
}

func newTestProxy(t *testing.T, target string) *testProxy {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // stream as it comes, unless told to buffer
	p := &testProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/realtime/sse" {
			p.sseConnects.Add(1)
		}
		renewal := r.Method == "POST" && strings.HasPrefix(r.URL.Path, "/api/realtime/connections/") && strings.HasSuffix(r.URL.Path, "/token")
		switch {
		case renewal && p.breakRenew.Load():
			p.renewFailed.Add(1)
			panic(http.ErrAbortHandler) // a network error, as the client sees it
		case renewal:
			rec := &statusRecorder{ResponseWriter: w}
			rp.ServeHTTP(rec, r)
			if rec.status == http.StatusOK {
				p.renewOK.Add(1)
			} else {
				p.renewFailed.Add(1)
			}
		case r.URL.Path == "/api/realtime/polling":
			p.polls.Add(1)
			if bearerExpired(t, r.Header.Get("Authorization")) {
				p.expiredPolls.Add(1)
			}
			rec := &statusRecorder{ResponseWriter: w}
			rp.ServeHTTP(rec, r)
			if rec.status == http.StatusUnauthorized {
				p.refusedPolls.Add(1)
			}
		case r.URL.Path == "/api/realtime/ws" && p.blockWS.Load():
			http.Error(w, "WebSocket not supported by the test proxy", http.StatusBadGateway)
		case r.URL.Path == "/api/realtime/ws" && p.silentWS.Load():
			// Answer the handshake itself, then hold the connection and
			// never say a word, as a proxy that drops the upgraded stream.
			nc, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			h := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(h[:]) + "\r\nSec-WebSocket-Protocol: hybridrt.v1\r\n\r\n")
			brw.Flush()
			go func() {
				defer nc.Close()
				_, _ = io.Copy(io.Discard, nc) // until the client gives up
			}()
		case r.URL.Path == "/api/realtime/sse" && p.blockSSE.Load():
			http.Error(w, "SSE blocked by the test proxy", http.StatusBadGateway)
		case r.URL.Path == "/api/realtime/sse" && p.bufferSSE.Load():
			// Read the stream but pass nothing on until it ends, as a proxy
			// that buffers whole responses does.
			req, _ := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), nil)
			req.Header = r.Header.Clone()
			if res, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		case r.Method == "POST" && r.URL.Path == "/v1/events" && p.dropNextReply.CompareAndSwap(true, false):
			p.publishes.Add(1)
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)        // the instance commits...
			panic(http.ErrAbortHandler) // ...and the reply is lost
		default:
			if r.Method == "POST" && r.URL.Path == "/v1/events" {
				p.publishes.Add(1)
			}
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func TestGoClientPublish(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	proxy := newTestProxy(t, in.url)
	c := client.New(proxy.url, acme.APIKey)
	ctx := t.Context()

	ids, err := c.Publish(ctx, client.EventInput{Channel: "broadcast", Type: "one", Data: map[string]int{"n": 1}})
	if err != nil || len(ids) != 1 {
		t.Fatalf("Publish = %v, %v", ids, err)
	}
	ids, err = c.PublishBatch(ctx, []client.EventInput{{Channel: "a", Type: "x"}, {Channels: []string{"b", "c"}, Type: "y"}})
	if err != nil || len(ids) != 3 {
		t.Fatalf("PublishBatch = %v, %v", ids, err)
	}
	_, err = c.PublishBatch(ctx, []client.EventInput{{Channel: "a", Type: "x"}, {Channel: "bad channel", Type: "y"}})
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Code != "invalid_channel" {
		t.Errorf("bad batch = %v, want a 400 invalid_channel *client.Error", err)
	}
	if _, err := c.Notify(ctx, "Hi", "there", []string{"42"}, nil); err != nil {
		t.Errorf("Notify: %v", err)
	}
	if _, err := c.UpdateDashboard(ctx, "STATS_UPDATED", map[string]int{"users": 1}); err != nil {
		t.Errorf("UpdateDashboard: %v", err)
	}

	// The reply to a committed publish is lost: the client retries with the
	// same Idempotency-Key, and exactly one event is stored.
	before := pgtest.Count(t, pool, `SELECT count(*) FROM events`)
	proxy.dropNextReply.Store(true)
	sent := proxy.publishes.Load()
	ids, err = c.Publish(ctx, client.EventInput{Channel: "broadcast", Type: "retried"})
	if err != nil || len(ids) != 1 {
		t.Fatalf("Publish with a lost reply = %v, %v", ids, err)
	}
	if n := proxy.publishes.Load() - sent; n != 2 {
		t.Errorf("the client sent %d requests, want 2 (one lost reply, one retry)", n)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events`) - before; n != 1 {
		t.Errorf("a retried publish stored %d events, want 1", n)
	}
	// An explicit key replays across calls.
	a, _ := c.Publish(ctx, client.EventInput{Channel: "x", Type: "t"}, client.WithIdempotencyKey("k1"))
	b, _ := c.Publish(ctx, client.EventInput{Channel: "x", Type: "t"}, client.WithIdempotencyKey("k1"))
	if len(a) != 1 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("same key twice = %v then %v", a, b)
	}

	tok, err := c.MintToken(ctx, "42", []string{"team:*"}, time.Hour)
	if err != nil || !strings.HasPrefix(tok.Token, "ey") || time.Until(tok.ExpiresAt) < 50*time.Minute {
		t.Errorf("MintToken = %+v, %v", tok, err)
	}
	head, err := c.Head(ctx)
	if err != nil || head == "" || head == "0" {
		t.Errorf("Head = %q, %v", head, err)
	}
	evs, next, err := c.History(ctx, "broadcast", "0", 100)
	if err != nil || len(evs) < 2 || next == "" || evs[0].Type != "one" {
		t.Errorf("History = %d events, %q, %v", len(evs), next, err)
	}
	if _, err := client.New(in.url, "hrt_wrong").Head(ctx); !errors.As(err, &apiErr) || apiErr.Status != 401 {
		t.Errorf("a wrong key = %v, want a 401 *client.Error", err)
	}
}

// collectEvents reads n events from a subscription, failing after timeout.
func collectEvents(t *testing.T, s *client.Subscription, n int, timeout time.Duration) []client.Event {
	t.Helper()
	var got []client.Event
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case e, ok := <-s.Events():
			if !ok {
				t.Fatalf("subscription ended after %d of %d events", len(got), n)
			}
			got = append(got, e)
		case <-deadline:
			t.Fatalf("got %d of %d events within %v (state %+v)", len(got), n, timeout, s.State())
		}
	}
	return got
}

// TestGoClientSubscribeFallback: the Go subscriber streams over the
// WebSocket; when a proxy refuses it, over SSE; when the proxy refuses SSE
// too, it polls; when they work again it returns to the WebSocket. A proxy
// that accepts the WebSocket and then passes nothing, or buffers the SSE
// stream, is noticed by the missing ready. No event is lost or repeated
// across any of the switches.
func TestGoClientSubscribeFallback(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	proxy := newTestProxy(t, in.url)
	c := client.New(in.url, acme.APIKey)
	ctx := t.Context()
	var tokens atomic.Int64
	opts := client.SubscribeOptions{
		URL: proxy.url, Channels: []string{"feed"},
		Token: func(ctx context.Context) (string, error) {
			tokens.Add(1)
			tok, err := c.MintToken(ctx, "u1", []string{"feed"}, time.Hour)
			return tok.Token, err
		},
		Failures: 2, ReadyTimeout: 500 * time.Millisecond, RetryBetter: 700 * time.Millisecond, PollTimeout: time.Second,
	}
	head, _ := c.Head(ctx)
	opts.Cursor = head
	sub, err := client.Subscribe(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	n := 0
	publish := func(k int) {
		for range k {
			n++
			if _, err := c.Publish(ctx, client.EventInput{Channel: "feed", Type: "item", Data: n}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitTransport := func(want client.Transport) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); sub.State().Transport != want; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("transport = %q after 10 s, want %q", sub.State().Transport, want)
			}
		}
	}
	var got []client.Event
	step := func(what string, want client.Transport, change func()) {
		t.Helper()
		change()
		in.dropConnections() // the client must reconnect through the proxy
		publish(5)
		got = append(got, collectEvents(t, sub, 5, 15*time.Second)...)
		waitTransport(want)
		publish(5)
		got = append(got, collectEvents(t, sub, 5, 10*time.Second)...)
		t.Logf("%s: on %s", what, want)
	}

	waitTransport(client.WebSocket)
	publish(5)
	got = append(got, collectEvents(t, sub, 5, 5*time.Second)...)
	step("WebSocket upgrade refused", client.SSE, func() { proxy.blockWS.Store(true) })
	step("SSE refused too", client.Polling, func() { proxy.blockSSE.Store(true) })
	step("both back", client.WebSocket, func() { proxy.blockWS.Store(false); proxy.blockSSE.Store(false) })
	step("WebSocket accepted, then silent", client.SSE, func() { proxy.silentWS.Store(true) })
	step("SSE buffered too", client.Polling, func() { proxy.bufferSSE.Store(true) })
	step("everything back", client.WebSocket, func() { proxy.silentWS.Store(false); proxy.bufferSSE.Store(false) })

	for i, e := range got {
		if string(e.Data) != fmt.Sprint(i+1) {
			t.Fatalf("event %d has data %s, want %d: lost or repeated across a switch", i, e.Data, i+1)
		}
	}
	select {
	case e := <-sub.Events():
		t.Errorf("extra event %+v", e)
	case <-time.After(300 * time.Millisecond):
	}
}

// shortTokens returns a SubscribeOptions.Token that mints tokens for
// channel feed living ttl, for subject subject(n) on its nth call; minted
// counts the calls.
func shortTokens(t *testing.T, c *client.Client, ttl time.Duration, minted *atomic.Int64, subject func(n int64) string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		n := minted.Add(1)
		tok, err := c.MintToken(ctx, subject(n), []string{"feed"}, ttl)
		oraclesOf(t).secret("subscriber token", tok.Token) // renewals must not log it either
		return tok.Token, err
	}
}

// stateLog records every state a subscription reports.
type stateLog struct {
	mu     sync.Mutex
	states []client.State
}

func (l *stateLog) add(s client.State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states = append(l.states, s)
}

// readies returns the connection ids of the streams (SSE or WebSocket) that became ready,
// in order (a failed renewal reports the same stream again, with an error).
func (l *stateLog) readies() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for _, s := range l.states {
		if s.Connected && s.Transport != client.Polling && s.Err == nil {
			ids = append(ids, s.ConnectionID)
		}
	}
	return ids
}

// renewErrors returns the errors reported while connected: failed renewals.
func (l *stateLog) renewErrors() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, s := range l.states {
		if s.Connected && s.Err != nil {
			errs = append(errs, s.Err)
		}
	}
	return errs
}

// feedPublisher publishes numbered events on feed: data 1, 2, 3, …
type feedPublisher struct {
	t *testing.T
	c *client.Client
	n int
}

func (p *feedPublisher) publish() {
	p.t.Helper()
	p.n++
	if _, err := p.c.Publish(p.t.Context(), client.EventInput{Channel: "feed", Type: "item", Data: p.n}); err != nil {
		p.t.Fatal(err)
	}
}

// until publishes an event every 150 ms until done says so, then three
// more, so events go out before, during and after every token change.
func (p *feedPublisher) until(what string, timeout time.Duration, done func() bool) {
	p.t.Helper()
	for deadline := time.Now().Add(timeout); !done(); time.Sleep(150 * time.Millisecond) {
		if time.Now().After(deadline) {
			p.t.Fatalf("not %s within %v", what, timeout)
		}
		p.publish()
	}
	for range 3 {
		p.publish()
		time.Sleep(150 * time.Millisecond)
	}
}

// checkAll reads the n events published so far from sub and checks that
// each arrived exactly once, in order, and nothing else did.
func (p *feedPublisher) checkAll(sub *client.Subscription) {
	p.t.Helper()
	got := collectEvents(p.t, sub, p.n, 15*time.Second)
	for i, e := range got {
		if string(e.Data) != fmt.Sprint(i+1) {
			p.t.Fatalf("event %d has data %s, want %d: lost or repeated across a token change", i, e.Data, i+1)
		}
	}
	select {
	case e := <-sub.Events():
		p.t.Errorf("extra event %+v", e)
	case <-time.After(300 * time.Millisecond):
	}
}

// waitState waits until the subscription's state satisfies ok.
func waitState(t *testing.T, sub *client.Subscription, what string, ok func(client.State) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(sub.State()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after 10 s: state %+v", what, sub.State())
		}
	}
}

// streamsEnded returns the reasons of the instance's "stream ended" log lines.
func streamsEnded(in *instance) []string {
	var reasons []string
	for _, l := range in.logLines("stream ended") {
		reasons = append(reasons, fmt.Sprint(l["reason"]))
	}
	return reasons
}

// tokenRig is a Go subscriber of channel feed, through the counting proxy,
// on tokens of subject that live ttl, connected over one transport.
type tokenRig struct {
	in     *instance
	proxy  *testProxy
	c      *client.Client
	sub    *client.Subscription
	states *stateLog
	minted *atomic.Int64 // tokens handed out
}

func newTokenRig(t *testing.T, transport client.Transport, ttl time.Duration, subject func(int64) string, breakRenew bool) *tokenRig {
	t.Helper()
	r := &tokenRig{states: &stateLog{}, minted: &atomic.Int64{}}
	r.in = newInstance(t, pgtest.NewDB(t), testConfig())
	acme := r.in.signup("Acme")
	r.proxy = newTestProxy(t, r.in.url)
	r.proxy.breakRenew.Store(breakRenew)
	r.c = client.New(r.in.url, acme.APIKey)
	head, err := r.c.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r.sub, err = client.Subscribe(t.Context(), client.SubscribeOptions{
		URL: r.proxy.url, Channels: []string{"feed"}, Cursor: head,
		Transports:  []client.Transport{transport}, // no other to hide a reconnect behind
		PollTimeout: 2 * time.Second,
		Token:       shortTokens(t, r.c, ttl, r.minted, subject),
		OnState:     r.states.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.sub.Close)
	waitState(t, r.sub, string(transport), func(s client.State) bool { return s.Connected && s.Transport == transport })
	return r
}

// TestGoClientRenewInPlace: with tokens that live 3 s, the Go subscriber
// renews each one in place (POST /api/realtime/connections/{id}/token)
// before it expires. The one SSE stream outlives several tokens: one
// connect, one ready, one connection id, no stream ended on the server,
// while the events published all along arrive exactly once, in order.
func TestGoClientRenewInPlace(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	r := newTokenRig(t, client.SSE, ttl, func(int64) string { return "u1" }, false)
	in, proxy, c, sub, states, minted := r.in, r.proxy, r.c, r.sub, r.states, r.minted
	first := sub.State().ConnectionID
	if !strings.HasPrefix(first, "c_") {
		t.Fatalf("State.ConnectionID = %q, want the ready event's c_… id", first)
	}
	start := time.Now()

	p := &feedPublisher{t: t, c: c}
	p.until("done", 30*time.Second, func() bool { return proxy.renewOK.Load() >= 3 || time.Since(start) > 5*ttl })
	p.checkAll(sub)

	if n := proxy.renewOK.Load(); n < 3 {
		t.Errorf("%d renewals in %v, want ≥ 3", n, time.Since(start))
	}
	// Each renewal comes about a third of a lifetime before its token's
	// expiry, so three take about two lifetimes; within one would be a storm.
	if d := time.Since(start); d < ttl {
		t.Errorf("3 renewals within %v, want them spread over the tokens' lifetimes (≥ %v)", d, ttl)
	}
	if n := proxy.sseConnects.Load(); n != 1 {
		t.Errorf("the client opened %d SSE streams, want 1 renewed in place", n)
	}
	if ids := states.readies(); len(ids) != 1 || ids[0] != first {
		t.Errorf("ready streams %v, want only %s", ids, first)
	}
	if s := sub.State(); !s.Connected || s.ConnectionID != first || s.Err != nil {
		t.Errorf("state after the renewals = %+v, want connected on %s without error", s, first)
	}
	if n := proxy.renewFailed.Load(); n != 0 {
		t.Errorf("%d renewals failed, want 0 (errors: %v)", n, states.renewErrors())
	}
	if n := minted.Load(); n < 4 {
		t.Errorf("Token called %d times, want ≥ 4 (one per renewal)", n)
	}
	if r := streamsEnded(in); len(r) != 0 {
		t.Errorf("streams ended on the server: %v, want none", r)
	}
	conns, err := c.Connections(t.Context())
	if err != nil || len(conns) != 1 || conns[0].ID != first || conns[0].Transport != "sse" {
		t.Errorf("Connections = %+v, %v, want the one SSE stream %s", conns, err, first)
	}
}

// TestGoClientRenewOverWebSocket: over the native WebSocket the Go
// subscriber renews its 3-second tokens in place ({"op":"token"}): one
// connection outlives several tokens, and the events published all along
// arrive exactly once, in order.
func TestGoClientRenewOverWebSocket(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	r := newTokenRig(t, client.WebSocket, ttl, func(int64) string { return "u1" }, false)
	c, sub, states, minted := r.c, r.sub, r.states, r.minted
	first := sub.State().ConnectionID
	start := time.Now()
	p := &feedPublisher{t: t, c: c}
	p.until("done", 30*time.Second, func() bool { return time.Since(start) > 5*ttl/2 })
	p.checkAll(sub)
	if n := minted.Load(); n < 3 {
		t.Errorf("Token called %d times in %v, want ≥ 3 (renewals)", n, time.Since(start))
	}
	if ids := states.readies(); len(ids) != 1 || ids[0] != first {
		t.Errorf("ready connections %v, want only %s", ids, first)
	}
	if s := sub.State(); !s.Connected || s.ConnectionID != first || s.Err != nil {
		t.Errorf("state after the renewals = %+v, want connected on %s without error", s, first)
	}
	conns, err := c.Connections(t.Context())
	if err != nil || len(conns) != 1 || conns[0].ID != first || conns[0].Transport != "ws" {
		t.Errorf("Connections = %+v, %v, want the one WebSocket %s", conns, err, first)
	}
}

// TestGoClientRenewFails: when a renewal fails, whether the service refuses
// the new token (it is another user's: 404) or the request never gets
// through, the stream ends with token_expired and the Go subscriber resumes
// with a new token from its cursor. Every event arrives exactly once, in
// order, across the reconnects; the failure shows in State.Err as ErrRenew.
func TestGoClientRenewFails(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		subject    func(int64) string
		breakRenew bool
	}{
		{name: "token refused", subject: func(n int64) string { return fmt.Sprintf("u%d", n) }},
		{name: "network error", subject: func(int64) string { return "u1" }, breakRenew: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newTokenRig(t, client.SSE, 3*time.Second, tt.subject, tt.breakRenew)
			in, proxy, c, sub, states := r.in, r.proxy, r.c, r.sub, r.states

			p := &feedPublisher{t: t, c: c}
			p.until("resumed twice", 30*time.Second, func() bool { return len(states.readies()) >= 3 })
			p.checkAll(sub)

			if n := proxy.renewOK.Load(); n != 0 {
				t.Errorf("%d renewals succeeded, want 0", n)
			}
			if n := proxy.renewFailed.Load(); n < 2 {
				t.Errorf("%d renewals tried, want ≥ 2 (one per stream)", n)
			}
			errs := states.renewErrors()
			if len(errs) < 2 {
				t.Errorf("renewal errors in State: %v, want ≥ 2", errs)
			}
			for _, err := range errs {
				if !errors.Is(err, client.ErrRenew) {
					t.Errorf("State.Err while connected = %v, want an ErrRenew", err)
				}
			}
			expired := 0
			for _, r := range streamsEnded(in) {
				if r == "token expired" {
					expired++
				}
			}
			if ids := states.readies(); expired < 2 || len(ids) != int(proxy.sseConnects.Load()) {
				t.Errorf("%d streams ended with token_expired, %d ready of %d connects, want ≥ 2 and every connect ready",
					expired, len(ids), proxy.sseConnects.Load())
			}
		})
	}
}

// TestGoClientPollFreshToken: a long-polling subscriber whose tokens live
// 3 s takes a new token before the current one expires, so no poll goes
// out with an expired token and none is refused, and every event arrives
// exactly once, in order.
func TestGoClientPollFreshToken(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	r := newTokenRig(t, client.Polling, ttl, func(int64) string { return "u1" }, false)
	proxy, c, sub, minted := r.proxy, r.c, r.sub, r.minted
	start := time.Now()

	p := &feedPublisher{t: t, c: c}
	p.until("done", 30*time.Second, func() bool { return time.Since(start) > 3*ttl })
	p.checkAll(sub)

	if n := minted.Load(); n < 4 {
		t.Errorf("Token called %d times in %v of %v tokens, want ≥ 4", n, time.Since(start), ttl)
	}
	if n := proxy.expiredPolls.Load(); n != 0 {
		t.Errorf("%d of %d polls went out with an expired token, want 0", n, proxy.polls.Load())
	}
	if n := proxy.refusedPolls.Load(); n != 0 {
		t.Errorf("%d polls were refused with 401, want 0", n)
	}
}
