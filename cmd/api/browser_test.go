package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// browserWait bounds each wait on the browser.
const browserWait = 20 * time.Second

// browserEvent is an event as the page's EventSource dispatched it.
type browserEvent struct {
	Type        string `json:"type"`
	LastEventID string `json:"lastEventId"`
	Data        string `json:"data"`
}

// browserState is what the page recorded so far.
type browserState struct {
	Got        []browserEvent `json:"got"`   // every event but ready
	Ready      []browserEvent `json:"ready"` // one per connection
	Opens      int            `json:"opens"`
	Errors     int            `json:"errors"`
	ReadyState int            `json:"readyState"`
}

// chromiumPath finds Chromium, or fails the test: a skipped browser test
// would hide that the browser path is untested.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("Chromium is not installed (%v): run scripts/chromium.sh, which installs it, then run the tests again", err)
	}
	return path
}

// newBrowser starts headless Chromium for the test, with extra options
// after the usual ones, and returns a context of its one tab. The browser
// lives until the test ends, or until ctx does. A browser process that
// exits before it is ready (seen once in many CI runs, with nothing in its
// output but the usual D-Bus complaints) is started once more; a second
// failure fails the test.
func newBrowser(t *testing.T, ctx context.Context, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	bctx, err := startBrowser(t, ctx, extra)
	if err != nil && strings.Contains(err.Error(), "chrome failed to start") {
		t.Logf("Chromium exited before it was ready (%v); starting it once more", err)
		bctx, err = startBrowser(t, ctx, extra)
	}
	if err != nil {
		t.Fatal(err)
	}
	return bctx
}

// startBrowser starts one Chromium process, closed when the test ends.
func startBrowser(t *testing.T, ctx context.Context, extra []chromedp.ExecAllocatorOption) (context.Context, error) {
	path := chromiumPath(t)
	var output syncBuffer
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // root in a container has no user namespaces for the sandbox
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true), // /dev/shm is 64 MB in some containers
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(&output),
	}, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		// Close the browser gracefully, then wait for its process to end,
		// before the instance's cleanup shuts the server down.
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = chromedp.Cancel(bctx)
			cancelBrowser()
			cancelAlloc()
		}()
		select {
		case <-done:
		case <-cctx.Done():
			t.Errorf("Chromium did not exit within 10 s")
		}
		if t.Failed() {
			t.Logf("Chromium's output:\n%s", output.String())
		}
	})
	// The first Run starts the browser, bound to ctx: no shorter timeout here.
	if err := chromedp.Do(bctx); err != nil {
		return nil, fmt.Errorf("start Chromium %s: %w\n%s", path, err, output.String())
	}
	return bctx, nil
}

// evalIn evaluates a JavaScript expression in the tab, within browserWait.
func evalIn[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ectx, cancel := context.WithTimeout(ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ectx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %.60q: %v", expr, err)
	}
	return v
}

const stateJS = `({got: window.got, ready: window.ready, opens: window.opens, errors: window.errors, readyState: window.es.readyState})`

// waitBrowser polls the page until cond holds of what it recorded, failing
// the test after browserWait.
func waitBrowser(t *testing.T, ctx context.Context, what string, cond func(browserState) bool) browserState {
	t.Helper()
	deadline := time.Now().Add(browserWait)
	for {
		st := evalIn[browserState](t, ctx, stateJS)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			for _, list := range [][]browserEvent{st.Got, st.Ready} {
				for i := range list {
					if len(list[i].Data) > 200 {
						list[i].Data = list[i].Data[:200] + "…"
					}
				}
			}
			b, _ := json.MarshalIndent(st, "", "  ")
			t.Fatalf("browser: %s: not within %v; the page has:\n%s", what, browserWait, b)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("browser: %s: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// browserWant is a published event that the browser must receive.
type browserWant struct {
	id, channel, typ string
	data             any // the published data, decoded
}

// publishFor publishes one event through the API and returns what the
// browser should see of it.
func publishFor(t *testing.T, p *publisher, channel, typ, data string) browserWant {
	t.Helper()
	body := fmt.Sprintf(`{"channel":%q,"type":%q,"data":%s}`, channel, typ, data)
	ids := p.events(body)
	if len(ids) != 1 {
		t.Fatalf("publish %s: %d ids, want 1", body, len(ids))
	}
	var v any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("test data %s is not JSON: %v", data, err)
	}
	return browserWant{id: ids[0], channel: channel, typ: typ, data: v}
}

// checkBrowserEvents asserts that got is want exactly: each event once, in
// order, its lastEventId the envelope's id, and JSON.parse(data) the
// envelope of what was published.
func checkBrowserEvents(t *testing.T, p *publisher, got []browserEvent, want []browserWant) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("browser got %d events, want %d", len(got), len(want))
	}
	for i, g := range got {
		var env envelope
		if err := json.Unmarshal([]byte(g.Data), &env); err != nil {
			t.Errorf("browser event %d: data %q is not a JSON envelope: %v", i, g.Data, err)
			continue
		}
		published.check(t, p.tenantID, "u1", []string{"broadcast"}, []string{"broadcast", "user:u1"}, env)
		if i >= len(want) {
			t.Errorf("browser event %d is extra: %s %s", i, g.Type, g.Data)
			continue
		}
		w := want[i]
		if g.LastEventID != w.id || env.ID != w.id {
			t.Errorf("browser event %d: lastEventId %q, envelope id %q, want %s", i, g.LastEventID, env.ID, w.id)
		}
		if g.Type != w.typ || env.Type != w.typ || env.Channel != w.channel {
			t.Errorf("browser event %d: type %q, envelope %s/%s, want %s/%s", i, g.Type, env.Channel, env.Type, w.channel, w.typ)
		}
		var d any
		if err := json.Unmarshal(env.Data, &d); err != nil || !reflect.DeepEqual(d, w.data) {
			t.Errorf("browser event %d: data %s (%v), want %#v", i, env.Data, err, w.data)
		}
	}
}

// TestBrowserEventSource: a real browser's EventSource, with a ticket, gets
// every event once, in order, with its id and its data intact, whatever
// characters the data holds; and when the server drops the stream, the
// browser's own reconnect sends Last-Event-ID and loses nothing.
func TestBrowserEventSource(t *testing.T) {
	t.Parallel()
	chromiumPath(t) // fail fast, before starting a server
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tk := in.ticket(p.token("u1", []string{"broadcast"}, 600))

	// The page comes from the API's own origin: the API sends no CORS headers.
	bctx := newBrowser(t, ctx)
	nctx, ncancel := context.WithTimeout(bctx, browserWait)
	defer ncancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(in.url+"/healthz")); err != nil {
		t.Fatalf("navigate to %s/healthz: %v", in.url, err)
	}

	types := []string{"chat.message", "note", "x:y-z_1"}
	// Listen also for what must never come: an injected or system event.
	listen := append(slices.Clip(types), "admin", "resync", "token_expired")
	ticketJS, _ := json.Marshal(tk)
	typesJS, _ := json.Marshal(listen)
	evalIn[bool](t, bctx, `(() => {
		window.got = []; window.ready = []; window.opens = 0; window.errors = 0;
		const es = new EventSource('/api/realtime/sse?channels=broadcast,user:u1&ticket=' + `+string(ticketJS)+`);
		window.es = es;
		const rec = list => e => list.push({type: e.type, lastEventId: e.lastEventId, data: e.data});
		for (const t of `+string(typesJS)+`) es.addEventListener(t, rec(window.got));
		es.onmessage = rec(window.got); // an event without an event: field
		es.addEventListener('ready', rec(window.ready));
		es.onopen = () => { window.opens++; };
		es.onerror = () => { window.errors++; };
		return true;
	})()`)
	st := waitBrowser(t, bctx, "the first ready event", func(s browserState) bool { return len(s.Ready) == 1 })
	if st.Opens != 1 || st.Errors != 0 || len(st.Got) != 0 {
		t.Errorf("after connecting: %d opens, %d errors, %d events; want 1, 0, 0", st.Opens, st.Errors, len(st.Got))
	}
	var ready struct{ ConnectionID, Cursor string }
	if err := json.Unmarshal([]byte(st.Ready[0].Data), &ready); err != nil || !strings.HasPrefix(ready.ConnectionID, "c_") {
		t.Errorf("ready data %q: %v", st.Ready[0].Data, err)
	}

	// Data that an SSE encoder can get wrong: line breaks that would end a
	// data line or an event, a CR alone, characters outside ASCII and the
	// BMP, escapes, and a string that is an event of its own if sent raw.
	datas := []string{
		`{"text":"line1\nline2\n\nline4\n"}`,
		`{"text":"cr\ralone\r\nand crlf\r\n\r\n","lead":" data: x"}`,
		`{"text":"é 日本 😀"}`,
		`"a\n\nevent: admin\ndata: x"`,
		`{"escaped":"\u00e9\u65e5\ud83d\ude00\u2028\u2029\ufeff","nul":"\u0000","quote":"\"\\/"}`,
		`[1, 2.5, -3e2, true, null, {"k": "id: 999\nretry: 1\n: comment"}]`,
		`"` + strings.Repeat(`é日😀\n`, 2000) + `"`, // 22 KB, many TCP segments
		`null`,
		`{}`,
	}
	var want []browserWant
	for i, d := range datas {
		want = append(want, publishFor(t, p, []string{"broadcast", "user:u1"}[i%2], types[i%len(types)], d))
		// Events on channels the page did not subscribe to, between them.
		publishFor(t, p, "user:u2", "note", `{"not":"for u1"}`)
		publishFor(t, p, "team:1", "note", `{"not":"subscribed"}`)
	}
	st = waitBrowser(t, bctx, fmt.Sprintf("%d events", len(want)), func(s browserState) bool { return len(s.Got) >= len(want) })
	time.Sleep(300 * time.Millisecond) // room for an extra event to show
	st = evalIn[browserState](t, bctx, stateJS)
	checkBrowserEvents(t, p, st.Got, want)
	if t.Failed() {
		t.FailNow()
	}

	// The server drops every connection. The last event published before is
	// on a channel the page does not read, so the tenant's head is past the
	// page's last event id: a reconnect without Last-Event-ID would start
	// from the head, and the ready event's cursor would show it.
	last := want[len(want)-1].id
	publishFor(t, p, "user:u2", "note", `{"not":"for u1"}`)
	in.dropConnections()
	waitBrowser(t, bctx, "the browser to see the drop", func(s browserState) bool { return s.Errors >= 1 })
	// EventSource waits retry: 2000 ms before reconnecting; publish now.
	var more []browserWant
	for i := range 3 {
		more = append(more, publishFor(t, p, "broadcast", "note", fmt.Sprintf(`{"after":%d,"s":"é\n😀"}`, i)))
	}
	if st := evalIn[browserState](t, bctx, stateJS); len(st.Ready) > 1 {
		t.Logf("the browser reconnected before the 3 events were published; they came live, not replayed")
	}
	want = append(want, more...)
	st = waitBrowser(t, bctx, "the browser to reconnect", func(s browserState) bool { return len(s.Ready) >= 2 })
	var again struct{ ConnectionID, Cursor string }
	if err := json.Unmarshal([]byte(st.Ready[1].Data), &again); err != nil {
		t.Errorf("second ready data %q: %v", st.Ready[1].Data, err)
	}
	if again.Cursor != last || st.Ready[1].LastEventID != last {
		t.Fatalf("the reconnect resumed from %q (ready id %q), want %s: the browser's Last-Event-ID was not honoured",
			again.Cursor, st.Ready[1].LastEventID, last)
	}
	if again.ConnectionID == ready.ConnectionID {
		t.Errorf("the reconnect has the old connection id %s", ready.ConnectionID)
	}
	st = waitBrowser(t, bctx, "the 3 events published while disconnected", func(s browserState) bool { return len(s.Got) >= len(want) })
	time.Sleep(300 * time.Millisecond)
	st = evalIn[browserState](t, bctx, stateJS)
	checkBrowserEvents(t, p, st.Got, want)
	if len(st.Ready) != 2 || st.Opens != 2 || st.ReadyState != 1 {
		t.Errorf("after the drop: %d ready events, %d opens, readyState %d; want 2, 2, 1 (OPEN)", len(st.Ready), st.Opens, st.ReadyState)
	}

	// The dropped connection leaves the registry; only the new one is listed.
	deadline := time.Now().Add(browserWait)
	for {
		var out struct {
			Connections []struct{ ID, Transport, UserAgent string }
		}
		res := in.do("GET", "/v1/connections", p.key, "")
		if res.status != http.StatusOK {
			t.Fatalf("GET /v1/connections = %d %s", res.status, res.body)
		}
		res.json(t, &out)
		if len(out.Connections) == 1 && out.Connections[0].ID == again.ConnectionID {
			if c := out.Connections[0]; c.Transport != "sse" || !strings.Contains(c.UserAgent, "Chrome") {
				t.Errorf("connection = %+v, want sse from Chrome", c)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections = %s, want only %s", res.body, again.ConnectionID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
