package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

func TestPublishShapes(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("42", []string{"a", "b"}, 600)
	s := in.subscribe(acme.Tenant.ID, "42", []string{"a", "b"}, []string{"a", "b", "user:42", "dashboard", "broadcast"}, subscribeOpts{token: tok})
	s.connID()

	if ids := p.events(`{"channels":["a","b"],"type":"multi","data":1}`); len(ids) != 2 {
		t.Errorf("one event on two channels = %v, want 2 ids", ids)
	}
	if ids := p.events(`{"events":[{"channel":"a","type":"x"},{"channels":["a","b"],"type":"y"}]}`); len(ids) != 3 {
		t.Errorf("batch = %v, want 3 ids", ids)
	}
	res := in.do("POST", "/v1/notifications", acme.APIKey, `{"title":"Hi","message":"New order","userIds":["42","43"],"data":{"orderId":7}}`)
	if res.status != 201 {
		t.Fatalf("notifications = %d %s", res.status, res.body)
	}
	res = in.do("POST", "/v1/dashboard", acme.APIKey, `{"type":"STATS_UPDATED","data":{"users":3}}`)
	if res.status != 201 {
		t.Fatalf("dashboard = %d %s", res.status, res.body)
	}
	res = in.do("POST", "/api/realtime/test", acme.APIKey, "")
	if res.status != 201 {
		t.Fatalf("test event = %d %s", res.status, res.body)
	}
	got := s.collect(8, 5*time.Second)
	want := []string{"a multi 1", "b multi 1", "a x null", "a y null", "b y null",
		`user:42 notification {"title":"Hi","message":"New order","data":{"orderId":7}}`,
		`dashboard dashboard_update {"updateType":"STATS_UPDATED","data":{"users":3}}`}
	for i, w := range want {
		if g := got[i].Channel + " " + got[i].Type + " " + string(got[i].Data); g != w {
			t.Errorf("event %d = %s, want %s", i, g, w)
		}
	}
	if got[7].Channel != "broadcast" || got[7].Type != "test" {
		t.Errorf("test event = %+v, want type test on broadcast", got[7])
	}
	s.quiet(200 * time.Millisecond) // user:43's notification is not ours
}

// TestIdempotency: a retried publish with the same Idempotency-Key returns
// the first result and stores nothing new, on any instance, even when the
// retries race; the same key with another body is 422.
func TestIdempotency(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	a, b := newInstance(t, pool, testConfig()), newInstance(t, pool, testConfig())
	acme, other := a.signup("Acme"), a.signup("Other")
	body := `{"channel":"broadcast","type":"order","data":{"n":1}}`

	first := a.do("POST", "/v1/events", acme.APIKey, body, "Idempotency-Key", "order-1")
	again := b.do("POST", "/v1/events", acme.APIKey, body, "Idempotency-Key", "order-1")
	if first.status != 201 || again.status != 201 || string(first.body) != string(again.body) {
		t.Fatalf("retry = %d %s, first = %d %s; want the same 201", again.status, again.body, first.status, first.body)
	}
	if again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay lacks Idempotent-Replayed: true")
	}
	checkProblem(t, "same key, other body", a.do("POST", "/v1/events", acme.APIKey, `{"channel":"broadcast","type":"order","data":{"n":2}}`, "Idempotency-Key", "order-1"), 422)
	// Tenants' keys are independent.
	if res := a.do("POST", "/v1/events", other.APIKey, body, "Idempotency-Key", "order-1"); res.status != 201 || res.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("another tenant's same key = %d replayed=%q, want a fresh 201", res.status, res.header.Get("Idempotent-Replayed"))
	}

	// 20 concurrent retries over two instances: one event, one answer.
	var wg sync.WaitGroup
	answers := make(chan string, 20)
	for i := range 20 {
		in := a
		if i%2 == 1 {
			in = b
		}
		wg.Go(func() {
			res := in.do("POST", "/v1/events", acme.APIKey, `{"channel":"broadcast","type":"race"}`, "Idempotency-Key", "race-1")
			answers <- fmt.Sprint(res.status, " ", string(res.body))
		})
	}
	wg.Wait()
	close(answers)
	seen := map[string]int{}
	for a := range answers {
		seen[a]++
	}
	if len(seen) != 1 {
		t.Errorf("concurrent retries got different answers: %v", seen)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events WHERE type = 'race'`); n != 1 {
		t.Errorf("concurrent retries stored %d events, want 1", n)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events WHERE type = 'order'`); n != 2 {
		t.Errorf("stored %d order events, want 2 (acme once, other once)", n)
	}
	// An expired key is new again.
	if _, err := pool.Exec(t.Context(), `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'order-1'`); err != nil {
		t.Fatal(err)
	}
	if res := a.do("POST", "/v1/events", acme.APIKey, body, "Idempotency-Key", "order-1"); res.status != 201 || res.header.Get("Idempotent-Replayed") != "" || string(res.body) == string(first.body) {
		t.Errorf("key after 24 h = %d %s, want a new event", res.status, res.body)
	}
}

// TestRealtimeBadInput: every bad request to the publish, history, token and
// subscribe endpoints gets a 4xx problem, publishes nothing and streams
// nothing.
func TestRealtimeBadInput(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.Publish.MaxBatch = 10
	in := newInstance(t, pool, cfg)
	acme := in.signup("Acme")
	p := in.publisher(acme)
	key := acme.APIKey
	p.events(`{"channel":"broadcast","type":"seed"}`)
	tok := p.token("u1", []string{"team:*"}, 600)

	big := strings.Repeat("x", 64<<10)
	type call struct {
		name, method, path, bearer, body string
		header                           []string
		want                             int
	}
	calls := []call{
		{"no channel", "POST", "/v1/events", key, `{"type":"t"}`, nil, 400},
		{"channel and channels", "POST", "/v1/events", key, `{"channel":"a","channels":["b"],"type":"t"}`, nil, 400},
		{"empty channels", "POST", "/v1/events", key, `{"channels":[],"type":"t"}`, nil, 400},
		{"bad channel", "POST", "/v1/events", key, `{"channel":"a b","type":"t"}`, nil, 400},
		{"channel with slash", "POST", "/v1/events", key, `{"channel":"t/B/x","type":"t"}`, nil, 400},
		{"wildcard channel", "POST", "/v1/events", key, `{"channel":"*","type":"t"}`, nil, 400},
		{"channel with CR", "POST", "/v1/events", key, `{"channel":"a\r","type":"t"}`, nil, 400},
		{"cyrillic channel", "POST", "/v1/events", key, `{"channel":"а","type":"t"}`, nil, 400},
		{"long channel", "POST", "/v1/events", key, `{"channel":"` + strings.Repeat("c", 201) + `","type":"t"}`, nil, 400},
		{"no type", "POST", "/v1/events", key, `{"channel":"a"}`, nil, 400},
		{"type injection", "POST", "/v1/events", key, `{"channel":"a","type":"message\ndata: pwned"}`, nil, 400},
		{"type CRLF id", "POST", "/v1/events", key, `{"channel":"a","type":"x\r\nid: 999999"}`, nil, 400},
		{"type NUL", "POST", "/v1/events", key, `{"channel":"a","type":"x\u0000"}`, nil, 400},
		{"system type ready", "POST", "/v1/events", key, `{"channel":"a","type":"ready"}`, nil, 400},
		{"system type resync", "POST", "/v1/events", key, `{"channel":"a","type":"resync"}`, nil, 400},
		{"system type token_expired", "POST", "/v1/events", key, `{"channel":"a","type":"token_expired"}`, nil, 400},
		{"tenant in body", "POST", "/v1/events", key, `{"channel":"a","type":"t","tenantId":"2"}`, nil, 400},
		{"data too large", "POST", "/v1/events", key, `{"channel":"a","type":"t","data":"` + big + `"}`, nil, 413},
		{"batch too large", "POST", "/v1/events", key, `{"events":[` + strings.Repeat(`{"channel":"a","type":"t"},`, 10) + `{"channel":"a","type":"t"}]}`, nil, 413},
		{"channels expand past the batch", "POST", "/v1/events", key, `{"channels":["a","b","c","d","e","f","g","h","i","j","k"],"type":"t"}`, nil, 413},
		{"bad event mid-batch", "POST", "/v1/events", key, `{"events":[{"channel":"a","type":"t"},{"channel":"a b","type":"t"}]}`, nil, 400},
		{"events and single", "POST", "/v1/events", key, `{"events":[{"channel":"a","type":"t"}],"channel":"a"}`, nil, 400},
		{"empty events", "POST", "/v1/events", key, `{"events":[]}`, nil, 400},
		{"trailing data", "POST", "/v1/events", key, `{"channel":"a","type":"t"} {}`, nil, 400},
		{"null", "POST", "/v1/events", key, `null`, nil, 400},
		{"no content type", "POST", "/v1/events", key, `{"channel":"a","type":"t"}`, []string{"Content-Type", ""}, 415},
		{"idempotency key too long", "POST", "/v1/events", key, `{"channel":"a","type":"t"}`, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400},
		{"idempotency key non-ascii", "POST", "/v1/events", key, `{"channel":"a","type":"t"}`, []string{"Idempotency-Key", "ключ"}, 400},
		{"two idempotency keys", "POST", "/v1/events", key, `{"channel":"a","type":"t"}`, []string{"Idempotency-Key", "a", "Idempotency-Key", "b"}, 400},
		{"no key", "POST", "/v1/events", "", `{"channel":"a","type":"t"}`, nil, 401},
		{"subscriber token as key", "POST", "/v1/events", tok, `{"channel":"a","type":"t"}`, nil, 401},
		{"notification without users", "POST", "/v1/notifications", key, `{"title":"x","userIds":[]}`, nil, 400},
		{"notification bad user", "POST", "/v1/notifications", key, `{"title":"x","userIds":["a b"]}`, nil, 400},
		{"notification empty", "POST", "/v1/notifications", key, `{"userIds":["1"]}`, nil, 400},
		{"dashboard without type", "POST", "/v1/dashboard", key, `{"data":{}}`, nil, 400},
		{"test with bad channel", "POST", "/api/realtime/test", key, `{"channel":"#"}`, nil, 400},
		{"test without key", "POST", "/api/realtime/test", "", ``, nil, 401},
		{"history bad after", "GET", "/v1/events?after=-1", key, "", nil, 400},
		{"history bad limit", "GET", "/v1/events?limit=5000", key, "", nil, 400},
		{"history bad channel", "GET", "/v1/events?channel=a%2Fb", key, "", nil, 400},
		{"token without sub", "POST", "/v1/tokens", key, `{"channels":["a"]}`, nil, 400},
		{"token sub with control", "POST", "/v1/tokens", key, `{"sub":"a\u0007"}`, nil, 400},
		{"token bad grant", "POST", "/v1/tokens", key, `{"sub":"a","channels":["*"]}`, nil, 400},
		{"token negative ttl", "POST", "/v1/tokens", key, `{"sub":"a","ttl":-5}`, nil, 400},
		{"ticket with api key", "POST", "/api/realtime/tickets", key, "", nil, 401},
		{"ticket without token", "POST", "/api/realtime/tickets", "", "", nil, 401},
		{"sse without channels", "GET", "/api/realtime/sse", tok, "", nil, 400},
		{"sse bad channel", "GET", "/api/realtime/sse?channels=a%20b", tok, "", nil, 400},
		{"sse too many channels", "GET", "/api/realtime/sse?channels=" + strings.Repeat("team:x,", 100) + "team:y," + manyChannels(100), tok, "", nil, 400},
		{"sse garbage Last-Event-ID", "GET", "/api/realtime/sse?channels=broadcast", tok, "", []string{"Last-Event-ID", "garbage"}, 400},
		{"sse negative Last-Event-ID", "GET", "/api/realtime/sse?channels=broadcast", tok, "", []string{"Last-Event-ID", "-1"}, 400},
		{"sse huge Last-Event-ID", "GET", "/api/realtime/sse?channels=broadcast", tok, "", []string{"Last-Event-ID", "1e30"}, 400},
		{"sse Last-Event-ID past head", "GET", "/api/realtime/sse?channels=broadcast", tok, "", []string{"Last-Event-ID", "999"}, 400},
		{"sse user:* channel", "GET", "/api/realtime/sse?channels=user:*", tok, "", nil, 400},
		{"sse other user", "GET", "/api/realtime/sse?channels=user:u2", tok, "", nil, 403},
		{"sse POST", "POST", "/api/realtime/sse?channels=broadcast", tok, "", nil, 405},
		{"sse api key", "GET", "/api/realtime/sse?channels=broadcast", key, "", nil, 401},
		{"poll cursor past head", "GET", "/api/realtime/polling?channels=broadcast&cursor=999", tok, "", nil, 400},
		{"poll cursor not a number", "GET", "/api/realtime/polling?channels=broadcast&cursor=abc", tok, "", nil, 400},
		{"poll bad timeout", "GET", "/api/realtime/polling?channels=broadcast&timeout=soon", tok, "", nil, 400},
		{"poll without token", "GET", "/api/realtime/polling?channels=broadcast", "", "", nil, 401},
	}
	head := p.head()
	for _, c := range calls {
		res := in.do(c.method, c.path, c.bearer, c.body, c.header...)
		checkProblem(t, c.name, res, c.want)
		if h := p.head(); h != head {
			t.Fatalf("%s published something: head %d, want %d", c.name, h, head)
		}
	}
	// A long timeout is clamped, not refused.
	start := time.Now()
	res := in.do("GET", "/api/realtime/polling?channels=broadcast&timeout=999999&cursor=0", tok, "")
	if res.status != http.StatusOK || time.Since(start) > 5*time.Second {
		t.Errorf("poll with timeout=999999 and events waiting = %d after %v", res.status, time.Since(start))
	}
}

func manyChannels(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "team:%d,", i)
	}
	return strings.TrimSuffix(b.String(), ",")
}
