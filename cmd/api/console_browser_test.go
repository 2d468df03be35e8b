package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

const (
	consoleStepWait = 10 * time.Second // bounds every wait on the browser
	consoleLiveWait = 5 * time.Second  // a live page must show a change within this
	consoleTestWait = 90 * time.Second // bounds the whole walk
)

// consoleProbe runs in every document of a tab before the page's own scripts
// (the console's CSP does not apply to it). It records what the page would
// only print to its console: CSP violations and htmx's failed requests; and
// it counts the openings of htmx's SSE connections.
const consoleProbe = `(() => {
	const p = window.__probe = {csp: [], htmx: [], sseOpen: 0};
	document.addEventListener('securitypolicyviolation', e =>
		p.csp.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' in ' + e.sourceFile + ':' + e.lineNumber));
	document.addEventListener('htmx:sseOpen', () => { p.sseOpen++; });
	for (const name of ['htmx:responseError', 'htmx:sendError', 'htmx:swapError', 'htmx:targetError', 'htmx:sseError']) {
		document.addEventListener(name, e => {
			const d = e.detail || {};
			p.htmx.push(name + (d.xhr ? ' ' + d.xhr.status + ' ' + d.xhr.responseURL : ''));
		});
	}
})()`

// consoleTab is one browser tab on the console, with what it saw go wrong.
type consoleTab struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu       sync.Mutex
	dialogs  []string // JavaScript dialogs that opened: none may
	problems []string // uncaught exceptions and errors in the browser's log
}

// openConsoleTab returns the tab of ctx, a chromedp context, watched for
// dialogs and errors. With newTab it opens a new tab beside ctx's, in the same
// browser context (so with the same cookies), and closes it when the test ends.
func openConsoleTab(t *testing.T, ctx context.Context, name string, newTab bool) *consoleTab {
	t.Helper()
	tab := &consoleTab{t: t, name: name, ctx: ctx}
	if newTab {
		tctx, cancel := chromedp.NewContext(ctx, chromedp.WithListener(tab.listen))
		tab.ctx = tctx
		t.Cleanup(func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = chromedp.Cancel(tctx) // closes the tab
				cancel()
			}()
			select {
			case <-done:
			case <-time.After(consoleStepWait):
				t.Errorf("%s did not close within %v", name, consoleStepWait)
			}
		})
		// The first Run opens the tab, for as long as ctx lives: no timeout here.
		if err := chromedp.Do(tctx); err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
	} else if err := chromedp.Listen(ctx, tab.listen); err != nil {
		t.Fatalf("listen to %s: %v", name, err)
	}
	cctx, cancel := context.WithTimeout(tab.ctx, consoleStepWait)
	defer cancel()
	if _, err := chromedp.Call(cctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: consoleProbe}); err != nil {
		t.Fatalf("%s: add the probe script: %v", name, err)
	}
	return tab
}

// listen runs in the tab's event loop: it must return fast and run no command.
func (tab *consoleTab) listen(ev any) {
	switch ev := ev.(type) {
	case *page.EventJavascriptDialogOpening:
		tab.mu.Lock()
		tab.dialogs = append(tab.dialogs, fmt.Sprintf("%s %q on %s", ev.Type, ev.Message, ev.URL))
		tab.mu.Unlock()
		// A dialog stalls the page: dismiss it, off this loop, so that the
		// test fails with the dialog's message rather than with a timeout.
		go chromedp.Call(tab.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{})
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		tab.problem(fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, text))
	case *log.EventEntryAdded:
		e := ev.Entry
		if e.Level != log.EntryLevelError || strings.HasSuffix(e.URL, "/favicon.ico") {
			return
		}
		tab.problem(fmt.Sprintf("browser log: %s error: %s (%s)", e.Source, e.Text, e.URL))
	}
}

func (tab *consoleTab) problem(s string) {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	tab.problems = append(tab.problems, s)
}

// pageProbe is what consoleProbe recorded in the current document.
type pageProbe struct {
	CSP     []string `json:"csp"`
	HTMX    []string `json:"htmx"`
	SSEOpen int      `json:"sseOpen"`
}

func (tab *consoleTab) probe() (pageProbe, error) {
	ctx, cancel := context.WithTimeout(tab.ctx, consoleStepWait)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[pageProbe](`window.__probe || {csp: [], htmx: [], sseOpen: 0}`))
}

// check fails the test if a dialog opened, or the page met a script error,
// a CSP violation or a failed htmx request, since the last check.
func (tab *consoleTab) check(step string) {
	tab.t.Helper()
	tab.mu.Lock()
	dialogs, problems := tab.dialogs, tab.problems
	tab.dialogs, tab.problems = nil, nil
	tab.mu.Unlock()
	if p, err := tab.probe(); err == nil {
		for _, v := range p.CSP {
			problems = append(problems, "CSP violation: "+v)
		}
		for _, v := range p.HTMX {
			problems = append(problems, "htmx: "+v)
		}
		_ = tab.eval(`(window.__probe && (window.__probe.csp = [], window.__probe.htmx = []), true)`)
	}
	if len(dialogs) > 0 {
		tab.t.Fatalf("%s, %s: a JavaScript dialog opened (injected script ran?): %s", tab.name, step, strings.Join(dialogs, "; "))
	}
	if len(problems) > 0 {
		tab.t.Errorf("%s, %s: the page went wrong:\n\t%s", tab.name, step, strings.Join(problems, "\n\t"))
	}
}

// describe tells where the tab is and what it shows, for a failure message.
func (tab *consoleTab) describe() string {
	ctx, cancel := context.WithTimeout(tab.ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + '\n' + (document.querySelector('main') || document.body || document.documentElement).innerText.slice(0, 1500)`))
	if err != nil {
		return fmt.Sprintf("(cannot read the page: %v)", err)
	}
	p, _ := tab.probe()
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return fmt.Sprintf("%s\n--- probe: %+v\n--- dialogs: %q\n--- problems: %q", s, p, tab.dialogs, tab.problems)
}

// do runs browser actions within consoleStepWait.
func (tab *consoleTab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, consoleStepWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tab.t.Fatalf("%s: %s: %v\nthe tab shows: %s", tab.name, what, err, tab.describe())
	}
}

// open loads a console page, as typing its address would, and wants 200.
func (tab *consoleTab) open(url string) {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, consoleStepWait)
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		tab.t.Fatalf("%s: open %s: %v", tab.name, url, err)
	}
	if res.Status != http.StatusOK {
		tab.t.Fatalf("%s: open %s: status %d, want 200\n%s", tab.name, url, res.Status, tab.describe())
	}
}

// eval evaluates a JavaScript expression in the tab, within consoleStepWait.
func (tab *consoleTab) eval(expr string) error {
	ctx, cancel := context.WithTimeout(tab.ctx, consoleStepWait)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](expr))
	return err
}

// consoleEval evaluates a JavaScript expression in the tab and decodes its value.
func consoleEval[T any](tab *consoleTab, expr string) T {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, consoleStepWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tab.t.Fatalf("%s: evaluate %.80q: %v\nthe tab shows: %s", tab.name, expr, err, tab.describe())
	}
	return v
}

// waitFor polls until the JavaScript expression is truthy, and fails the test
// if it is not within the given time (at most consoleStepWait). A navigation
// or a swap in progress only makes it try again.
func (tab *consoleTab) waitFor(what, expr string, within time.Duration) time.Duration {
	tab.t.Helper()
	within = min(within, consoleStepWait)
	start := time.Now()
	deadline := start.Add(within)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(tab.ctx, time.Until(deadline)+100*time.Millisecond)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+expr+`)`))
		cancel()
		if err == nil && ok {
			return time.Since(start)
		}
		lastErr = err
		if time.Now().After(deadline) || tab.ctx.Err() != nil {
			tab.t.Fatalf("%s: %s: not within %v (last error: %v)\nthe tab shows: %s", tab.name, what, within, lastErr, tab.describe())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// consoleHead returns the tenant's latest event id, through the API.
func consoleHead(t *testing.T, in *instance, key string) int64 {
	t.Helper()
	res := in.do("GET", "/v1/head", key, "")
	if res.status != http.StatusOK {
		t.Fatalf("GET /v1/head = %d %s", res.status, res.body)
	}
	var out struct{ ID string }
	res.json(t, &out)
	id, err := strconv.ParseInt(out.ID, 10, 64)
	if err != nil {
		t.Fatalf("GET /v1/head: id %q: %v", out.ID, err)
	}
	return id
}

// TestConsoleEndToEnd walks through the console in a real browser: sign up
// (with a tenant name that is an XSS probe), log out and in again, watch a
// test subscriber appear on the live clients table, fire test events and see
// them in the live log and at the subscriber, get a field error for a bad
// one, then create, use and revoke an API key. No JavaScript dialog may open,
// no script may fail and no CSP violation may happen on the way. With
// UPDATE_SCREENSHOT=1 it also writes docs/console.png.
func TestConsoleEndToEnd(t *testing.T) {
	// Not parallel: the live-update bounds below are wall-clock bounds, and
	// the package's parallel tests would compete for the CPU.
	chromiumPath(t) // fail, not skip, without Chromium; before starting a server
	start := time.Now()
	// The whole walk's bound. Cancelled last (cleanups run in reverse), so
	// that the tabs and the browser close gracefully first.
	ctx, cancel := context.WithTimeout(context.Background(), consoleTestWait)
	t.Cleanup(cancel)

	in := newInstance(t, pgtest.NewDB(t), testConfig())
	tab := openConsoleTab(t, newBrowser(t, ctx), "tab 1", false)

	// The dialog watch works: a dialog that a script opens is seen (and
	// dismissed), so the XSS probe below cannot pass for want of a watcher.
	tab.open(in.url + "/console/signup")
	if err := tab.eval(`setTimeout(() => alert('probe'), 0), true`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(consoleStepWait)
	for {
		tab.mu.Lock()
		n := len(tab.dialogs)
		tab.dialogs = nil
		tab.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dialog watch saw %d dialogs from alert('probe'), want 1", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tab.waitFor("the page to run again after the dialog", `document.readyState === 'complete'`, consoleStepWait)

	// 1. Sign up, with a tenant name that would run script if not escaped.
	const name = "Acme <script>alert(1)</script>"
	tab.do("sign up",
		chromedp.SendKeys(chromedp.CSS("#f-name"), name),
		chromedp.Click(chromedp.CSS(`form[action="/console/signup"] button[type="submit"]`)),
	)
	tab.waitFor("the sign-up result", `document.querySelector('#secret-api-key')`, consoleStepWait)
	apiKey := consoleEval[string](tab, `document.querySelector('#secret-api-key').textContent.trim()`)
	if !strings.HasPrefix(apiKey, "hrt_") || len(apiKey) < 20 {
		t.Fatalf("the API key shown is %q, want hrt_…", apiKey)
	}
	if h1 := consoleEval[string](tab, `document.querySelector('h1').textContent`); h1 != "Welcome, "+name {
		t.Errorf("the heading is %q, want %q: the tenant name is not rendered as text", h1, "Welcome, "+name)
	}
	if who := consoleEval[string](tab, `(document.querySelector('header form.logout .muted') || {}).textContent || ''`); who != name {
		t.Errorf("the header's tenant name is %q, want %q", who, name)
	}
	if n := consoleEval[int](tab, `document.querySelectorAll('script:not([src])').length`); n != 0 {
		t.Errorf("the page has %d inline <script> elements, want none: the tenant name was injected as HTML", n)
	}
	warn := consoleEval[string](tab, `(document.querySelector('#secret-api-key').closest('.secret-block').querySelector('.warning') || {}).textContent || ''`)
	if !strings.Contains(warn, "shown once") {
		t.Errorf("the warning above the API key is %q, want one that says it is shown once", warn)
	}
	tab.check("sign-up")

	// 2. Log out with the header's button, then log in with the key.
	tab.do("log out", chromedp.Click(chromedp.CSS(`header form.logout button[type="submit"]`)))
	tab.waitFor("the login page after logging out", `location.pathname === '/console/login' && document.querySelector('#f-apiKey')`, consoleStepWait)
	if cache := consoleEval[string](tab, `sessionStorage.getItem('htmx-history-cache') || ''`); strings.Contains(cache, apiKey) {
		t.Errorf("htmx's history cache in sessionStorage holds the API key shown once")
	}
	cookies := func() []*network.Cookie {
		cctx, cancel := context.WithTimeout(tab.ctx, consoleStepWait)
		defer cancel()
		res, err := chromedp.Call(cctx, network.GetCookies, network.GetCookiesParams{URLs: []string{in.url + "/console/"}})
		if err != nil {
			t.Fatalf("read the cookies: %v", err)
		}
		return res.Cookies
	}
	if c := cookies(); len(c) != 0 {
		t.Errorf("after logging out the browser still has %d cookies, e.g. %s", len(c), c[0].Name)
	}
	tab.do("log in",
		chromedp.SendKeys(chromedp.CSS("#f-apiKey"), apiKey),
		chromedp.Click(chromedp.CSS(`form[action="/console/login"] button[type="submit"]`)),
	)
	tab.waitFor("the overview after logging in", `location.pathname === '/console/overview' && (document.querySelector('h1') || {}).textContent === 'Overview'`, consoleStepWait)
	switch c := cookies(); {
	case len(c) != 1 || c[0].Name != "hybridrt_session":
		t.Errorf("after logging in the browser has %d cookies, want hybridrt_session only", len(c))
	case !c[0].HTTPOnly || c[0].SameSite != network.CookieSameSiteLax:
		t.Errorf("the session cookie has HttpOnly %v, SameSite %q; want true, Lax", c[0].HTTPOnly, c[0].SameSite)
	}
	tab.check("logging out and in")

	// The clients table, before any client connects; this document must stay
	// (no reload) while the subscriber appears in it.
	tab.open(in.url + "/console/clients")
	tab.waitFor("the empty clients table", `document.querySelector('#clients') && !document.querySelector('#clients tr[data-connection]')`, consoleStepWait)
	if err := tab.eval(`window.__sameDocument = true`); err != nil {
		t.Fatal(err)
	}

	// 3. A second tab, sharing the session, opens the test subscriber.
	sub := openConsoleTab(t, tab.ctx, "the subscriber tab", true)
	sub.open(in.url + "/console/subscriber")
	sub.waitFor("the subscriber to connect", `(document.querySelector('#sub-status') || {}).textContent === 'connected'`, consoleStepWait)
	sub.check("connecting the subscriber")

	// 4. The open clients page shows it within seconds, without a reload.
	row := `[...document.querySelectorAll('#clients tr[data-connection]')].find(tr =>
		tr.cells[0].textContent.trim() === 'console-tester' && tr.cells[2].textContent.trim() === 'sse')`
	took := tab.waitFor("a row for console-tester over sse on the live clients table", row, consoleLiveWait)
	t.Logf("the clients table showed the subscriber %v after it connected", took.Round(10*time.Millisecond))
	if !consoleEval[bool](tab, `window.__sameDocument === true`) {
		t.Errorf("the clients page reloaded: the table is not live")
	}
	if agent := consoleEval[string](tab, `(`+row+`).querySelector('td.agent').textContent`); !strings.Contains(agent, "Chrome") {
		t.Errorf("the subscriber's row has agent %q, want Chrome's", agent)
	}
	tab.do("narrow the window", chromedp.EmulateViewport(375, 812))
	if w := consoleEval[int](tab, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the clients page is %d px wide in a 375 px window: it scrolls sideways", w)
	}
	tab.do("widen the window", chromedp.EmulateViewport(1280, 900))
	tab.check("the clients page")

	// 5. Fire a test event from the Events page: the form says which, and
	// the event shows in the live log and at the subscriber.
	tab.open(in.url + "/console/events")
	// Events published before the log's stream opens are in neither the
	// page nor the stream: wait for it.
	tab.waitFor("the live log's stream to open", `window.__probe.sseOpen > 0`, consoleStepWait)
	fire := func(channel, typ, data string) {
		t.Helper()
		tab.do("fire "+channel+" "+typ,
			chromedp.SetValue(chromedp.CSS("#f-channel"), channel),
			chromedp.SetValue(chromedp.CSS("#f-type"), typ),
			chromedp.SetValue(chromedp.CSS("#f-data"), data),
			chromedp.Evaluate[chromedp.Void](`document.querySelector('#fire').dataset.sent = 'yes'`), // gone when the form is swapped
			chromedp.Click(chromedp.CSS(`#fire button[type="submit"]`)),
		)
		tab.waitFor("the fire form's answer", `document.querySelector('#fire') && !document.querySelector('#fire').dataset.sent`, consoleStepWait)
	}
	published := regexp.MustCompile(`Published event #(\d+)`)
	fireOK := func(channel, typ, data string) string {
		t.Helper()
		fire(channel, typ, data)
		status := consoleEval[string](tab, `(document.querySelector('#fire [role="status"]') || {}).textContent || ''`)
		m := published.FindStringSubmatch(status)
		if m == nil {
			t.Fatalf("after firing %s %s the form says %q, want Published event #N\n%s", channel, typ, status, tab.describe())
		}
		return m[1]
	}
	id := fireOK("broadcast", "test", `{"hello":"browser"}`)
	if head := consoleHead(t, in, apiKey); strconv.FormatInt(head, 10) != id {
		t.Errorf("the form says event #%s, the API's head is %d", id, head)
	}
	entry := `#log li[data-event-id="` + id + `"]`
	took = tab.waitFor("event #"+id+" in the live log", `document.querySelector('`+entry+`')`, consoleLiveWait)
	t.Logf("event #%s showed in the live log after %v", id, took.Round(10*time.Millisecond))
	took = sub.waitFor("event #"+id+" at the subscriber", `document.querySelector('#sub-log li[data-event-id="`+id+`"]')`, consoleLiveWait)
	t.Logf("event #%s showed at the subscriber after %v", id, took.Round(10*time.Millisecond))
	if n := consoleEval[int](tab, `document.querySelectorAll('`+entry+`').length`); n != 1 {
		t.Errorf("event #%s is %d times in the live log, want once", id, n)
	}
	if text := consoleEval[string](tab, `document.querySelector('`+entry+`').textContent`); !strings.Contains(text, "broadcast") || !strings.Contains(text, "test") || !strings.Contains(text, `{"hello":"browser"}`) {
		t.Errorf("the live log's entry reads %q, want broadcast, test and the data", text)
	}
	if data := consoleEval[string](sub, `document.querySelector('#sub-log li[data-event-id="`+id+`"] pre').textContent`); data != `{"hello":"browser"}` {
		t.Errorf("the subscriber shows data %q, want {\"hello\":\"browser\"}", data)
	}
	tab.check("firing a test event")
	sub.check("receiving the test event")

	// An invalid event: a field error by the channel, and nothing published.
	before := consoleHead(t, in, apiKey)
	entries := consoleEval[int](tab, `document.querySelectorAll('#log li').length`)
	fire("bad channel", "test", `{"hello":"browser"}`)
	tab.waitFor("a field error by the channel", `document.querySelector('#f-channel').closest('.field').querySelector('.field-error')`, consoleStepWait)
	if msg := consoleEval[string](tab, `document.querySelector('#f-channel').closest('.field').querySelector('.field-error').textContent`); strings.TrimSpace(msg) == "" {
		t.Errorf("the channel's field error is empty")
	}
	if !consoleEval[bool](tab, `document.querySelector('#f-channel').getAttribute('aria-invalid') === 'true'`) {
		t.Errorf("the channel field is not marked aria-invalid")
	}
	if v := consoleEval[string](tab, `document.querySelector('#f-channel').value`); v != "bad channel" {
		t.Errorf("the channel field holds %q after the error, want what was typed", v)
	}
	if s := consoleEval[string](tab, `(document.querySelector('#fire [role="status"]') || {}).textContent || ''`); s != "" {
		t.Errorf("the form says %q for an invalid event", s)
	}
	if head := consoleHead(t, in, apiKey); head != before {
		t.Errorf("an invalid test event moved the head from %d to %d: it was published", before, head)
	}
	time.Sleep(300 * time.Millisecond) // room for a wrongly published entry to show
	if n := consoleEval[int](tab, `document.querySelectorAll('#log li').length`); n != entries {
		t.Errorf("the live log went from %d to %d entries after an invalid event", entries, n)
	}
	tab.check("firing an invalid event")

	// Two more, so that the log shows several, newest first.
	id2 := fireOK("user:42", "order.created", `{"order": 1042, "total": "59.90", "currency": "EUR"}`)
	id3 := fireOK("dashboard", "metrics.updated", `{"activeUsers": 318, "p95ms": 41}`)
	tab.waitFor("events #"+id2+" and #"+id3+" in the live log",
		`document.querySelector('#log li[data-event-id="`+id2+`"]') && document.querySelector('#log li[data-event-id="`+id3+`"]')`, consoleLiveWait)
	order := consoleEval[[]string](tab, `[...document.querySelectorAll('#log li')].map(li => li.dataset.eventId)`)
	if want := []string{id3, id2, id}; len(order) != 3 || strings.Join(order, ",") != strings.Join(want, ",") {
		t.Errorf("the live log lists events %v, want %v (newest first, each once)", order, want)
	}
	tab.check("firing more events")

	// 7. The screenshot, of the Events page at rest: the mouse off the
	// buttons, the hover transitions and arrival highlights over. And the
	// page fits a 375 px window.
	tab.do("set the window to 1280×900, the mouse off the buttons",
		chromedp.EmulateViewport(1280, 900),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 1, 1),
		chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`),
	)
	tab.waitFor("the page to come to rest", `document.getAnimations().every(a => a.playState !== 'running' || a.effect.getTiming().iterations === Infinity)`, consoleStepWait)
	ssctx, sscancel := context.WithTimeout(tab.ctx, consoleStepWait)
	shot, err := chromedp.Run(ssctx, chromedp.FullScreenshot(100))
	sscancel()
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	t.Logf("screenshot of the Events page: %v, %d bytes", img.Bounds().Size(), len(shot))
	if w := img.Bounds().Dx(); w != 1280 {
		t.Errorf("the screenshot is %d px wide, want 1280", w)
	}
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		path := filepath.Join("..", "..", "docs", "console.png")
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
	tab.do("narrow the window", chromedp.EmulateViewport(375, 812))
	if w := consoleEval[int](tab, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the Events page is %d px wide in a 375 px window: it scrolls sideways", w)
	}
	tab.do("widen the window", chromedp.EmulateViewport(1280, 900))
	tab.check("the Events page's layout")

	// 6. Create an API key, use it, revoke it.
	tab.open(in.url + "/console/keys")
	tab.do("create a key named ci",
		chromedp.SendKeys(chromedp.CSS("#f-name"), "ci"),
		chromedp.Click(chromedp.CSS(`form[action="/console/keys"] button[type="submit"]`)),
	)
	tab.waitFor("the new key", `document.querySelector('#secret-new-key')`, consoleStepWait)
	newKey := consoleEval[string](tab, `document.querySelector('#secret-new-key').textContent.trim()`)
	if !strings.HasPrefix(newKey, "hrt_") || newKey == apiKey {
		t.Fatalf("the new key shown is %q, want a new hrt_… key", newKey)
	}
	if warn := consoleEval[string](tab, `(document.querySelector('#secret-new-key').closest('.secret-block').querySelector('.warning') || {}).textContent || ''`); !strings.Contains(warn, "shown once") {
		t.Errorf("the warning above the new key is %q, want one that says it is shown once", warn)
	}
	res := in.do("GET", "/v1/tenant", newKey, "")
	if res.status != http.StatusOK {
		t.Fatalf("GET /v1/tenant with the new key = %d %s, want 200", res.status, res.body)
	}
	var got struct{ Name string }
	res.json(t, &got)
	if got.Name != name {
		t.Errorf("GET /v1/tenant names the tenant %q, want %q", got.Name, name)
	}
	keyID := consoleEval[string](tab, `([...document.querySelectorAll('tr[data-key]')].find(tr => tr.cells[0].textContent.trim() === 'ci') || {dataset: {}}).dataset.key || ''`)
	if keyID == "" {
		t.Fatalf("no row for key ci in the keys table\n%s", tab.describe())
	}
	keyRow := `tr[data-key="` + keyID + `"]`
	tab.do("open the revoke confirmation", chromedp.Click(chromedp.CSS(keyRow+` details.confirm > summary`)))
	tab.waitFor("the revoke button", `document.querySelector('`+keyRow+` details.confirm').open`, consoleStepWait)
	if b := consoleEval[string](tab, `document.querySelector('`+keyRow+` button.danger').textContent.trim()`); b != "Yes, revoke ci" {
		t.Errorf("the revoke button says %q, want Yes, revoke ci", b)
	}
	tab.do("revoke the key", chromedp.Click(chromedp.CSS(keyRow+` button.danger`)))
	tab.waitFor("the revoked flash", `[...document.querySelectorAll('.flash')].some(f => /revoked/i.test(f.textContent))`, consoleStepWait)
	if consoleEval[bool](tab, `!!document.querySelector('.flash.error')`) {
		t.Errorf("revoking shows an error flash: %s", tab.describe())
	}
	if consoleEval[bool](tab, `!!document.querySelector('`+keyRow+`')`) {
		t.Errorf("the revoked key is still listed as active")
	}
	if cache := consoleEval[string](tab, `sessionStorage.getItem('htmx-history-cache') || ''`); strings.Contains(cache, newKey) {
		t.Errorf("htmx's history cache in sessionStorage holds the new key shown once")
	}
	if res := in.do("GET", "/v1/tenant", newKey, ""); res.status != http.StatusUnauthorized {
		t.Errorf("GET /v1/tenant with the revoked key = %d %s, want 401", res.status, res.body)
	}
	if res := in.do("GET", "/v1/tenant", apiKey, ""); res.status != http.StatusOK {
		t.Errorf("GET /v1/tenant with the first key, not revoked = %d %s, want 200", res.status, res.body)
	}
	tab.check("the keys page")
	sub.check("the end")

	if d := time.Since(start); d > consoleTestWait {
		t.Errorf("the walk took %v, more than %v", d, consoleTestWait)
	}
}
