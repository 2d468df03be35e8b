package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// browser is a cookie-keeping HTTP client, as a console user's browser.
type browser struct {
	t    *testing.T
	in   *instance
	c    *http.Client
	csrf string
}

func (in *instance) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: in.t, in: in, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)"`)

// get fetches a console page and remembers its CSRF token.
func (b *browser) get(path string, header ...string) (int, string, http.Header) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.in.url+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	oraclesOf(b.t).noteSecrets(res.Header, nil) // the session cookie, for O6
	body, _ := io.ReadAll(res.Body)
	if m := csrfMeta.FindStringSubmatch(string(body)); m != nil {
		b.csrf = m[1]
	}
	return res.StatusCode, string(body), res.Header
}

// post submits a form as the page would: same origin, with the CSRF token
// unless the test says otherwise.
func (b *browser) post(path string, form url.Values, header ...string) (int, string, http.Header) {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok && b.csrf != "" {
		form.Set("csrf", b.csrf)
	}
	req, _ := http.NewRequest("POST", b.in.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.in.url)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	oraclesOf(b.t).noteSecrets(res.Header, nil) // the session cookie, for O6
	body, _ := io.ReadAll(res.Body)
	if m := csrfMeta.FindStringSubmatch(string(body)); m != nil {
		b.csrf = m[1]
	}
	return res.StatusCode, string(body), res.Header
}

func (b *browser) login(apiKey string) {
	b.t.Helper()
	b.get("/console/login")
	if code, body, h := b.post("/console/login", url.Values{"apiKey": {apiKey}}); code != http.StatusSeeOther || h.Get("Location") != "/console/overview" {
		b.t.Fatalf("login = %d %s %s", code, h.Get("Location"), body)
	}
	b.get("/console/overview")
}

func (b *browser) cookie() string {
	u, _ := url.Parse(b.in.url)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "hybridrt_session" {
			return c.Value
		}
	}
	return ""
}

// TestConsolePages: every page and fragment answers with its key content,
// and only the session's own tenant's data.
func TestConsolePages(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme, other := in.signup("Acme"), in.signup("Other<Corp>")
	pOther := in.publisher(other)
	pOther.events(`{"channel":"broadcast","type":"other-secret","data":"other tenant data"}`)
	in.subscribe(other.Tenant.ID, "other-user", nil, []string{"broadcast"}, subscribeOpts{token: pOther.token("other-user", nil, 600)}).connID()
	p := in.publisher(acme)
	p.events(`{"channel":"broadcast","type":"acme-event","data":{"x":"<script>alert(1)</script>"}}`)
	in.subscribe(acme.Tenant.ID, "acme-user", nil, []string{"broadcast"}, subscribeOpts{token: p.token("acme-user", nil, 600)}).connID()
	time.Sleep(1500 * time.Millisecond) // the registry writes connections every second

	b := in.browser()
	b.login(acme.APIKey)
	pages := map[string][]string{
		"/console/overview":      {"Overview", `data-testid="connections">1<`, "active API keys"},
		"/console/clients":       {"Connected clients", "acme-user", `hx-trigger="every 1s"`},
		"/console/clients/table": {"acme-user"},
		"/console/events":        {"Fire a test event", "acme-event", `sse-connect="/console/events/stream?after=`, "&lt;script&gt;"},
		"/console/keys":          {"API keys", "default", acme.APIKey[:16]},
		"/console/signing-keys":  {"Signing keys", acme.SigningKey.Kid},
		"/console/tokens":        {"Subscriber tokens", `name="sub"`},
		"/console/subscriber":    {"Test subscriber", "data-ticket=\"tk_"},
	}
	for path, wants := range pages {
		code, body, h := b.get(path)
		if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s = %d %s", path, code, h.Get("Content-Type"))
		}
		for _, w := range wants {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s lacks %q", path, w)
			}
		}
		for _, leak := range []string{"other-secret", "other tenant data", "other-user", other.SigningKey.Kid, other.APIKey[:16], "Other&lt;Corp&gt;", "<script>alert"} {
			if strings.Contains(body, leak) {
				t.Errorf("GET %s shows %q: another tenant's data, or unescaped HTML", path, leak)
			}
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s CSP = %q", path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s headers = %v", path, h)
		}
	}
	if code, body, _ := b.get("/console/clients/table"); code != 200 || strings.Contains(body, "<html") {
		t.Errorf("the clients fragment is a whole page (%d)", code)
	}
	for _, path := range []string{"/console/static/htmx.min.js", "/console/static/htmx-ext-sse.js", "/console/static/console.css", "/console/static/console.js", "/console/static/subscriber.js"} {
		if code, body, _ := b.get(path); code != 200 || len(body) < 100 {
			t.Errorf("GET %s = %d, %d bytes", path, code, len(body))
		}
	}

	// The live log's stream starts where the page left off: an event
	// published between the page and the stream is not lost.
	_, body, _ := b.get("/console/events")
	after := regexp.MustCompile(`stream\?after=(\d+)`).FindStringSubmatch(body)
	if after == nil {
		t.Fatal("events page names no stream position")
	}
	missed := p.events(`{"channel":"secret-ops","type":"between","data":1}`)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", in.url+"/console/events/stream?after="+after[1], nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := b.c.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("event stream = %v %v", res, err)
	}
	buf := make([]byte, 4096)
	n, _ := io.ReadAtLeast(res.Body, buf, 10)
	res.Body.Close()
	if !strings.Contains(string(buf[:n]), `data-event-id="`+missed[0]+`"`) || !strings.Contains(string(buf[:n]), "between") {
		t.Errorf("the live log stream did not replay event %s published before it opened: %q", missed[0], buf[:n])
	}

	// Forms: a test event, with errors shown next to the field.
	head := p.head()
	_, body, _ = b.post("/console/events/test", url.Values{"channel": {"bad channel"}, "type": {"ready"}, "data": {"{nope"}})
	for _, want := range []string{`id="e-channel"`, `id="e-type"`, `id="e-data"`, `aria-invalid="true"`} {
		if !strings.Contains(body, want) {
			t.Errorf("invalid test event: form lacks %s", want)
		}
	}
	if p.head() != head {
		t.Fatal("an invalid test event was published")
	}
	if _, body, _ = b.post("/console/events/test", url.Values{"channel": {"broadcast"}, "type": {"test"}, "data": {`{"a":1}`}}); !strings.Contains(body, "Published event #") || p.head() != head+1 {
		t.Errorf("test event not published: %.300s", body)
	}
	// Tokens: minted, with snippets.
	if _, body, _ = b.post("/console/tokens", url.Values{"sub": {"42"}, "channels": {"team:*, orders"}, "ttl": {"60"}}); !strings.Contains(body, "curl -N") || !strings.Contains(body, "EventSource") || !strings.Contains(body, `id="token">ey`) {
		t.Errorf("token page lacks the token and snippets: %.300s", body)
	}
	if _, body, _ = b.post("/console/tokens", url.Values{"sub": {""}, "channels": {"*"}, "ttl": {"0"}}); !strings.Contains(body, `id="e-sub"`) || !strings.Contains(body, `id="e-channels"`) || !strings.Contains(body, `id="e-ttl"`) {
		t.Errorf("bad token form lacks field errors")
	}
	// Keys: create shows the key once; revoke another tenant's is refused.
	_, body, _ = b.post("/console/keys", url.Values{"name": {"ci"}})
	key := regexp.MustCompile(`id="secret-new-key">(hrt_[A-Za-z0-9_]+)<`).FindStringSubmatch(body)
	if key == nil || in.do("GET", "/v1/tenant", key[1], "").status != 200 {
		t.Fatalf("created key not shown or not working")
	}
	if _, body, _ = b.get("/console/keys"); strings.Contains(body, key[1]) {
		t.Errorf("the keys page shows a key again after creation")
	}
	var otherKeys struct{ Keys []struct{ ID string } }
	in.do("GET", "/v1/keys", other.APIKey, "").json(t, &otherKeys)
	if _, body, _ = b.post("/console/keys/"+otherKeys.Keys[0].ID+"/revoke", nil); !strings.Contains(body, "no such key") {
		t.Errorf("revoking another tenant's key did not say there is no such key")
	}
	if in.do("GET", "/v1/tenant", other.APIKey, "").status != 200 {
		t.Fatal("acme's console revoked other's key")
	}
	// POST /api/realtime/test also takes a console session, with its CSRF token.
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 403}, {b.csrf, 201}} {
		req, _ := http.NewRequest("POST", in.url+"/api/realtime/test", nil)
		req.Header.Set("Origin", in.url)
		if tc.token != "" {
			req.Header.Set("X-CSRF-Token", tc.token)
		}
		res, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("POST /api/realtime/test with a session and csrf %q = %d, want %d", tc.token, res.StatusCode, tc.want)
		}
	}

	// Signing keys: create shows the secret once; another tenant's kid is refused.
	if _, body, _ = b.post("/console/signing-keys", nil); !strings.Contains(body, `id="secret-new-signing">hrs_`) {
		t.Errorf("new signing secret not shown")
	}
	if _, body, _ = b.post("/console/signing-keys/"+other.SigningKey.Kid+"/revoke", nil); !strings.Contains(body, "no such signing key") {
		t.Errorf("revoking another tenant's signing key was not refused")
	}
}

// TestConsoleSecurity: CSRF, cross-origin requests, sessions, logout, idle
// expiry, login rate limit, and the operator view.
func TestConsoleSecurity(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.OperatorToken = "operator-token-0123456789abcdef"
	in := newInstance(t, pool, cfg)
	acme := in.signup("Acme")
	b := in.browser()

	// Not logged in: pages redirect to the login page; htmx fragments are told where.
	for _, path := range []string{"/console/overview", "/console/clients", "/console/keys", "/console/events/stream"} {
		if code, _, h := b.get(path); code != http.StatusSeeOther || h.Get("Location") != "/console/login" {
			t.Errorf("GET %s logged out = %d %s", path, code, h.Get("Location"))
		}
	}
	if code, _, _ := b.get("/console/events/stream", "Accept", "text/event-stream"); code != 401 {
		t.Errorf("event stream logged out = %d, want 401 (an EventSource must not follow a redirect to HTML)", code)
	}
	if code, _, h := b.get("/console/clients/table", "HX-Request", "true"); code != 401 || h.Get("HX-Redirect") != "/console/login" {
		t.Errorf("htmx fragment logged out = %d %v", code, h)
	}
	// API credentials are no console session.
	for _, cred := range []string{acme.APIKey, in.publisher(acme).token("u", nil, 60)} {
		if res := in.do("GET", "/console/overview", cred, ""); res.status != http.StatusOK || !strings.Contains(string(res.body), "Log in") {
			// do follows the redirect to the login page
			t.Errorf("GET /console/overview with a bearer credential = %d, want the login page", res.status)
		}
	}

	// Session fixation: a cookie planted before login is not the session after.
	u, _ := url.Parse(in.url)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "hybridrt_session", Value: "planted-by-attacker", Path: "/"}})
	b.login(acme.APIKey)
	session := b.cookie()
	if session == "" || session == "planted-by-attacker" {
		t.Fatalf("session cookie after login = %q", session)
	}
	before := pgtest.Count(t, pool, `SELECT count(*) FROM api_keys`)

	// CSRF: no token, a wrong token, another origin — all refused, nothing changes.
	refusals := []struct {
		name   string
		form   url.Values
		header []string
	}{
		{"no token", url.Values{"name": {"x"}, "csrf": {""}}, nil},
		{"wrong token", url.Values{"name": {"x"}, "csrf": {"forged"}}, nil},
		{"cross-origin", url.Values{"name": {"x"}}, []string{"Origin", "https://evil.example"}},
		{"cross-site fetch", url.Values{"name": {"x"}}, []string{"Sec-Fetch-Site", "cross-site"}},
	}
	for _, r := range refusals {
		if code, _, _ := b.post("/console/keys", r.form, r.header...); code != http.StatusForbidden {
			t.Errorf("POST /console/keys with %s = %d, want 403", r.name, code)
		}
	}
	// A stale header next to the right form field (htmx after a re-login
	// without a full page load) is accepted.
	if code, _, _ := b.post("/console/keys", url.Values{"name": {"stale-header"}}, "X-CSRF-Token", "previous-session-token"); code != 200 {
		t.Errorf("POST with the right form token and a stale header = %d, want 200", code)
	}
	before++
	// The token in the header, as htmx sends it, is accepted.
	if code, _, _ := b.post("/console/keys", url.Values{"name": {"via-header"}, "csrf": {""}}, "X-CSRF-Token", b.csrf); code != 200 {
		t.Errorf("POST with X-CSRF-Token = %d", code)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM api_keys`); n != before+1 {
		t.Errorf("api_keys grew by %d, want 1 (only the accepted request)", n-before)
	}

	// No GET changes state: crawl every page, the database is unchanged.
	snapshot := func() string {
		return fmt.Sprint(state(t, pool), pgtest.Count(t, pool, `SELECT count(*) FROM events`), pgtest.Count(t, pool, `SELECT count(*) FROM console_sessions`))
	}
	s0 := snapshot()
	for _, path := range []string{"/console", "/console/overview", "/console/overview?range=30d", "/console/usage", "/console/usage.csv", "/console/clients", "/console/clients/table", "/console/events", "/console/keys", "/console/signing-keys", "/console/tokens", "/console/login", "/console/signup", "/console/keys/1/revoke", "/console/logout"} {
		b.get(path)
	}
	if s := snapshot(); s != s0 {
		t.Errorf("GETs changed the database: %s → %s", s0, s)
	}

	// The operator view needs an operator session, not a tenant's.
	if code, _, h := b.get("/console/operator"); code != http.StatusSeeOther || h.Get("Location") != "/console/operator/login" {
		t.Errorf("tenant session on /console/operator = %d %s", code, h.Get("Location"))
	}

	// Logout ends the session server-side: the old cookie no longer works.
	if code, _, _ := b.post("/console/logout", nil); code != http.StatusSeeOther {
		t.Errorf("logout = %d", code)
	}
	replay := in.browser()
	replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: "hybridrt_session", Value: session, Path: "/"}})
	if code, _, _ := replay.get("/console/overview"); code != http.StatusSeeOther {
		t.Errorf("old session cookie after logout = %d, want a redirect to login", code)
	}

	// Idle sessions expire.
	b2 := in.browser()
	b2.login(acme.APIKey)
	if _, err := pool.Exec(t.Context(), `UPDATE console_sessions SET last_seen_at = now() - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := b2.get("/console/overview"); code != http.StatusSeeOther {
		t.Errorf("idle session = %d, want a redirect to login", code)
	}

	// Operator login, and its view.
	op := in.browser()
	op.get("/console/operator/login")
	if code, _, _ := op.post("/console/operator/login", url.Values{"token": {"wrong"}}); code != 200 {
		t.Errorf("wrong operator token = %d", code)
	}
	if code, _, h := op.post("/console/operator/login", url.Values{"token": {cfg.OperatorToken}}); code != http.StatusSeeOther || h.Get("Location") != "/console/operator" {
		t.Fatalf("operator login = %d %s", code, h.Get("Location"))
	}
	if code, body, _ := op.get("/console/operator"); code != 200 || !strings.Contains(body, "Acme") || !strings.Contains(body, in.svc.registry.InstanceID()) {
		t.Errorf("operator view = %d, lacks tenants or instances", code)
	}
	if code, _, _ := op.get("/console/overview"); code != http.StatusSeeOther {
		t.Errorf("operator session on a tenant page = %d, want a redirect", code)
	}

	// Failed logins are rate-limited per address; a right key still logs in.
	att := in.browser()
	limited := false
	for range 15 {
		if code, body, h := att.post("/console/login", url.Values{"apiKey": {"hrt_guess"}}); code == http.StatusTooManyRequests && strings.Contains(body, "Too many failed logins") && h.Get("Retry-After") != "" {
			limited = true
			break
		}
	}
	if !limited {
		t.Errorf("15 bad logins in a row were never rate-limited")
	}
	if code, _, h := att.post("/console/login", url.Values{"apiKey": {acme.APIKey}}); code != http.StatusSeeOther || h.Get("Location") != "/console/overview" {
		t.Errorf("a right key from the limited address = %d %s, want 303 to the overview", code, h.Get("Location"))
	}
	if strings.Contains(in.logs.String(), session) || strings.Contains(in.logs.String(), cfg.OperatorToken) {
		t.Errorf("logs contain a session id or the operator token")
	}
}
