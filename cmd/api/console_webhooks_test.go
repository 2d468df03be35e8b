package main

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/webhook"
)

// hookRequest is one webhook an endpoint received.
type hookRequest struct {
	header http.Header
	body   []byte
}

// hookEndpoint is a tenant's webhook endpoint: it answers status (200
// unless set) and hands every request it got to received.
type hookEndpoint struct {
	*httptest.Server
	status   atomic.Int32
	received chan hookRequest
}

func newHookEndpoint(t *testing.T) *hookEndpoint {
	t.Helper()
	e := &hookEndpoint{received: make(chan hookRequest, 100)}
	e.status.Store(http.StatusOK)
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case e.received <- hookRequest{header: r.Header.Clone(), body: body}:
		default: // the test stopped listening
		}
		w.WriteHeader(int(e.status.Load()))
	}))
	t.Cleanup(e.Close)
	return e
}

// webhookEvents decodes a webhook's body, checking its shape.
func webhookEvents(t *testing.T, body []byte) []webhook.Event {
	t.Helper()
	var b struct {
		TimeMS int64           `json:"time_ms"`
		Events []webhook.Event `json:"events"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.TimeMS == 0 || len(b.Events) == 0 {
		t.Fatalf("webhook body %s: %v; want time_ms and events", body, err)
	}
	return b.Events
}

// checkSigned fails the test unless req carries signed's Pusher key and a
// signature of its body made with its secret.
func checkSigned(t *testing.T, req hookRequest, signed signedUp) {
	t.Helper()
	if got := req.header.Get(webhook.HeaderKey); got != signed.SigningKey.Kid {
		t.Errorf("%s = %q, want the signing key %q", webhook.HeaderKey, got, signed.SigningKey.Kid)
	}
	if got, want := req.header.Get(webhook.HeaderSignature), webhook.Sign(signed.SigningKey.Secret, req.body); got != want {
		t.Errorf("%s = %q, want %q (HMAC-SHA256 of the body with the signing secret)", webhook.HeaderSignature, got, want)
	}
}

var deliveryRow = regexp.MustCompile(`<tr data-delivery="\d+" data-outcome="([a-z]+)">(?s:.*?)</tr>`)

// deliveryRows returns the outcomes of the deliveries table's rows and the
// rows themselves, newest first.
func deliveryRows(body string) (outcomes, rows []string) {
	for _, m := range deliveryRow.FindAllStringSubmatch(body, -1) {
		outcomes, rows = append(outcomes, m[1]), append(rows, m[0])
	}
	return outcomes, rows
}

// TestConsoleWebhookSettings: the webhooks page shows the settings form,
// how webhooks are signed and an empty deliveries table; its form saves
// webhookUrl and webhookEvents (only with the CSRF token), as GET
// /v1/tenant then shows, and refuses internal addresses and plain http
// with the reason under the field, the typed values kept and nothing
// changed.
func TestConsoleWebhookSettings(t *testing.T) {
	t.Parallel()
	cfg := testConfig() // WEBHOOK_ALLOW_PRIVATE off
	in := newInstance(t, pgtest.NewDB(t), cfg)
	acme, other := in.signup("Acme"), in.signup("Other")
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"publicChannels":["news"],"clientEvents":true}`); res.status != 200 {
		t.Fatalf("PATCH settings = %d %s", res.status, res.body)
	}

	b := in.browser()
	b.login(acme.APIKey)
	code, body, h := b.get("/console/webhooks")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /console/webhooks = %d %s", code, h.Get("Content-Type"))
	}
	for _, want := range []string{
		`<a href="/console/webhooks" aria-current="page">Webhooks</a>`,
		`<form method="post" action="/console/webhooks/settings"`, `name="csrf" value="` + b.csrf + `"`,
		`<label for="f-webhookUrl">`, `id="f-webhookUrl" name="webhookUrl" type="url" value=""`, `<legend>Events</legend>`,
		`Webhooks are off`, "X-Pusher-Key", "X-Pusher-Signature", "docs/webhooks.md", "at least once",
		`data-testid="webhook-key">` + acme.SigningKey.Kid + `<`,
		`id="webhook-test-button"`, `hx-get="/console/webhooks/deliveries" hx-trigger="every 3s"`,
		`<caption class="sr-only">`, "No webhook has been sent yet.", `data-testid="parked">0 events<`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /console/webhooks lacks %q", want)
		}
	}
	for _, name := range []string{"channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "cache_miss"} {
		if !strings.Contains(body, `name="webhookEvents" value="`+name+`">`) {
			t.Errorf("GET /console/webhooks has no unticked box for %s", name)
		}
	}
	for _, leak := range []string{acme.SigningKey.Secret, other.SigningKey.Kid, "webhook-retry-button"} {
		if strings.Contains(body, leak) {
			t.Errorf("GET /console/webhooks shows %q", leak)
		}
	}

	defaults := settingsJSON(t, `{"publicChannels":["news"],"clientEvents":true,"webhookUrl":"","webhookEvents":[]}`)
	good := url.Values{"webhookUrl": {" https://example.com/hook?key=abc "}, "webhookEvents": {"member_added", "channel_occupied", "member_added"}}

	// Without the CSRF token: refused, nothing changed.
	forged := url.Values{"csrf": {"forged"}}
	for k, v := range good {
		forged[k] = v
	}
	if code, _, _ := b.post("/console/webhooks/settings", forged); code != http.StatusForbidden {
		t.Errorf("settings without the CSRF token = %d, want 403", code)
	}
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, defaults) {
		t.Errorf("settings after a forged form = %v, want %v", got, defaults)
	}

	// Saved: the URL trimmed, each event once, the Pusher settings kept.
	code, body, _ = b.post("/console/webhooks/settings", good)
	for _, want := range []string{`role="status" class="flash success">Settings saved.<`, `value="https://example.com/hook?key=abc"`,
		`value="channel_occupied" checked`, `value="member_added" checked`, `value="cache_miss">`} {
		if code != 200 || !strings.Contains(html.UnescapeString(body), want) {
			t.Errorf("saving the settings = %d, lacks %q", code, want)
		}
	}
	if strings.Contains(body, "Webhooks are off") {
		t.Errorf("the page says webhooks are off after a URL was saved")
	}
	saved := settingsJSON(t, `{"publicChannels":["news"],"clientEvents":true,"webhookUrl":"https://example.com/hook?key=abc","webhookEvents":["member_added","channel_occupied"]}`)
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, saved) {
		t.Errorf("settings after the form = %v, want %v", got, saved)
	}
	if _, body, _ := b.get("/console/webhooks"); !strings.Contains(html.UnescapeString(body), `value="https://example.com/hook?key=abc"`) || !strings.Contains(body, `value="member_added" checked`) {
		t.Errorf("GET /console/webhooks does not show the saved settings")
	}

	// Refused: internal addresses and plain http, the reason under the
	// field, the typed values kept, nothing changed.
	for _, tc := range []struct{ url, reason string }{
		{"https://127.0.0.1/x", "127.0.0.1, a loopback address"},
		{"https://169.254.169.254/latest", "169.254.169.254, the cloud metadata address"},
		{"https://[::1]/x", "::1, a loopback address"},
		{"https://10.1.2.3/", "10.1.2.3, a private address"},
		{"http://example.com/", "must use https"},
	} {
		code, body, _ := b.post("/console/webhooks/settings", url.Values{"webhookUrl": {tc.url}, "webhookEvents": {"cache_miss"}})
		text := html.UnescapeString(body)
		for _, want := range []string{`aria-invalid="true"`, `aria-describedby="e-webhookUrl h-webhookUrl"`, `<p class="field-error" id="e-webhookUrl">Webhook URL `,
			tc.reason, `value="` + tc.url + `"`, `value="cache_miss" checked`} {
			if code != 200 || !strings.Contains(text, want) {
				t.Errorf("settings with %s = %d, lacks %q", tc.url, code, want)
			}
		}
		if strings.Contains(text, "Settings saved.") {
			t.Errorf("settings with %s: the page says they were saved", tc.url)
		}
		if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, saved) {
			t.Errorf("settings after refusing %s = %v, want %v", tc.url, got, saved)
		}
	}
	// An event no webhook sends (a forged form): refused under the events.
	code, body, _ = b.post("/console/webhooks/settings", url.Values{"webhookUrl": {"https://example.com/other"}, "webhookEvents": {"member_added", "pusher:nope"}})
	if text := html.UnescapeString(body); code != 200 || !strings.Contains(text, `<p class="field-error" id="e-webhookEvents">"pusher:nope" is not one of`) ||
		!strings.Contains(body, `<fieldset aria-describedby="e-webhookEvents">`) {
		t.Errorf("settings with an unknown event = %d, no error under the events", code)
	}
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, saved) {
		t.Errorf("settings after refusing an unknown event = %v, want %v", got, saved)
	}

	// An empty URL turns webhooks off.
	code, body, _ = b.post("/console/webhooks/settings", url.Values{"webhookUrl": {""}, "webhookEvents": {"cache_miss"}})
	if code != 200 || !strings.Contains(body, "Settings saved: webhooks are off.") || !strings.Contains(body, "Webhooks are off") {
		t.Errorf("emptying the URL = %d, does not say webhooks are off", code)
	}
	off := settingsJSON(t, `{"publicChannels":["news"],"clientEvents":true,"webhookUrl":"","webhookEvents":["cache_miss"]}`)
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, off) {
		t.Errorf("settings after emptying the URL = %v, want %v", got, off)
	}
	if got := settingsOf(t, in, other.APIKey); got["webhookUrl"] != "" || len(got["webhookEvents"].([]any)) != 0 {
		t.Errorf("the other tenant's settings = %v, want the defaults", got)
	}
	// With no URL, neither button sends anything.
	if _, body, _ := b.post("/console/webhooks/test", nil); !strings.Contains(body, "There is no webhook URL to send to") {
		t.Errorf("a test webhook without a URL does not say there is none")
	}
	if _, body, _ := b.post("/console/webhooks/retry", nil); !strings.Contains(body, `class="flash error">There is no webhook URL to send to`) {
		t.Errorf("retry now without a URL does not say there is none")
	}

	// The deliveries fragment alone; the page and forms are the console's.
	if code, body, _ := b.get("/console/webhooks/deliveries"); code != 200 || strings.Contains(body, "<html") || !strings.Contains(body, `id="webhook-deliveries"`) {
		t.Errorf("GET /console/webhooks/deliveries = %d, not the fragment alone", code)
	}
	anon := in.browser()
	if code, _, h := anon.get("/console/webhooks"); code != http.StatusSeeOther || h.Get("Location") != "/console/login" {
		t.Errorf("GET /console/webhooks without a session = %d %s", code, h.Get("Location"))
	}
	for _, path := range []string{"/console/webhooks/settings", "/console/webhooks/test", "/console/webhooks/retry"} {
		if code, _, _ := anon.post(path, url.Values{"webhookUrl": {"https://example.com/"}}); code != http.StatusUnauthorized {
			t.Errorf("POST %s without a session = %d, want 401", path, code)
		}
	}
}

// TestConsoleWebhookTest: "Send a test webhook" posts a signed webhook to
// the saved URL at once (its X-Pusher-Signature verifies with the signing
// secret) and shows the endpoint's answer, a 200 or a 500, or why none
// came; the deliveries table lists each test.
func TestConsoleWebhookTest(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.WebhookAllowPrivate = true // the endpoint is on 127.0.0.1, over http
	in := newInstance(t, pgtest.NewDB(t), cfg)
	acme := in.signup("Acme")
	ep := newHookEndpoint(t)

	b := in.browser()
	b.login(acme.APIKey)
	hook := ep.URL + "/hooks/acme?token=s3cret"
	if code, body, _ := b.post("/console/webhooks/settings", url.Values{"webhookUrl": {hook}}); code != 200 || !strings.Contains(body, "Settings saved.") || !strings.Contains(body, "No event is chosen") {
		t.Fatalf("saving an http URL with WEBHOOK_ALLOW_PRIVATE = %d, %.300s", code, body)
	}

	// Without the CSRF token: refused, nothing sent.
	if code, _, _ := b.post("/console/webhooks/test", url.Values{"csrf": {"forged"}}); code != http.StatusForbidden {
		t.Errorf("a test webhook without the CSRF token = %d, want 403", code)
	}
	select {
	case req := <-ep.received:
		t.Fatalf("a forged form sent a webhook: %s", req.body)
	default:
	}

	code, body, _ := b.post("/console/webhooks/test", nil)
	if code != 200 || !strings.Contains(body, `data-testid="test-result" class="flash success">Your endpoint answered 200 in `) {
		t.Errorf("a test webhook = %d, does not show the 200: %.2000s", code, body)
	}
	select {
	case req := <-ep.received:
		checkSigned(t, req, acme)
		if ev := webhookEvents(t, req.body); len(ev) != 1 || ev[0].Name != "channel_occupied" || ev[0].Channel != webhook.TestChannel {
			t.Errorf("the test webhook's events = %+v, want one channel_occupied of %s", ev, webhook.TestChannel)
		}
		if ct := req.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("the test webhook's Content-Type = %q", ct)
		}
	default:
		t.Fatal("the endpoint got no test webhook, yet the page answered")
	}

	ep.status.Store(http.StatusInternalServerError)
	code, body, _ = b.post("/console/webhooks/test", nil)
	if code != 200 || !strings.Contains(body, `data-testid="test-result" class="flash error">Your endpoint answered 500 Internal Server Error in `) {
		t.Errorf("a test webhook answered 500 = %d, does not say so", code)
	}
	if req := <-ep.received; req.header.Get(webhook.HeaderSignature) == "" {
		t.Errorf("the second test webhook is not signed")
	}

	// Nobody answering: the sender's reason, which names the host but not
	// the path or query.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	if code, _, _ := b.post("/console/webhooks/settings", url.Values{"webhookUrl": {dead.URL + "/hooks?token=s3cret"}}); code != 200 {
		t.Fatalf("saving the dead URL = %d", code)
	}
	_, body, _ = b.post("/console/webhooks/test", nil)
	result := regexp.MustCompile(`data-testid="test-result" class="flash error">([^<]*)<`).FindStringSubmatch(body)
	if result == nil || !strings.HasPrefix(result[1], "The test webhook was not delivered: ") || strings.Contains(result[1], "s3cret") {
		t.Errorf("a test webhook to a closed port does not say why it failed, or shows the URL's query: %q", result)
	}

	// The table lists the three tests, newest first, with their statuses.
	_, body, _ = b.get("/console/webhooks/deliveries")
	outcomes, rows := deliveryRows(body)
	if !reflect.DeepEqual(outcomes, []string{"test", "test", "test"}) {
		t.Fatalf("the deliveries table's outcomes = %v, want three tests", outcomes)
	}
	for i, want := range []string{`<span class="muted">no answer</span>`, `data-testid="status">500<`, `data-testid="status">200<`} {
		if !strings.Contains(rows[i], want) || !strings.Contains(rows[i], `<span class="badge test">test</span>`) {
			t.Errorf("delivery row %d lacks %q: %s", i, want, rows[i])
		}
	}
	if !strings.Contains(rows[1], "the endpoint answered 500") {
		t.Errorf("the 500's row has no error: %s", rows[1])
	}
	if strings.Contains(body, "webhook-retry-button") {
		t.Errorf("Retry now is shown after tests only: nothing waits")
	}
	if _, page, _ := b.get("/console/webhooks"); len(deliveryRow.FindAllString(page, -1)) != 3 {
		t.Errorf("the page lists %d deliveries, want 3", len(deliveryRow.FindAllString(page, -1)))
	}
}

// TestConsoleWebhookRetry: a batch waiting out a retry and parked events
// show Retry now; it sends the waiting batch at once and brings the parked
// events back, the page says how many, and the instance's worker delivers
// them, signed, in order.
func TestConsoleWebhookRetry(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.WebhookAllowPrivate = true
	in := newInstance(t, pool, cfg)
	acme := in.signup("Acme")
	tid := tenantID(t, acme.Tenant.ID)
	ep := newHookEndpoint(t)
	ep.status.Store(http.StatusServiceUnavailable)

	b := in.browser()
	b.login(acme.APIKey)
	if code, _, _ := b.post("/console/webhooks/settings", url.Values{"webhookUrl": {ep.URL + "/hooks"}}); code != 200 {
		t.Fatalf("saving the URL = %d", code)
	}
	ctx := t.Context()

	// waitFragment polls the deliveries fragment, as the page does, until
	// done says yes.
	waitFragment := func(what string, done func(body string) bool) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, body, _ := b.get("/console/webhooks/deliveries")
			if done(body) {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 15 s: %.3000s", what, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// A batch the endpoint refuses waits out a retry.
	if _, err := pool.Exec(ctx, `INSERT INTO webhook_outbox (tenant_id, event) VALUES ($1, '{"name":"channel_occupied","channel":"first"}')`, tid); err != nil {
		t.Fatal(err)
	}
	body := waitFragment("retrying delivery", func(body string) bool {
		outcomes, _ := deliveryRows(body)
		return len(outcomes) > 0 && outcomes[0] == "retrying"
	})
	_, rows := deliveryRows(body)
	for _, want := range []string{`data-testid="status">503<`, "the endpoint answered 503", " UTC</td>", `<span class="badge retrying">retrying</span>`} {
		if !strings.Contains(rows[0], want) {
			t.Errorf("the retrying row lacks %q: %s", want, rows[0])
		}
	}
	if !strings.Contains(body, `id="webhook-retry-button"`) || !strings.Contains(body, `data-testid="waiting">1 event<`) {
		t.Errorf("a retrying batch: no Retry now, or the outbox is not 1 waiting: %.3000s", body)
	}
	<-ep.received
	ep.status.Store(http.StatusOK)
	if code, body, _ := b.post("/console/webhooks/retry", nil); code != 200 || !strings.Contains(body, `class="flash success">No event was parked; the waiting ones are being sent now.<`) {
		t.Errorf("retry now of a waiting batch = %d, %.300s", code, body)
	}
	waitFragment("delivery of the waiting batch", func(body string) bool {
		outcomes, _ := deliveryRows(body)
		return len(outcomes) > 0 && outcomes[0] == "delivered" && strings.Contains(body, `data-testid="waiting">0 events<`)
	})
	for len(ep.received) > 0 { // that batch's attempts
		<-ep.received
	}

	// Parked events: given up on after their retries ran out.
	if _, err := pool.Exec(ctx,
		`INSERT INTO webhook_outbox (tenant_id, event, parked_at) VALUES
		   ($1, '{"name":"channel_occupied","channel":"parked-1"}', now()),
		   ($1, '{"name":"channel_vacated","channel":"parked-1"}', now())`, tid); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx,
		`INSERT INTO webhook_deliveries (tenant_id, events, first_id, last_id, status, latency_ms, error, attempt, outcome)
		 VALUES ($1, 2, 2, 3, 0, 10000, 'the endpoint did not answer within 10s', 31, 'parked')`, tid); err != nil {
		t.Fatal(err)
	}
	_, body, _ = b.get("/console/webhooks")
	_, rows = deliveryRows(body)
	if !strings.Contains(body, `data-testid="parked">2 events<`) || !strings.Contains(body, `id="webhook-retry-button"`) ||
		len(rows) == 0 || !strings.Contains(rows[0], `<span class="badge parked">parked</span>`) {
		t.Fatalf("parked events: the page does not show them with Retry now: %.4000s", body)
	}
	time.Sleep(1500 * time.Millisecond) // the outbox's trigger made the queue due: parked events must stay put
	select {
	case req := <-ep.received:
		t.Fatalf("parked events were sent before Retry now: %s", req.body)
	default:
	}

	if code, _, _ := b.post("/console/webhooks/retry", url.Values{"csrf": {"forged"}}); code != http.StatusForbidden {
		t.Errorf("retry now without the CSRF token = %d, want 403", code)
	}
	code, body, _ := b.post("/console/webhooks/retry", nil)
	if code != 200 || !strings.Contains(body, `class="flash success">2 parked events came back and are being sent now.<`) {
		t.Errorf("retry now = %d, does not say 2 parked events came back: %.300s", code, body)
	}
	var got []webhook.Event
	deadline := time.After(15 * time.Second)
	for len(got) < 2 {
		select {
		case req := <-ep.received:
			checkSigned(t, req, acme)
			got = append(got, webhookEvents(t, req.body)...)
		case <-deadline:
			t.Fatalf("the endpoint got %+v within 15 s of Retry now, want both parked events", got)
		}
	}
	if len(got) != 2 || got[0].Name != "channel_occupied" || got[1].Name != "channel_vacated" || got[0].Channel != "parked-1" {
		t.Errorf("delivered after Retry now: %+v, want parked-1 occupied then vacated", got)
	}
	body = waitFragment("delivery of the parked events", func(body string) bool {
		outcomes, _ := deliveryRows(body)
		return len(outcomes) > 0 && outcomes[0] == "delivered" && strings.Contains(body, `data-testid="parked">0 events<`)
	})
	if strings.Contains(body, "webhook-retry-button") {
		t.Errorf("Retry now is still shown with nothing waiting or parked")
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM webhook_outbox WHERE tenant_id = $1`, tid).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d events left in the outbox (%v), want none", left, err)
	}
}

// TestConsoleWebhooksBrowser: in a real browser the webhooks page runs
// without script errors or CSP violations, fits a 375 px window, and its
// test button works from the keyboard, keeping the focus.
func TestConsoleWebhooksBrowser(t *testing.T) {
	// Not parallel, as the other browser tests.
	chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), consoleTestWait)
	t.Cleanup(cancel)
	cfg := testConfig()
	cfg.WebhookAllowPrivate = true
	in := newInstance(t, pgtest.NewDB(t), cfg)
	acme := in.signup("Acme")
	ep := newHookEndpoint(t)
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"webhookUrl":"`+ep.URL+`/hooks","webhookEvents":["member_added"]}`); res.status != 200 {
		t.Fatalf("PATCH settings = %d %s", res.status, res.body)
	}
	tab := loggedInTab(t, ctx, in, acme.APIKey)

	tab.open(in.url + "/console/webhooks")
	tab.do("narrow the window", chromedp.EmulateViewport(375, 812))
	if w := consoleEval[int](tab, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the webhooks page is %d px wide in a 375 px window: it scrolls sideways", w)
	}
	tab.do("press the test button with the keyboard",
		chromedp.Focus(chromedp.CSS("#webhook-test-button")),
		chromedp.KeyEvent("\r"),
	)
	tab.waitFor("the test's answer", `((document.querySelector('[data-testid=test-result]') || {}).textContent || '').startsWith('Your endpoint answered 200 in ')`, consoleStepWait)
	tab.waitFor("the test in the deliveries table", `document.querySelector('#webhook-deliveries tr[data-outcome=test]')`, consoleStepWait)
	if id := consoleEval[string](tab, `document.activeElement ? document.activeElement.id : ''`); id != "webhook-test-button" {
		t.Errorf("after the test, the focus is on %q, not on the test button", id)
	}
	if w := consoleEval[int](tab, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the webhooks page with a delivery is %d px wide in a 375 px window", w)
	}
	tab.check("the webhooks page")
	select {
	case req := <-ep.received:
		checkSigned(t, req, acme)
	default:
		t.Errorf("the endpoint got no test webhook")
	}
}
