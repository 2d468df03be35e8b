package main

import (
	"bytes"
	"context"
	"html"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/views"
)

// TestConsolePusher: the Pusher page shows the tenant's app id, its keys and
// snippets aimed at PUBLIC_URL's host, port and scheme, and nothing of
// another tenant; its settings form changes publicChannels and clientEvents
// (only with the CSRF token, field errors inline, nothing changed on error,
// the webhook settings kept), as GET /v1/tenant then shows.
func TestConsolePusher(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.PublicURL = "https://rt.example.com:8443"
	in := newInstance(t, pool, cfg)
	acme, other := in.signup("Acme"), in.signup("Other")
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"webhookUrl":"https://example.com/hook","webhookEvents":["cache_miss"]}`); res.status != 200 {
		t.Fatalf("PATCH webhook settings = %d %s", res.status, res.body)
	}

	b := in.browser()
	b.login(acme.APIKey)
	code, body, _ := b.get("/console/pusher")
	if code != 200 {
		t.Fatalf("GET /console/pusher = %d", code)
	}
	text := html.UnescapeString(body)
	for _, want := range []string{
		`<a href="/console/pusher" aria-current="page">Pusher</a>`,
		`data-testid="app-id">` + acme.Tenant.ID + `<`,
		`data-testid="host">rt.example.com<`,
		`data-testid="port">8443<`,
		`data-testid="scheme">https<`,
		`data-pusher-key="` + acme.SigningKey.Kid + `"`,
		// pusher-js
		`new Pusher('` + acme.SigningKey.Kid + `', {`, `wsHost: 'rt.example.com'`, `wsPort: 8443`, `forceTLS: true`,
		`enabledTransports: ['ws', 'wss']`, `cluster: 'mt1'`, `channelAuthorization: { endpoint: '/broadcasting/auth' }`,
		// .env
		"PUSHER_APP_ID=" + acme.Tenant.ID + "\n", "PUSHER_APP_KEY=" + acme.SigningKey.Kid + "\n", "PUSHER_APP_SECRET=",
		"PUSHER_HOST=rt.example.com\n", "PUSHER_PORT=8443\n", "PUSHER_SCHEME=https\n", `VITE_PUSHER_APP_KEY="${PUSHER_APP_KEY}"`, `VITE_PUSHER_HOST="${PUSHER_HOST}"`,
		// config/broadcasting.php
		`'driver' => 'pusher'`, `'host' => env('PUSHER_HOST', 'rt.example.com')`, `'port' => env('PUSHER_PORT', 8443)`,
		`'scheme' => env('PUSHER_SCHEME', 'https')`, `'useTLS' =>`,
		// Node
		`require('pusher')`, `appId: '` + acme.Tenant.ID + `'`, `key: '` + acme.SigningKey.Kid + `'`, `host: 'rt.example.com'`, `port: '8443'`, `useTLS: true`,
		// the settings form, empty
		`<form method="post" action="/console/pusher/settings"`, `name="csrf" value="` + b.csrf + `"`, `name="publicChannels"`, `name="clientEvents"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("GET /console/pusher lacks %q", want)
		}
	}
	for _, leak := range []string{acme.SigningKey.Secret, other.SigningKey.Kid, other.SigningKey.Secret, "data-testid=\"app-id\">" + other.Tenant.ID + "<"} {
		if strings.Contains(text, leak) {
			t.Errorf("GET /console/pusher shows %q: a secret, or another tenant's", leak)
		}
	}
	if strings.Contains(body, `aria-describedby="h-clientEvents" checked`) {
		t.Errorf("client events are off, but the box is checked")
	}

	// Without the CSRF token: refused, nothing changed.
	if code, _, _ := b.post("/console/pusher/settings", url.Values{"csrf": {"forged"}, "publicChannels": {"news"}, "clientEvents": {"on"}}); code != http.StatusForbidden {
		t.Errorf("settings without the CSRF token = %d, want 403", code)
	}
	defaults := settingsJSON(t, `{"publicChannels":[],"clientEvents":false,"webhookUrl":"https://example.com/hook","webhookEvents":["cache_miss"]}`)
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, defaults) {
		t.Errorf("settings after a forged form = %v, want %v", got, defaults)
	}

	// A bad entry: the error under the field, the typed values kept, nothing changed.
	code, body, _ = b.post("/console/pusher/settings", url.Values{"publicChannels": {"news\r\nuser:42"}, "clientEvents": {"on"}})
	for _, want := range []string{`aria-invalid="true"`, `id="e-publicChannels"`, "never reachable over the Pusher protocol", "news\r\nuser:42</textarea>", `aria-describedby="h-clientEvents" checked`} {
		if code != 200 || !strings.Contains(html.UnescapeString(body), want) {
			t.Errorf("settings with user:42 = %d, lacks %q", code, want)
		}
	}
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, defaults) {
		t.Errorf("settings after a refused form = %v, want %v", got, defaults)
	}

	// A good one, typed with Windows line ends and a blank line.
	code, body, _ = b.post("/console/pusher/settings", url.Values{"publicChannels": {"news\r\n\r\n  scores-*\r\n"}, "clientEvents": {"on"}})
	for _, want := range []string{"Settings saved.", ">news\nscores-*</textarea>", `aria-describedby="h-clientEvents" checked`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("settings form = %d, lacks %q", code, want)
		}
	}
	want := settingsJSON(t, `{"publicChannels":["news","scores-*"],"clientEvents":true,"webhookUrl":"https://example.com/hook","webhookEvents":["cache_miss"]}`)
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, want) {
		t.Errorf("settings after the form = %v, want %v", got, want)
	}
	if s, err := in.svc.quotas.Settings(t.Context(), tenantID(t, acme.Tenant.ID)); err != nil || !s.IsPublic("scores-1") || !s.ClientEvents {
		t.Errorf("this instance's cached settings = %+v, %v; want the form's at once", s, err)
	}
	if got := settingsOf(t, in, other.APIKey); got["clientEvents"] != false || len(got["publicChannels"].([]any)) != 0 {
		t.Errorf("the other tenant's settings = %v, want the defaults", got)
	}

	// Unticking the box and emptying the list turn both off again.
	if code, body, _ := b.post("/console/pusher/settings", url.Values{"publicChannels": {""}}); code != 200 || !strings.Contains(body, "Settings saved.") || strings.Contains(body, `aria-describedby="h-clientEvents" checked`) {
		t.Errorf("clearing the settings = %d", code)
	}
	want["publicChannels"], want["clientEvents"] = []any{}, false
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got, want) {
		t.Errorf("settings after clearing = %v, want %v", got, want)
	}

	// A new signing key's secret is labelled as the Pusher secret too, and the
	// key is listed on the Pusher page.
	code, body, _ = b.post("/console/signing-keys", nil)
	if code != 200 || !strings.Contains(body, "(Pusher secret)") {
		t.Errorf("creating a signing key = %d, no Pusher secret label", code)
	}
	if _, body, _ := b.get("/console/pusher"); strings.Count(body, "data-pusher-key=") != 2 {
		t.Errorf("the Pusher page lists %d keys, want 2", strings.Count(body, "data-pusher-key="))
	}

	// Logged out: the page and the form are the console's, not open.
	anon := in.browser()
	if code, _, h := anon.get("/console/pusher"); code != http.StatusSeeOther || h.Get("Location") != "/console/login" {
		t.Errorf("GET /console/pusher without a session = %d %s", code, h.Get("Location"))
	}
	if code, _, _ := anon.post("/console/pusher/settings", url.Values{"publicChannels": {"*"}}); code != http.StatusUnauthorized {
		t.Errorf("POST /console/pusher/settings without a session = %d, want 401", code)
	}
}

// TestConsolePusherPlainHTTP: with an http PUBLIC_URL and no port, the
// snippets say port 80 and no TLS.
func TestConsolePusherPlainHTTP(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig()) // PUBLIC_URL http://hybridrt.test
	acme := in.signup("Acme")
	b := in.browser()
	b.login(acme.APIKey)
	_, body, _ := b.get("/console/pusher")
	for _, want := range []string{`wsHost: &#39;hybridrt.test&#39;`, "wsPort: 80,", "forceTLS: false", "PUSHER_PORT=80\n", "PUSHER_SCHEME=http\n", "useTLS: false"} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /console/pusher lacks %q", want)
		}
	}
}

// TestClientsTableTransports: each transport gets its own badge, websocket
// included, and an unknown one a plain badge.
func TestClientsTableTransports(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	rows := []views.ClientRow{{ID: "1", Transport: "sse"}, {ID: "2", Transport: "polling"}, {ID: "3", Transport: "websocket"}, {ID: "4", Transport: "<x>"}}
	if err := views.ClientsTable(rows).Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`class="badge sse">sse<`, `class="badge polling">polling<`, `class="badge websocket">websocket<`, `class="badge">&lt;x&gt;<`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the clients table lacks %q", want)
		}
	}
}

// TestConsolePusherBrowser: in a real browser the Pusher page runs without
// script errors or CSP violations, fits a 375 px window, and its settings
// form works from the keyboard.
func TestConsolePusherBrowser(t *testing.T) {
	// Not parallel, as the other browser tests.
	chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), consoleTestWait)
	t.Cleanup(cancel)
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	tab := loggedInTab(t, ctx, in, acme.APIKey)

	tab.open(in.url + "/console/pusher")
	tab.do("narrow the window", chromedp.EmulateViewport(375, 812))
	if w := consoleEval[int](tab, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the Pusher page is %d px wide in a 375 px window: it scrolls sideways", w)
	}
	// Keyboard only: type into the list, tab to the box and tick it with
	// Space, tab to the button and press Enter.
	tab.do("fill the form with the keyboard",
		chromedp.Focus(chromedp.CSS("#f-publicChannels")),
		chromedp.KeyEvent("news"),
		chromedp.KeyEvent("\t"),
		chromedp.KeyEvent(" "),
		chromedp.KeyEvent("\t"),
		chromedp.KeyEvent("\r"),
	)
	tab.waitFor("the form to say it saved", `[...document.querySelectorAll('#pusher-settings [role=status]')].some(e => e.textContent === 'Settings saved.')`, consoleStepWait)
	if w := consoleEval[int](tab, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the saved Pusher page is %d px wide in a 375 px window", w)
	}
	tab.check("the Pusher page")
	if got := settingsOf(t, in, acme.APIKey); !reflect.DeepEqual(got["publicChannels"], []any{"news"}) || got["clientEvents"] != true {
		t.Errorf("settings after the keyboard form = %v, want news public and client events on", got)
	}
}

// loggedInTab opens a Chromium tab on in's console, logged in with apiKey.
func loggedInTab(t *testing.T, ctx context.Context, in *instance, apiKey string) *consoleTab {
	t.Helper()
	tab := openConsoleTab(t, newBrowser(t, ctx), "tab", false)
	tab.open(in.url + "/console/login")
	tab.do("log in",
		chromedp.SendKeys(chromedp.CSS("#f-apiKey"), apiKey),
		chromedp.Click(chromedp.CSS(`form[action="/console/login"] button[type="submit"]`)),
	)
	tab.waitFor("the overview", `location.pathname === '/console/overview'`, consoleStepWait)
	return tab
}
