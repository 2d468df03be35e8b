package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/client"
	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// testProxy sits between a client and an instance and misbehaves on demand:
// refuse SSE, buffer SSE like a misconfigured proxy, or lose the response
// to the next publish after the instance has committed it.
type testProxy struct {
	url           string
	blockSSE      atomic.Bool
	bufferSSE     atomic.Bool
	dropNextReply atomic.Bool
	publishes     atomic.Int64
}

func newTestProxy(t *testing.T, target string) *testProxy {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // stream as it comes, unless told to buffer
	p := &testProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
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

// TestGoClientSubscribeFallback: the Go subscriber streams over SSE; when a
// proxy refuses SSE it falls back to polling, and when SSE works again it
// returns to it, with no event lost or repeated across the switches. A proxy
// that buffers the stream is noticed by the missing ready event.
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
		SSEFailures: 2, ReadyTimeout: 500 * time.Millisecond, RetrySSE: 700 * time.Millisecond, PollTimeout: time.Second,
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

	waitTransport(client.SSE)
	publish(5)
	got = append(got, collectEvents(t, sub, 5, 5*time.Second)...)

	proxy.blockSSE.Store(true)
	// Drop the live stream so the client must reconnect through the proxy.
	in.dropConnections()
	publish(5)
	got = append(got, collectEvents(t, sub, 5, 10*time.Second)...)
	waitTransport(client.Polling)
	publish(5)
	got = append(got, collectEvents(t, sub, 5, 10*time.Second)...)

	proxy.blockSSE.Store(false)
	waitTransport(client.SSE)
	publish(5)
	got = append(got, collectEvents(t, sub, 5, 10*time.Second)...)

	// A buffering proxy: the stream opens but nothing arrives.
	proxy.bufferSSE.Store(true)
	in.dropConnections()
	publish(5)
	got = append(got, collectEvents(t, sub, 5, 15*time.Second)...)
	waitTransport(client.Polling)

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
