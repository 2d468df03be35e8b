package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// The SDK's tuning in these tests, short so that every switch takes seconds.
const (
	sdkOpenTimeout   = 1500 * time.Millisecond // openTimeoutMs
	sdkRetryInterval = 2 * time.Second         // retryIntervalMs
	sdkTestWait      = 60 * time.Second        // bounds each test
)

// sdkEnv is one test's service, proxy and browser: the pages come from the
// proxy's origin, so the proxy sits between the browser and the instance.
type sdkEnv struct {
	t     *testing.T
	in    *instance
	key   string
	p     *publisher
	proxy *testProxy
	bctx  context.Context // the browser's first tab
	end   time.Time       // the test's deadline
	mints atomic.Int64    // tokens minted for the pages

	mu      sync.Mutex
	expires []time.Time // of the tokens minted, in order
}

func newSDKEnv(t *testing.T) *sdkEnv {
	t.Helper()
	chromiumPath(t) // fail fast, before starting a server
	start := time.Now()
	// Cancelled last (cleanups run in reverse), after the browser has closed.
	ctx, cancel := context.WithTimeout(context.Background(), sdkTestWait)
	t.Cleanup(cancel)
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	env := &sdkEnv{t: t, in: in, key: acme.APIKey, p: in.publisher(acme), end: start.Add(sdkTestWait)}
	env.proxy = newTestProxy(t, in.url)
	env.bctx = newBrowser(t, ctx)
	return env
}

// mint mints a subscriber token for u1 through POST /v1/tokens. It runs on
// the browser's goroutines (a page's getToken), so it returns its error.
func (env *sdkEnv) mint(ctx context.Context, ttl int) (string, error) {
	if ttl <= 0 {
		ttl = 600
	}
	b, _ := json.Marshal(map[string]any{"sub": "u1", "channels": []string{"feed"}, "ttl": ttl})
	req, err := http.NewRequestWithContext(ctx, "POST", env.in.url+"/v1/tokens", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+env.key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var out struct{ Token string }
	if res.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST /v1/tokens = %d", res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("POST /v1/tokens: no token (%v)", err)
	}
	env.mints.Add(1)
	if exp, err := tokenExpiry(out.Token); err == nil {
		env.mu.Lock()
		env.expires = append(env.expires, exp)
		env.mu.Unlock()
	}
	return out.Token, nil
}

// tokenExpiry reads a JWT's exp, without verifying it.
func tokenExpiry(token string) (time.Time, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, fmt.Errorf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, err
	}
	var c struct{ Exp int64 }
	if err := json.Unmarshal(b, &c); err != nil {
		return time.Time{}, err
	}
	return time.Unix(c.Exp, 0), nil
}

// remaining bounds a wait by what is left of the test's time.
func (env *sdkEnv) remaining(d time.Duration) time.Duration {
	return max(0, min(d, time.Until(env.end)))
}

// dropConnections closes every connection to the instance: the proxy's
// streams and polls through it, and this test's idle keep-alive connections,
// which the next publish would otherwise find closed (a POST is not retried).
func (env *sdkEnv) dropConnections() {
	env.in.dropConnections()
	http.DefaultClient.CloseIdleConnections()
}

// sdkConn is a connection as GET /v1/connections lists it.
type sdkConn struct {
	ID        string   `json:"id"`
	User      string   `json:"user"`
	Channels  []string `json:"channels"`
	Transport string   `json:"transport"`
	UserAgent string   `json:"userAgent"`
}

func (env *sdkEnv) connections() []sdkConn {
	env.t.Helper()
	res := env.in.do("GET", "/v1/connections", env.key, "")
	if res.status != http.StatusOK {
		env.t.Fatalf("GET /v1/connections = %d %s", res.status, res.body)
	}
	var out struct{ Connections []sdkConn }
	res.json(env.t, &out)
	return out.Connections
}

// waitConnections waits until the tenant's connections satisfy cond.
func (env *sdkEnv) waitConnections(what string, within time.Duration, cond func([]sdkConn) bool) []sdkConn {
	env.t.Helper()
	deadline := time.Now().Add(env.remaining(within))
	for {
		conns := env.connections()
		if cond(conns) {
			return conns
		}
		if time.Now().After(deadline) {
			env.t.Fatalf("connections: %s: not within %v; GET /v1/connections lists %+v", what, within, conns)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --- the page ------------------------------------------------------------------

// sdkTab is one browser tab that runs the SDK, with what went wrong in it.
type sdkTab struct {
	t      *testing.T
	env    *sdkEnv
	name   string
	ctx    context.Context
	cancel context.CancelFunc // of a tab this test opened

	closeOnce sync.Once
	mu        sync.Mutex
	problems  []string // uncaught exceptions and unhandled rejections
	logErrors []string // errors in the browser's log and console.error
}

// openSDKTab returns a tab: the browser's first one, or a new one beside it
// in the same browser context (same origin storage, locks and channels). The
// page gets window.hrtToken(ttl), a Go function that mints a fresh token.
func (env *sdkEnv) openSDKTab(name string, newTab bool) *sdkTab {
	t := env.t
	t.Helper()
	tab := &sdkTab{t: t, env: env, name: name, ctx: env.bctx}
	if newTab {
		tab.ctx, tab.cancel = chromedp.NewContext(env.bctx)
		t.Cleanup(tab.close)
		// The first Do opens the tab, for as long as its context lives.
		if err := chromedp.Do(tab.ctx); err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
	}
	if err := chromedp.Listen(tab.ctx, tab.listen); err != nil {
		t.Fatalf("listen to %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(tab.ctx, browserWait)
	defer cancel()
	err := chromedp.Do(ctx, chromedp.ExposeFunc("hrtToken", func(ctx context.Context, ttl int) (string, error) {
		return env.mint(ctx, ttl)
	}))
	if err != nil {
		t.Fatalf("%s: expose hrtToken: %v", name, err)
	}
	return tab
}

// close closes a tab that the test opened, as a user closing it would.
func (tab *sdkTab) close() {
	if tab.cancel == nil {
		return
	}
	tab.closeOnce.Do(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = chromedp.Cancel(tab.ctx)
			tab.cancel()
		}()
		select {
		case <-done:
		case <-time.After(browserWait):
			tab.t.Errorf("%s did not close within %v", tab.name, browserWait)
		}
	})
}

// listen runs in the tab's event loop: it must return fast and run no command.
func (tab *sdkTab) listen(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		tab.note(&tab.problems, fmt.Sprintf("uncaught at %s:%d: %s", d.URL, d.LineNumber+1, text))
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if a.Description != "" {
				parts = append(parts, a.Description)
			} else {
				parts = append(parts, string(a.Value))
			}
		}
		tab.note(&tab.logErrors, "console.error: "+strings.Join(parts, " "))
	case *log.EventEntryAdded:
		e := ev.Entry
		if e.Level != log.EntryLevelError || strings.HasSuffix(e.URL, "/favicon.ico") {
			return
		}
		tab.note(&tab.logErrors, fmt.Sprintf("%s: %s (%s)", e.Source, e.Text, e.URL))
	}
}

func (tab *sdkTab) note(list *[]string, s string) {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	*list = append(*list, s)
}

// checkClean fails the test if a script threw in the tab, and, with
// noLogErrors, if the browser logged an error (a failed request, say).
func (tab *sdkTab) checkClean(noLogErrors bool) {
	tab.t.Helper()
	tab.mu.Lock()
	problems, logErrors := tab.problems, tab.logErrors
	tab.mu.Unlock()
	if len(problems) > 0 {
		tab.t.Errorf("%s: scripts failed:\n\t%s", tab.name, strings.Join(problems, "\n\t"))
	}
	if noLogErrors && len(logErrors) > 0 {
		tab.t.Errorf("%s: the browser logged errors:\n\t%s", tab.name, strings.Join(logErrors, "\n\t"))
	} else if len(logErrors) > 0 {
		tab.t.Logf("%s: the browser logged (expected here):\n\t%s", tab.name, strings.Join(logErrors, "\n\t"))
	}
}

// navigate loads url in the tab.
func (tab *sdkTab) navigate(url string) {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, browserWait)
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		tab.t.Fatalf("%s: navigate to %s: %v", tab.name, url, err)
	}
	if res.Status != http.StatusOK {
		tab.t.Fatalf("%s: navigate to %s: status %d", tab.name, url, res.Status)
	}
}

// sdkEval evaluates a JavaScript expression in the tab and decodes its value.
func sdkEval[T any](tab *sdkTab, expr string, opts ...chromedp.EvaluateOption) T {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		tab.t.Fatalf("%s: evaluate %.80q: %v", tab.name, expr, err)
	}
	return v
}

// sdkOpts are what a page's client is created with.
type sdkOpts struct {
	Channels      []string `json:"channels"`
	EventTypes    []string `json:"eventTypes"`    // for the '*' handler over SSE
	Typed         string   `json:"typed"`         // a type that also gets a handler of its own
	Cursor        *string  `json:"cursor"`        // start after this id
	TTL           int      `json:"ttl"`           // of the tokens getToken gets, in seconds
	Share         bool     `json:"share"`         // shareAcrossTabs
	NoEventSource bool     `json:"noEventSource"` // delete window.EventSource first
	Transports    []string `json:"transports"`    // the SDK's default (websocket, sse, polling) when nil
}

// sseFirst are the transports of the tests written before the SDK had a
// WebSocket: what they prove of SSE and polling holds on their own.
var sseFirst = []string{"sse", "polling"}

// sdkStartJS imports the SDK from the page's origin (the proxy) and creates
// a client that records, in window.__sdk, every event its handlers get, every
// change of its state, and what it does on the wire: it wraps the page's
// fetch, EventSource and WebSocket, which the SDK picks up by default,
// passing all on.
const sdkStartJS = `(async (o) => {
	if (window.__sdk) throw new Error('a client runs in this page already');
	const rec = window.__sdk = {events: [], typed: [], states: [], requests: [], sources: [], sockets: [], tokenCalls: 0, tokenErrors: []};
	if (o.noEventSource) {
		delete window.EventSource;
		if (typeof EventSource !== 'undefined') throw new Error('window.EventSource is still there');
	}
	const realFetch = window.fetch;
	window.fetch = function (input, init) {
		const u = new URL(String(input), location.href);
		const r = {method: (init && init.method) || 'GET', path: u.pathname, query: u.search, status: 0, at: Date.now()};
		rec.requests.push(r);
		return realFetch.call(window, input, init).then(
			(res) => { r.status = res.status; return res; },
			(err) => { r.status = -1; r.error = String((err && err.name) || err); throw err; });
	};
	if (window.EventSource) {
		const Real = window.EventSource;
		window.EventSource = class extends Real {
			constructor(url, init) {
				super(url, init);
				const s = {url: String(url), ready: [], tokenExpired: 0, errors: 0, opens: 0, at: Date.now()};
				rec.sources.push(s);
				this.addEventListener('open', () => { s.opens++; });
				this.addEventListener('error', () => { s.errors++; });
				this.addEventListener('ready', (e) => {
					try { s.ready.push(JSON.parse(e.data).connectionId); } catch { s.ready.push('?'); }
				});
				this.addEventListener('token_expired', () => { s.tokenExpired++; });
			}
		};
	}
	if (window.WebSocket) {
		const Real = window.WebSocket;
		window.WebSocket = class extends Real {
			constructor(url, protocols) {
				super(url, protocols);
				const s = {url: String(url), protocol: '', opens: 0, ready: [], subscribed: 0, renewed: 0, sent: [], closeCode: 0, at: Date.now()};
				rec.sockets.push(s);
				this.__rec = s;
				this.addEventListener('open', () => { s.opens++; s.protocol = this.protocol; });
				this.addEventListener('message', (e) => {
					let m = {};
					try { m = JSON.parse(e.data); } catch {}
					if (m.op === 'ready') s.ready.push(m.connectionId);
					if (m.op === 'subscribed') s.subscribed++;
					if (m.op === 'token_renewed') s.renewed++;
				});
				this.addEventListener('close', (e) => { s.closeCode = e.code; });
			}
			send(data) {
				let m = {};
				try { m = JSON.parse(data); } catch {}
				this.__rec.sent.push({op: String(m.op), cursor: m.cursor == null ? '' : String(m.cursor), at: Date.now()});
				return super.send(data);
			}
		};
	}
	const m = await import('/sdk/hybrid-realtime.js');
	const handlers = {'*': (e) => { rec.events.push({id: e.id, type: e.type, channel: e.channel, data: e.data}); }};
	if (o.typed) handlers[o.typed] = (e) => { rec.typed.push(e.id); };
	window.__client = m.createHybridRealtime({
		url: location.origin,
		channels: o.channels,
		cursor: o.cursor,
		getToken: async () => {
			rec.tokenCalls++;
			try { return await window.hrtToken(o.ttl); } catch (err) { rec.tokenErrors.push(String(err)); throw err; }
		},
		eventHandlers: handlers,
		eventTypes: o.eventTypes,
		onStateChange: (s) => {
			const v = {method: s.activeMethod || '', connected: s.isConnected, role: s.role, error: s.error ? String(s.error.message || s.error) : ''};
			const last = rec.states[rec.states.length - 1];
			if (!last || last.method !== v.method || last.connected !== v.connected || last.role !== v.role || last.error !== v.error) {
				rec.states.push({...v, at: Date.now()});
			}
		},
		shareAcrossTabs: o.share,
		transports: o.transports || undefined,
		openTimeoutMs: 1500,
		failuresBeforeFallback: 2,
		retryIntervalMs: 2000,
		pollTimeoutS: 2,
		backoff: {initialMs: 100, maxMs: 1000},
	});
	return true;
})(%s)`

// start creates the page's client.
func (tab *sdkTab) start(o sdkOpts) {
	tab.t.Helper()
	b, _ := json.Marshal(o)
	if !sdkEval[bool](tab, fmt.Sprintf(sdkStartJS, b), chromedp.EvalAwaitPromise) {
		tab.t.Fatalf("%s: the client did not start", tab.name)
	}
}

// sdkEvent is an event as the page's '*' handler got it.
type sdkEvent struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// sdkState is the client's state, or a change of it.
type sdkState struct {
	Method    string  `json:"method"` // '' when null
	Connected bool    `json:"connected"`
	Role      string  `json:"role"`
	Error     string  `json:"error"`
	Cursor    string  `json:"cursor"`
	At        float64 `json:"at"` // the page's Date.now()
}

func (s sdkState) String() string {
	m := s.Method
	if m == "" {
		m = "-"
	}
	out := fmt.Sprintf("%s connected=%v role=%s", m, s.Connected, s.Role)
	if s.Error != "" {
		out += " error=" + s.Error
	}
	return out
}

// sdkRequest is a fetch the SDK made.
type sdkRequest struct {
	Method string  `json:"method"`
	Path   string  `json:"path"`
	Query  string  `json:"query"`
	Status int     `json:"status"` // 0 while in flight, -1 when it failed (aborted)
	Error  string  `json:"error"`
	At     float64 `json:"at"`
}

// sdkSource is an EventSource the SDK opened.
type sdkSource struct {
	URL          string   `json:"url"`
	Ready        []string `json:"ready"` // the connection ids of its ready events
	TokenExpired int      `json:"tokenExpired"`
	Errors       int      `json:"errors"`
	Opens        int      `json:"opens"`
	At           float64  `json:"at"`
}

// sdkSocket is a WebSocket the SDK opened.
type sdkSocket struct {
	URL        string    `json:"url"`
	Protocol   string    `json:"protocol"`   // the subprotocol the server chose
	Opens      int       `json:"opens"`      // 1 once the upgrade went through
	Ready      []string  `json:"ready"`      // the connection ids of its ready messages
	Subscribed int       `json:"subscribed"` // subscribed messages
	Renewed    int       `json:"renewed"`    // token_renewed messages
	Sent       []sdkSent `json:"sent"`       // the messages the SDK sent
	CloseCode  int       `json:"closeCode"`  // 0 while open
	At         float64   `json:"at"`
}

// sdkSent is a message the SDK sent over a WebSocket.
type sdkSent struct {
	Op     string  `json:"op"`
	Cursor string  `json:"cursor"`
	At     float64 `json:"at"`
}

// sdkRecord is what the page recorded so far.
type sdkRecord struct {
	Events      []sdkEvent   `json:"events"`
	Typed       []string     `json:"typed"`
	States      []sdkState   `json:"states"`
	Sources     []sdkSource  `json:"sources"`
	Sockets     []sdkSocket  `json:"sockets"`
	Requests    []sdkRequest `json:"requests"`
	TokenCalls  int          `json:"tokenCalls"`
	TokenErrors []string     `json:"tokenErrors"`
	Now         sdkState     `json:"now"`
	Clock       float64      `json:"clock"` // the page's Date.now()
}

const sdkRecordJS = `(() => {
	const r = window.__sdk, s = window.__client.state;
	return {events: r.events, typed: r.typed, states: r.states, sources: r.sources, sockets: r.sockets, requests: r.requests,
		tokenCalls: r.tokenCalls, tokenErrors: r.tokenErrors, clock: Date.now(),
		now: {method: s.activeMethod || '', connected: s.isConnected, role: s.role, cursor: s.cursor || '',
			error: s.error ? String(s.error.message || s.error) : ''}};
})()`

func (tab *sdkTab) record() sdkRecord {
	tab.t.Helper()
	return sdkEval[sdkRecord](tab, sdkRecordJS)
}

var ticketParam = regexp.MustCompile(`ticket=[^&]*`)

// describe summarizes a record for a failure message.
func (r sdkRecord) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "now: %s cursor=%s; %d events, getToken called %d times %v\n", r.Now, r.Now.Cursor, len(r.Events), r.TokenCalls, r.TokenErrors)
	ids := make([]string, len(r.Events))
	for i, e := range r.Events {
		ids[i] = e.ID
	}
	fmt.Fprintf(&b, "event ids: %s\n", strings.Join(ids, ","))
	b.WriteString("states:\n")
	t0 := 0.0
	if len(r.States) > 0 {
		t0 = r.States[0].At
	}
	for _, s := range r.States {
		fmt.Fprintf(&b, "\t+%5.0f ms %s\n", s.At-t0, s)
	}
	b.WriteString("event sources:\n")
	for _, s := range r.Sources {
		u := ticketParam.ReplaceAllString(s.URL, "ticket=…")
		fmt.Fprintf(&b, "\t+%5.0f ms %s ready=%v opens=%d errors=%d tokenExpired=%d\n", s.At-t0, u, s.Ready, s.Opens, s.Errors, s.TokenExpired)
	}
	b.WriteString("WebSockets:\n")
	for _, s := range r.Sockets {
		var sent []string
		for _, m := range s.Sent {
			sent = append(sent, m.Op+m.Cursor)
		}
		fmt.Fprintf(&b, "\t+%5.0f ms %s protocol=%q opens=%d ready=%v subscribed=%d renewed=%d close=%d sent=%v\n",
			s.At-t0, s.URL, s.Protocol, s.Opens, s.Ready, s.Subscribed, s.Renewed, s.CloseCode, sent)
	}
	b.WriteString("requests (the last 40):\n")
	for _, q := range r.Requests[max(0, len(r.Requests)-40):] {
		fmt.Fprintf(&b, "\t+%5.0f ms %s %s%s → %d %s\n", q.At-t0, q.Method, q.Path, q.Query, q.Status, q.Error)
	}
	return b.String()
}

// wait polls the page until cond holds of its record, failing the test
// after within (or when the test's time is up).
func (tab *sdkTab) wait(what string, within time.Duration, cond func(sdkRecord) bool) sdkRecord {
	tab.t.Helper()
	deadline := time.Now().Add(tab.env.remaining(within))
	for {
		r := tab.record()
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			tab.t.Fatalf("%s: %s: not within %v; the page has:\n%s", tab.name, what, within, r.describe())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func live(method string) func(sdkRecord) bool {
	return func(r sdkRecord) bool { return r.Now.Method == method && r.Now.Connected }
}

// --- publishing ------------------------------------------------------------------

// sdkWant is a published event that a page must get.
type sdkWant struct {
	id, channel, typ string
	data             any
}

// sdkFeed publishes numbered events through the instance, round-robin over
// the subscribed channels and the types, with events on channels the page
// does not subscribe to between them, and remembers what the pages must get.
type sdkFeed struct {
	t        *testing.T
	env      *sdkEnv
	channels []string
	types    []string

	mu   sync.Mutex
	n    int
	want []sdkWant // in the order of their ids
}

func (env *sdkEnv) newFeed(channels, types []string) *sdkFeed {
	return &sdkFeed{t: env.t, env: env, channels: channels, types: types}
}

// post publishes one event with an Idempotency-Key, retrying when the
// connection drops (the tests drop them), and returns its id. It may run on
// another goroutine than the test's.
func (f *sdkFeed) post(body, key string) (string, error) {
	var last error
	for range 10 {
		req, _ := http.NewRequest("POST", f.env.in.url+"/v1/events", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+f.env.key)
		req.Header.Set("Idempotency-Key", key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err
			time.Sleep(20 * time.Millisecond)
			continue
		}
		var out struct{ IDs []string }
		err = json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated || err != nil || len(out.IDs) != 1 {
			return "", fmt.Errorf("publish %.80s = %d, %v ids (%v)", body, res.StatusCode, out.IDs, err)
		}
		return out.IDs[0], nil
	}
	return "", fmt.Errorf("publish %.80s: %w", body, last)
}

// publishOne publishes the next event, and now and then one that is not for
// the pages.
func (f *sdkFeed) publishOne() error {
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	ch, typ := f.channels[n%len(f.channels)], f.types[n%len(f.types)]
	data := fmt.Sprintf(`{"n":%d,"s":"é 日本 😀\nline\u2028<b>&","list":[1,2.5,null,true]}`, n)
	id, err := f.post(fmt.Sprintf(`{"channel":%q,"type":%q,"data":%s}`, ch, typ, data), fmt.Sprintf("%s-%d", f.t.Name(), n))
	if err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		return err
	}
	f.mu.Lock()
	f.want = append(f.want, sdkWant{id: id, channel: ch, typ: typ, data: v})
	slices.SortFunc(f.want, func(a, b sdkWant) int { return compareIDs(a.id, b.id) })
	f.mu.Unlock()
	if n%4 == 0 { // not for u1, or not subscribed
		other := []string{"user:u2", "team:1"}[n/4%2]
		_, err = f.post(fmt.Sprintf(`{"channel":%q,"type":%q,"data":{"not":"for the pages"}}`, other, typ), fmt.Sprintf("%s-%d-other", f.t.Name(), n))
	}
	return err
}

func compareIDs(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// wanted returns what the pages must have got so far.
func (f *sdkFeed) wanted() []sdkWant {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.want)
}

func (f *sdkFeed) last() string {
	w := f.wanted()
	return w[len(w)-1].id
}

// publish publishes k events, one after another.
func (f *sdkFeed) publish(k int) {
	f.t.Helper()
	for range k {
		if err := f.publishOne(); err != nil {
			f.t.Fatal(err)
		}
	}
}

// background publishes an event every gap until the returned stop is called;
// stop returns the first error.
func (f *sdkFeed) background(gap time.Duration) (stop func() error) {
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			select {
			case <-done:
				return
			case <-time.After(gap):
			}
			if err := f.publishOne(); err != nil {
				errc <- err
				return
			}
		}
	}()
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() {
			close(done)
			err = <-errc
		})
		return err
	}
}

// publishUntil publishes an event every gap, from another goroutine, until
// cond holds of the page, and returns the record and how long it took.
func (f *sdkFeed) publishUntil(tab *sdkTab, what string, within, gap time.Duration, cond func(sdkRecord) bool) (sdkRecord, time.Duration) {
	f.t.Helper()
	stop := f.background(gap)
	defer stop() // when wait fails
	start := time.Now()
	r := tab.wait(what, within, cond)
	took := time.Since(start)
	if err := stop(); err != nil {
		f.t.Fatal(err)
	}
	return r, took
}

// publishFor publishes an event every gap, from another goroutine, for d,
// and returns the page's record of moments in between.
func (f *sdkFeed) publishFor(tab *sdkTab, d, gap time.Duration) []sdkRecord {
	f.t.Helper()
	stop := f.background(gap)
	defer stop()
	var out []sdkRecord
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		out = append(out, tab.record())
	}
	if err := stop(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// waitAll waits until the page has as many events as were published (or
// more), then a little longer, for an extra one to show.
func (f *sdkFeed) waitAll(tab *sdkTab, within time.Duration) sdkRecord {
	f.t.Helper()
	n := len(f.wanted())
	tab.wait(fmt.Sprintf("%d events", n), within, func(r sdkRecord) bool { return len(r.Events) >= n })
	time.Sleep(400 * time.Millisecond)
	return tab.record()
}

// check asserts that the page got exactly what was published for it: every
// event once, in order, with its channel, type and data; and that the typed
// handler got the events of its type once each, in order.
func (f *sdkFeed) check(who string, r sdkRecord, typed string) {
	f.t.Helper()
	all := f.wanted()
	checkSDKEvents(f.t, who, r.Events, all)
	if typed != "" {
		var want []string
		for _, w := range all {
			if w.typ == typed {
				want = append(want, w.id)
			}
		}
		if !slices.Equal(r.Typed, want) {
			f.t.Errorf("%s: the %q handler got %v, want %v", who, typed, r.Typed, want)
		}
	}
}

func checkSDKEvents(t *testing.T, who string, got []sdkEvent, want []sdkWant) {
	t.Helper()
	gotIDs := make([]string, len(got))
	for i, e := range got {
		gotIDs[i] = e.ID
	}
	wantIDs := make([]string, len(want))
	for i, w := range want {
		wantIDs[i] = w.id
	}
	if !slices.Equal(gotIDs, wantIDs) {
		seen := map[string]int{}
		var dups, extra, missing []string
		for _, id := range gotIDs {
			if seen[id]++; seen[id] == 2 {
				dups = append(dups, id)
			}
			if !slices.Contains(wantIDs, id) {
				extra = append(extra, id)
			}
		}
		for _, id := range wantIDs {
			if seen[id] == 0 {
				missing = append(missing, id)
			}
		}
		t.Errorf("%s got %d events, want %d once each, in order:\n\tgot  %v\n\twant %v\n\tmissing %v, repeated %v, not published for it %v",
			who, len(got), len(want), gotIDs, wantIDs, missing, dups, extra)
		return
	}
	for i, g := range got {
		w := want[i]
		var d any
		if err := json.Unmarshal(g.Data, &d); err != nil || !reflect.DeepEqual(d, w.data) {
			t.Errorf("%s: event %s has data %s (%v), want %#v", who, g.ID, g.Data, err, w.data)
		}
		if g.Type != w.typ || g.Channel != w.channel {
			t.Errorf("%s: event %s is %s/%s, want %s/%s", who, g.ID, g.Channel, g.Type, w.channel, w.typ)
		}
	}
}

// statesSince returns the changes of state the page recorded at or after
// the page time at.
func statesSince(r sdkRecord, at float64) []sdkState {
	var out []sdkState
	for _, s := range r.States {
		if s.At >= at {
			out = append(out, s)
		}
	}
	return out
}

func countRequests(r sdkRecord, method, pathPrefix string, status int) int {
	n := 0
	for _, q := range r.Requests {
		if q.Method == method && strings.HasPrefix(q.Path, pathPrefix) && (status == 0 || q.Status == status) {
			n++
		}
	}
	return n
}

func sdkHead(env *sdkEnv) *string {
	h := fmt.Sprint(env.p.head())
	return &h
}

// --- the tests -------------------------------------------------------------------

// TestBrowserSDKSSE: the SDK, loaded by a page from the service's origin,
// connects over SSE (through a ticket) and hands every published event of its
// channels to its handlers exactly once, in order, with channel, type and data
// intact, and none of other channels; one stream, one connection, one token.
func TestBrowserSDKSSE(t *testing.T) {
	env := newSDKEnv(t)
	tab := env.openSDKTab("the page", false)
	tab.navigate(env.proxy.url + "/healthz")
	types := []string{"chat.message", "note", "x:y-z_1"}
	tab.start(sdkOpts{Channels: []string{"broadcast", "user:u1"}, EventTypes: types[1:], Typed: types[0], Cursor: sdkHead(env), TTL: 600, Transports: sseFirst})
	tab.wait("connected over SSE", 10*time.Second, live("sse"))

	feed := env.newFeed([]string{"broadcast", "user:u1"}, types)
	feed.publish(6)
	r := feed.waitAll(tab, 10*time.Second)
	feed.check("the page", r, types[0])
	for range 3 { // and a burst
		feed.publish(4)
	}
	r = feed.waitAll(tab, 10*time.Second)
	feed.check("the page", r, types[0])

	for _, s := range r.States {
		if s.Method == "polling" {
			t.Errorf("the client used polling: %s", s)
		}
	}
	if r.Now.Cursor != feed.last() {
		t.Errorf("the client's cursor is %q, want the last event's id %s", r.Now.Cursor, feed.last())
	}
	if len(r.Sources) != 1 || len(r.Sources[0].Ready) != 1 || r.Sources[0].Errors != 0 {
		t.Fatalf("the client opened %d event sources, want 1 with one ready and no error:\n%s", len(r.Sources), r.describe())
	}
	if u := r.Sources[0].URL; !strings.Contains(u, "ticket=tk_") || strings.Contains(u, "eyJ") {
		t.Errorf("the stream's URL %q has no ticket, or has a token", u)
	}
	if n := countRequests(r, "POST", "/api/realtime/tickets", http.StatusCreated); r.TokenCalls != 1 || n != 1 {
		t.Errorf("getToken was called %d times, %d tickets were issued; want 1 and 1", r.TokenCalls, n)
	}
	id := r.Sources[0].Ready[0]
	conns := env.waitConnections("the page's one SSE connection", 5*time.Second, func(c []sdkConn) bool { return len(c) == 1 && c[0].ID == id })
	if c := conns[0]; c.Transport != "sse" || c.User != "u1" || !strings.Contains(c.UserAgent, "Chrome") {
		t.Errorf("the connection is %+v, want u1 over sse from Chrome", c)
	}
	tab.checkClean(true)
	if t.Failed() {
		t.FailNow()
	}

	// The service drops the stream (the proxy is fine), and events go on:
	// the client resumes from its cursor, loses nothing, repeats nothing, and
	// is live over SSE again.
	dropped := r.Clock
	env.dropConnections()
	feed.publishFor(tab, 2*sdkRetryInterval+time.Second, 20*time.Millisecond)
	tab.wait("live over SSE again after the drop", 10*time.Second, live("sse"))
	feed.publish(3)
	r = feed.waitAll(tab, 10*time.Second)
	feed.check("the page, after the drop", r, types[0])
	for _, s := range statesSince(r, dropped) {
		if s.Method == "polling" {
			// The browser reconnects only after the service's retry: (2 s;
			// up to 5 s at shutdown), so the ready deadline after a plain
			// drop must allow for it (RECONNECT_GRACE_MS in machine.ts), or
			// every drop reads as a buffering proxy.
			t.Errorf("after a plain drop the client went to polling: %s", s)
			break
		}
	}
	if t.Failed() {
		t.Logf("the page:\n%s", r.describe())
	}
	tab.checkClean(false) // the dropped stream is logged
}

// TestBrowserSDKNoEventSource: in a browser without EventSource the client
// long-polls from the start, and hands on every event once, in order: events
// published in bursts, one by one, and after a long-poll that timed out empty.
func TestBrowserSDKNoEventSource(t *testing.T) {
	env := newSDKEnv(t)
	tab := env.openSDKTab("the page", false)
	tab.navigate(env.proxy.url + "/healthz")
	types := []string{"note", "chat.message"}
	tab.start(sdkOpts{Channels: []string{"broadcast", "user:u1"}, EventTypes: types[1:], Typed: types[0], Cursor: sdkHead(env), TTL: 600, NoEventSource: true, Transports: sseFirst})
	start := time.Now()
	tab.wait("connected over polling", 10*time.Second, live("polling"))

	feed := env.newFeed([]string{"broadcast", "user:u1"}, types)
	feed.publish(5)
	feed.waitAll(tab, 10*time.Second)
	for range 6 { // one by one, each waking a held poll
		feed.publish(1)
		time.Sleep(150 * time.Millisecond)
	}
	feed.waitAll(tab, 10*time.Second)
	time.Sleep(2500 * time.Millisecond) // a held poll (pollTimeoutS 2) answers empty
	feed.publish(5)
	r := feed.waitAll(tab, 10*time.Second)
	feed.check("the page", r, types[0])
	elapsed := time.Since(start)

	for _, s := range r.States {
		if s.Method != "polling" && s.Method != "" {
			t.Errorf("the client used %q without EventSource: %s", s.Method, s)
		}
	}
	if len(r.Sources) != 0 || countRequests(r, "POST", "/api/realtime/tickets", 0) != 0 {
		t.Errorf("without EventSource the client asked for %d tickets and opened %d streams", countRequests(r, "POST", "/api/realtime/tickets", 0), len(r.Sources))
	}
	polls := countRequests(r, "GET", "/api/realtime/polling", 0)
	if bad := polls - countRequests(r, "GET", "/api/realtime/polling", 200); bad > 1 { // the one in flight
		t.Errorf("%d of %d polls did not answer 200:\n%s", bad, polls, r.describe())
	}
	// Each poll answers an event or waits pollTimeoutS: no spinning.
	if limit := len(feed.wanted()) + int(elapsed/(2*time.Second)) + 4; polls > limit {
		t.Errorf("%d polls in %v for %d events, want at most %d: the client spins", polls, elapsed.Round(time.Millisecond), len(feed.wanted()), limit)
	}
	if q := r.Requests[0]; q.Path != "/api/realtime/polling" || !strings.Contains(q.Query, "timeout=0") {
		t.Errorf("the first request is %s %s%s, want a poll with timeout=0", q.Method, q.Path, q.Query)
	}
	if r.TokenCalls != 1 {
		t.Errorf("getToken was called %d times with a 600 s token, want 1", r.TokenCalls)
	}
	t.Logf("%d polls in %v", polls, elapsed.Round(time.Millisecond))
	tab.checkClean(true)
}

// TestBrowserSDKFallbackAndBack: a proxy refuses SSE and the live stream
// drops: the client falls back to long-polling; SSE works again: the client
// returns to it within the retry interval. Then the proxy buffers SSE: the
// client sees no ready in time and polls, and stays on polling while the probes
// get nothing through; the buffering ends: back on SSE. Events are published
// all along, through every switch; each reaches the page once, in order.
func TestBrowserSDKFallbackAndBack(t *testing.T) {
	env := newSDKEnv(t)
	tab := env.openSDKTab("the page", false)
	tab.navigate(env.proxy.url + "/healthz")
	types := []string{"item", "note"}
	tab.start(sdkOpts{Channels: []string{"feed", "user:u1"}, EventTypes: types[1:], Typed: types[0], Cursor: sdkHead(env), TTL: 600, Transports: sseFirst})
	feed := env.newFeed([]string{"feed", "user:u1"}, types)
	const gap = 20 * time.Millisecond // events overlap every switch

	tab.wait("connected over SSE", 10*time.Second, live("sse"))
	feed.publish(5)
	feed.waitAll(tab, 10*time.Second)

	// 1. The proxy refuses SSE, and the live stream drops.
	env.proxy.blockSSE.Store(true)
	env.dropConnections()
	r, took := feed.publishUntil(tab, "polling after SSE was blocked", 15*time.Second, gap, live("polling"))
	t.Logf("SSE blocked: on polling after %v (%s)", took.Round(time.Millisecond), r.Now)
	feed.publish(5)
	feed.waitAll(tab, 10*time.Second)
	// Blocked for longer than a retry interval: the probe fails, polling goes on.
	sources := len(tab.record().Sources)
	for _, r := range feed.publishFor(tab, sdkRetryInterval+time.Second, gap) {
		if r.Now.Method != "polling" {
			t.Fatalf("while SSE is blocked the client left polling:\n%s", r.describe())
		}
	}
	r = feed.waitAll(tab, 10*time.Second)
	if len(r.Sources) == sources {
		t.Errorf("no SSE probe within %v of polling", sdkRetryInterval+time.Second)
	}
	feed.check("the page, on polling", r, types[0])
	// reconnect() tries SSE first: it fails to open failuresBeforeFallback
	// (2) times in a row, and the client polls again.
	at := r.Clock
	sdkEval[bool](tab, `(window.__client.reconnect(), true)`)
	r, took = feed.publishUntil(tab, "polling after reconnect() with SSE blocked", 10*time.Second, gap, func(r sdkRecord) bool {
		return live("polling")(r) && len(r.Sources) >= sources+2 && slices.ContainsFunc(statesSince(r, at), func(s sdkState) bool { return s.Method == "sse" })
	})
	t.Logf("reconnect() with SSE blocked: on polling again after %v", took.Round(time.Millisecond))
	if !slices.ContainsFunc(statesSince(r, at), func(s sdkState) bool {
		return s.Method == "polling" && strings.Contains(s.Error, "SSE connection failed")
	}) {
		t.Errorf("after reconnect() the client did not fall back for failed SSE opens:\n%s", r.describe())
	}
	feed.publish(3)
	r = feed.waitAll(tab, 10*time.Second)
	feed.check("the page, polling after reconnect()", r, types[0])

	// 2. SSE works again: back on it within the retry interval.
	env.proxy.blockSSE.Store(false)
	r, took = feed.publishUntil(tab, "SSE again", 10*time.Second, gap, live("sse"))
	t.Logf("SSE unblocked: on SSE after %v", took.Round(time.Millisecond))
	if bound := sdkRetryInterval + 1500*time.Millisecond; took > bound {
		t.Errorf("the client came back to SSE after %v, want within %v (sseRetryIntervalMs + a connect)", took.Round(time.Millisecond), bound)
	}
	feed.publish(5)
	r = feed.waitAll(tab, 10*time.Second)
	feed.check("the page, back on SSE", r, types[0])

	// 3. The proxy buffers SSE, and the live stream drops: no ready in time.
	env.proxy.bufferSSE.Store(true)
	env.dropConnections()
	r, took = feed.publishUntil(tab, "polling behind a buffering proxy", 15*time.Second, gap, live("polling"))
	t.Logf("SSE buffered: on polling after %v (%s)", took.Round(time.Millisecond), r.Now)
	if !strings.Contains(fmt.Sprint(statesSince(r, r.Clock-took.Seconds()*1000-500)), "no ready event") {
		t.Logf("the switch to polling was not for a missing ready:\n%s", r.describe())
	}
	sources = len(r.Sources)
	since := r.Clock
	for _, r := range feed.publishFor(tab, 2*sdkRetryInterval+time.Second, gap) {
		if r.Now.Method != "polling" {
			t.Fatalf("behind a buffering proxy the client left polling:\n%s", r.describe())
		}
	}
	r = feed.waitAll(tab, 10*time.Second)
	if n := len(r.Sources) - sources; n < 1 {
		t.Errorf("%d SSE probes in %v behind the buffering proxy, want at least 1", n, 2*sdkRetryInterval+time.Second)
	}
	for _, s := range statesSince(r, since) {
		if s.Method == "sse" && s.Connected {
			t.Errorf("behind a buffering proxy the client said it was live over SSE: %s", s)
		}
	}
	feed.check("the page, behind a buffering proxy", r, types[0])

	// 4. The buffering ends: back on SSE.
	env.proxy.bufferSSE.Store(false)
	_, took = feed.publishUntil(tab, "SSE after the buffering", 10*time.Second, gap, live("sse"))
	t.Logf("buffering over: on SSE after %v", took.Round(time.Millisecond))
	// A probe in flight through the buffering proxy times out first.
	if bound := sdkOpenTimeout + sdkRetryInterval + 1500*time.Millisecond; took > bound {
		t.Errorf("the client came back to SSE after %v, want within %v", took.Round(time.Millisecond), bound)
	}
	feed.publish(5)
	r = feed.waitAll(tab, 10*time.Second)
	feed.check("the page, at the end", r, types[0])
	if t.Failed() {
		t.Logf("the page:\n%s", r.describe())
	}
	t.Logf("%d events over %d event sources and %d polls", len(r.Events), len(r.Sources), countRequests(r, "GET", "/api/realtime/polling", 0))
	tab.checkClean(false) // the refused and buffered streams are logged
}

// TestBrowserSDKWebSocketFirst: with its default transports the SDK connects
// over hybridrt's WebSocket, and behind the misbehaving proxy it ends each
// time on the best transport that works, events published all along:
//
//  1. the upgrade refused (a proxy without WebSocket support): SSE;
//  2. the WebSocket back: the WebSocket again, within a retry interval;
//  3. the upgrade accepted, then nothing passed (a proxy that drops the
//     upgraded stream): SSE, after the open timeout, staying there while
//     the WebSocket stays silent;
//  4. the WebSocket blocked and SSE buffered: polling;
//  5. everything back: the WebSocket.
//
// The ledger shows every event once, in order, after each switch.
func TestBrowserSDKWebSocketFirst(t *testing.T) {
	env := newSDKEnv(t)
	tab := env.openSDKTab("the page", false)
	tab.navigate(env.proxy.url + "/healthz")
	types := []string{"item", "note"}
	channels := []string{"feed", "user:u1"}
	tab.start(sdkOpts{Channels: channels, EventTypes: types[1:], Typed: types[0], Cursor: sdkHead(env), TTL: 600})
	feed := env.newFeed(channels, types)
	const gap = 20 * time.Millisecond // events overlap every switch

	r := tab.wait("connected over the WebSocket", 10*time.Second, live("websocket"))
	if len(r.Sockets) != 1 || r.Sockets[0].Protocol != "hybridrt.v1" || len(r.Sources) != 0 {
		t.Fatalf("want one WebSocket with subprotocol hybridrt.v1 and no event source:\n%s", r.describe())
	}
	if u := r.Sockets[0].URL; !strings.HasSuffix(strings.SplitN(u, "?", 2)[0], "/api/realtime/ws") || strings.Contains(u, "eyJ") {
		t.Errorf("the WebSocket's URL is %s: want /api/realtime/ws, and never a token in it", u)
	}
	if sent := r.Sockets[0].Sent; len(sent) < 2 || sent[0].Op != "auth" || sent[1].Op != "subscribe" || sent[1].Cursor != *sdkHead(env) {
		t.Errorf("the SDK sent %+v: want auth, then subscribe from the cursor it was given", sent)
	}
	env.waitConnections("one connection, over ws", 5*time.Second, func(c []sdkConn) bool { return len(c) == 1 && c[0].Transport == "ws" })
	feed.publish(5)
	r = feed.waitAll(tab, 10*time.Second)
	feed.check("the page, on the WebSocket", r, types[0])

	// switchTo waits, publishing, for the page to be live over method, and
	// checks the ledger.
	switchTo := func(what, method string, within time.Duration) (sdkRecord, time.Duration) {
		t.Helper()
		r, took := feed.publishUntil(tab, what, within, gap, live(method))
		t.Logf("%s: on %s after %v", what, method, took.Round(time.Millisecond))
		feed.publish(3)
		r = feed.waitAll(tab, 10*time.Second)
		feed.check("the page, "+what, r, types[0])
		if t.Failed() {
			t.Fatalf("the page:\n%s", r.describe())
		}
		return r, took
	}
	// stays checks that the page stays on method for d while events flow.
	stays := func(what, method string, d time.Duration) {
		t.Helper()
		for _, r := range feed.publishFor(tab, d, gap) {
			if r.Now.Method != method {
				t.Fatalf("%s the client left %s:\n%s", what, method, r.describe())
			}
		}
	}

	// 1. The proxy refuses the upgrade, and the live socket drops.
	env.proxy.blockWS.Store(true)
	env.dropConnections()
	r, _ = switchTo("WebSocket refused", "sse", 15*time.Second)
	sockets := len(r.Sockets)
	stays("while the WebSocket is refused", "sse", sdkRetryInterval+time.Second)
	if r = tab.record(); len(r.Sockets) == sockets {
		t.Errorf("no WebSocket probe within %v of SSE", sdkRetryInterval+time.Second)
	}

	// 2. The WebSocket works again: back on it within the retry interval.
	env.proxy.blockWS.Store(false)
	_, took := switchTo("WebSocket back", "websocket", 10*time.Second)
	if bound := sdkRetryInterval + 1500*time.Millisecond; took > bound {
		t.Errorf("the client came back to the WebSocket after %v, want within %v (retryIntervalMs + a connect)", took.Round(time.Millisecond), bound)
	}

	// 3. The upgrade goes through but nothing passes, and the live socket
	// drops: no ready in time, and SSE, which works, takes over.
	env.proxy.silentWS.Store(true)
	env.dropConnections()
	r, _ = switchTo("WebSocket silent", "sse", 15*time.Second)
	since := r.Clock
	stays("while the WebSocket is silent", "sse", 2*sdkRetryInterval+time.Second)
	r = tab.record()
	silentProbes := 0
	for _, s := range r.Sockets {
		if s.At >= since && s.Opens == 1 && len(s.Ready) == 0 {
			silentProbes++
		}
	}
	if silentProbes == 0 {
		t.Errorf("no WebSocket probe was accepted and left silent in %v:\n%s", 2*sdkRetryInterval+time.Second, r.describe())
	}
	for _, s := range statesSince(r, since) {
		if s.Method == "websocket" && s.Connected {
			t.Errorf("behind a silent WebSocket the client said it was live over it: %s", s)
		}
	}

	// 4. The WebSocket refused and SSE buffered: polling.
	env.proxy.silentWS.Store(false)
	env.proxy.blockWS.Store(true)
	env.proxy.bufferSSE.Store(true)
	env.dropConnections()
	switchTo("WebSocket refused and SSE buffered", "polling", 20*time.Second)
	stays("with the WebSocket refused and SSE buffered", "polling", sdkRetryInterval+time.Second)

	// 5. Everything back: the WebSocket, directly or by way of SSE.
	env.proxy.blockWS.Store(false)
	env.proxy.bufferSSE.Store(false)
	_, took = switchTo("everything back", "websocket", 15*time.Second)
	// A probe in flight through the buffering proxy may time out first.
	if bound := sdkOpenTimeout + sdkRetryInterval + 1500*time.Millisecond; took > bound {
		t.Errorf("the client came back to the WebSocket after %v, want within %v", took.Round(time.Millisecond), bound)
	}
	env.waitConnections("one connection, over ws", 10*time.Second, func(c []sdkConn) bool { return len(c) == 1 && c[0].Transport == "ws" })
	r = tab.record()
	t.Logf("%d events over %d WebSockets, %d event sources and %d polls", len(r.Events), len(r.Sockets), len(r.Sources), countRequests(r, "GET", "/api/realtime/polling", 0))
	tab.checkClean(false) // the refused sockets and buffered streams are logged
}

// TestBrowserSDKWebSocketRenewal: over the WebSocket, with 5-second tokens,
// the client renews its token in place ({"op":"token"}, answered
// token_renewed) before each expires: one socket and one connection id
// throughout, and every event once, in order.
func TestBrowserSDKWebSocketRenewal(t *testing.T) {
	const ttl = 5
	env := newSDKEnv(t)
	tab := env.openSDKTab("the page", false)
	tab.navigate(env.proxy.url + "/healthz")
	types := []string{"tick"}
	channels := []string{"broadcast", "user:u1"}
	tab.start(sdkOpts{Channels: channels, EventTypes: types, Cursor: sdkHead(env), TTL: ttl})
	r := tab.wait("connected over the WebSocket", 10*time.Second, live("websocket"))
	connected := r.Clock
	id := r.Sockets[0].Ready[0]
	env.waitConnections("the page's connection", 5*time.Second, func(c []sdkConn) bool { return len(c) == 1 && c[0].ID == id })

	feed := env.newFeed(channels, types)
	for start := time.Now(); time.Since(start) < 13*time.Second; time.Sleep(500 * time.Millisecond) {
		feed.publish(1)
		if c := env.connections(); len(c) != 1 || c[0].ID != id {
			t.Fatalf("the connections are %+v, want only %s: the token was not renewed in place", c, id)
		}
	}
	r = feed.waitAll(tab, 10*time.Second)
	feed.check("the page", r, "")
	if len(r.Sockets) != 1 || r.Sockets[0].Renewed < 2 {
		t.Errorf("%d WebSockets, %d token_renewed: want one socket renewed at least twice in 13 s of 5 s tokens:\n%s", len(r.Sockets), r.Sockets[0].Renewed, r.describe())
	}
	for _, s := range statesSince(r, connected) {
		if !s.Connected || s.Method != "websocket" {
			t.Errorf("the client was not live over the WebSocket all along: %s", s)
		}
	}
	t.Logf("%d events, getToken called %d times, %d renewals in place", len(r.Events), r.TokenCalls, r.Sockets[0].Renewed)
	tab.checkClean(true)
}

// TestBrowserSDKTokenRenewal: with 7-second tokens, fresh from getToken at
// every call, the client renews the token of its live stream in place
// (POST /api/realtime/connections/{id}/token) at 80% of each token's life,
// well before it expires: over 15 s of events, one stream and one connection
// id throughout, no token_expired, and every event once, in order.
//
// 5 s tokens: short enough that a floor between renewals larger than 80% of
// the lifetime would make renewals late (as a 5 s floor once did).
func TestBrowserSDKTokenRenewal(t *testing.T) {
	const ttl = 5
	env := newSDKEnv(t)
	tab := env.openSDKTab("the page", false)
	tab.navigate(env.proxy.url + "/healthz")
	types := []string{"tick"}
	tab.start(sdkOpts{Channels: []string{"broadcast", "user:u1"}, EventTypes: types, Cursor: sdkHead(env), TTL: ttl, Transports: sseFirst})
	r := tab.wait("connected over SSE", 10*time.Second, live("sse"))
	connected := r.Clock
	id := r.Sources[0].Ready[0]
	env.waitConnections("the page's connection", 5*time.Second, func(c []sdkConn) bool { return len(c) == 1 && c[0].ID == id })

	feed := env.newFeed([]string{"broadcast", "user:u1"}, types)
	start := time.Now()
	for time.Since(start) < 15*time.Second {
		feed.publish(1)
		if c := env.connections(); len(c) != 1 || c[0].ID != id {
			t.Errorf("after %v the connections are %+v, want only %s: the stream was not renewed in place",
				time.Since(start).Round(time.Millisecond), c, id)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	r = feed.waitAll(tab, 10*time.Second)
	feed.check("the page", r, "")

	// Token i+1 renews the stream that token i authorized; the margin is
	// how long before token i's expiry the renewal was sent.
	env.mu.Lock()
	expires := slices.Clone(env.expires)
	env.mu.Unlock()
	renewals := 0
	var margins []string
	for _, q := range r.Requests {
		if q.Method == "POST" && strings.HasPrefix(q.Path, "/api/realtime/connections/") && strings.HasSuffix(q.Path, "/token") {
			if q.Path != "/api/realtime/connections/"+id+"/token" || q.Status != http.StatusOK {
				t.Errorf("renewal %s %s → %d, want 200 for %s", q.Method, q.Path, q.Status, id)
			}
			if renewals < len(expires) {
				margin := expires[renewals].Sub(time.UnixMilli(int64(q.At)))
				margins = append(margins, margin.Round(time.Millisecond).String())
				// 80% of 5 s leaves 1 s; at worst (a token minted late in
				// its second, exp being whole seconds) 0 s more, less getToken's time.
				if margin < 300*time.Millisecond {
					t.Errorf("renewal %d was sent %v before the token it replaced expired, want at least 300ms", renewals+1, margin.Round(time.Millisecond))
				}
			}
			renewals++
		}
	}
	t.Logf("each renewal was sent this long before the expiry of the token it replaced: %v", margins)
	if r.TokenCalls < 3 || renewals < 2 {
		t.Errorf("over %v with %d s tokens: getToken called %d times, %d renewals; want at least 3 and 2", time.Since(start).Round(time.Second), ttl, r.TokenCalls, renewals)
	}
	expired := 0
	for _, s := range r.Sources {
		expired += s.TokenExpired
	}
	if expired > 0 || len(r.Sources) != 1 || len(r.Sources[0].Ready) != 1 {
		t.Errorf("%d token_expired, %d event sources, %v ready: want 0 and one stream, never reconnected", expired, len(r.Sources), r.Sources[0].Ready)
	}
	for _, s := range statesSince(r, connected) {
		if !s.Connected || s.Method != "sse" {
			t.Errorf("the client was not live over SSE all along: %s", s)
		}
	}
	if t.Failed() {
		t.Logf("the page:\n%s", r.describe())
	}
	t.Logf("%d events, %d tokens (%d minted), %d renewals in place", len(r.Events), r.TokenCalls, env.mints.Load(), renewals)
	tab.checkClean(true)
}

// TestBrowserSDKTabs: two tabs of one origin with the same channels share
// one connection, over the WebSocket (the SDK's default). The first leads; the second joins after the first got
// events, gets them replayed from the leader's memory, then follows with the
// leader's events and state, making no request of its own; the service lists
// one connection. When the leader's tab closes (with events just published,
// perhaps not yet relayed), the other leads, connects from its cursor and goes
// on, with no event lost or repeated; again one connection.
func TestBrowserSDKTabs(t *testing.T) {
	env := newSDKEnv(t)
	opts := sdkOpts{Channels: []string{"dashboard", "user:u1"}, EventTypes: []string{"update"}, Cursor: sdkHead(env), TTL: 600, Share: true}
	feed := env.newFeed(opts.Channels, opts.EventTypes)

	a := env.openSDKTab("tab A", true)
	a.navigate(env.proxy.url + "/healthz")
	a.start(opts)
	a.wait("tab A to lead, over the WebSocket", 10*time.Second, func(r sdkRecord) bool { return r.Now.Role == "leader" && live("websocket")(r) })
	feed.publish(3)
	feed.waitAll(a, 10*time.Second)

	// Tab B starts from the same cursor, behind tab A's events.
	b := env.openSDKTab("tab B", true)
	b.navigate(env.proxy.url + "/healthz")
	b.start(opts)
	b.wait("tab B to follow, live", 10*time.Second, func(r sdkRecord) bool { return r.Now.Role == "follower" && live("websocket")(r) })
	feed.publish(6)
	ra := feed.waitAll(a, 10*time.Second)
	rb := feed.waitAll(b, 10*time.Second)
	feed.check("tab A", ra, "")
	feed.check("tab B (3 replayed, 6 relayed)", rb, "")

	tabs := map[string]*sdkTab{ra.Now.Role: a, rb.Now.Role: b}
	leader, follower := tabs["leader"], tabs["follower"]
	if leader == nil || follower == nil {
		t.Fatalf("tab A is %s, tab B is %s: want one leader and one follower", ra.Now.Role, rb.Now.Role)
	}
	rl, rf := leader.record(), follower.record()
	if len(rl.Sockets) != 1 || len(rl.Sockets[0].Ready) != 1 || len(rl.Sources) != 0 {
		t.Fatalf("the leader opened %d WebSockets and %d event sources, want one WebSocket:\n%s", len(rl.Sockets), len(rl.Sources), rl.describe())
	}
	leaderConn := rl.Sockets[0].Ready[0]
	env.waitConnections("one connection for both tabs", 5*time.Second, func(c []sdkConn) bool { return len(c) == 1 && c[0].ID == leaderConn })
	for range 5 { // and it stays one
		if c := env.connections(); len(c) != 1 || c[0].ID != leaderConn {
			t.Errorf("with two tabs the service lists %+v, want one connection, %s", c, leaderConn)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rf.TokenCalls != 0 || len(rf.Sources) != 0 || len(rf.Sockets) != 0 || len(rf.Requests) != 0 {
		t.Errorf("the follower called getToken %d times, opened %d event sources and %d WebSockets, made %d requests; want none",
			rf.TokenCalls, len(rf.Sources), len(rf.Sockets), len(rf.Requests))
	}
	if last := feed.last(); rf.Now.Cursor != last {
		t.Errorf("the follower's cursor is %q, want %s", rf.Now.Cursor, last)
	}
	leader.checkClean(true)
	if t.Failed() {
		t.FailNow()
	}

	// The leader's tab closes right after events are published: they may be
	// relayed before it goes, or not; events go on being published meanwhile.
	feed.publish(3)
	leader.close()
	_, took := feed.publishUntil(follower, "the other tab to lead, over the WebSocket", 15*time.Second, 20*time.Millisecond,
		func(r sdkRecord) bool { return r.Now.Role == "leader" && live("websocket")(r) })
	t.Logf("%s led and was live %v after %s closed", follower.name, took.Round(time.Millisecond), leader.name)
	feed.publish(6)
	rf = feed.waitAll(follower, 10*time.Second)
	feed.check(follower.name, rf, "")
	if len(rf.Sockets) != 1 || len(rf.Sockets[0].Ready) != 1 {
		t.Fatalf("%s opened %d WebSockets, want 1:\n%s", follower.name, len(rf.Sockets), rf.describe())
	}
	newConn := rf.Sockets[0].Ready[0]
	if newConn == leaderConn {
		t.Errorf("the new leader's connection has the old one's id %s", newConn)
	}
	env.waitConnections("the new leader's connection only", 5*time.Second, func(c []sdkConn) bool { return len(c) == 1 && c[0].ID == newConn })
	if i := slices.IndexFunc(rf.Sockets[0].Sent, func(m sdkSent) bool { return m.Op == "subscribe" }); i < 0 || rf.Sockets[0].Sent[i].Cursor == "" {
		t.Errorf("the new leader subscribed without a cursor: %+v", rf.Sockets[0].Sent)
	}
	if t.Failed() {
		t.Logf("%s:\n%s", follower.name, rf.describe())
	}
	follower.checkClean(true)
}

// TestBrowserSDKDashboardExample: the example page loads its scripts (React,
// the shim, the SDK's React bindings) without an error and renders its token
// form; with a token it connects and shows a published event.
func TestBrowserSDKDashboardExample(t *testing.T) {
	env := newSDKEnv(t)
	tab := env.openSDKTab("the dashboard", false)
	tab.navigate(env.proxy.url + "/examples/dashboard")
	tab.wait0("the token form", `!!document.querySelector('#root form #token') &&
		[...document.querySelectorAll('#root form button[type="submit"]')].some(b => b.textContent === 'Connect')`)
	if h1 := sdkEval[string](tab, `document.querySelector('h1').textContent`); h1 != "Dashboard example" {
		t.Errorf("the heading is %q", h1)
	}
	tab.checkClean(true)

	token, err := env.mint(tab.ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(tab.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS(`#root form button[type="submit"]`)),
	); err != nil {
		t.Fatalf("submit the token: %v", err)
	}
	tab.wait0("the feed connected over the WebSocket (the SDK's default)", `[...document.querySelectorAll('#root p')].some(p => p.textContent.startsWith('Connected over websocket'))`)
	ids := env.p.events(`{"channel":"broadcast","type":"test","data":{"hello":"dashboard"}}`)
	tab.wait0("the event in the feed", `!!document.querySelector('#feed li[data-event-id="`+ids[0]+`"]')`)
	tab.checkClean(true)
}

// wait0 waits until a JavaScript expression is true in the tab.
func (tab *sdkTab) wait0(what, expr string) {
	tab.t.Helper()
	deadline := time.Now().Add(tab.env.remaining(browserWait))
	for !sdkEval[bool](tab, expr) {
		if time.Now().After(deadline) {
			text := sdkEval[string](tab, `document.body ? document.body.innerText.slice(0, 1500) : ''`)
			tab.mu.Lock()
			problems := append(slices.Clone(tab.problems), tab.logErrors...)
			tab.mu.Unlock()
			tab.t.Fatalf("%s: %s: not within %v; the page shows:\n%s\nproblems: %q", tab.name, what, browserWait, text, problems)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
