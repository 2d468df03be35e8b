package main

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// A member whose user id and info are HTML: a page that shows them
// unescaped runs script.
const (
	xssUser = `<script>alert(1)</script>`
	xssData = `{"user_id":"<script>alert(1)</script>","user_info":{"bio": "<img src=x onerror=alert(2)>", "tags": [1, 2]}}`
	xssInfo = `{"bio":"<img src=x onerror=alert(2)>","tags":[1,2]}` // compact
)

// joinAsXSS joins c to a presence channel as that member.
func (c *wsClient) joinAsXSS(key, secret, ch string) {
	c.t.Helper()
	c.subscribePrivate(key, secret, ch, xssData)
	c.next("pusher_internal:subscription_succeeded")
}

var (
	presenceRow = regexp.MustCompile(`(?s)<tr data-presence-channel="([^"]*)">.*?data-testid="members">(\d+)<`)
	memberRow   = regexp.MustCompile(`(?s)<tr data-member="([^"]*)"><td><code>([^<]*)</code></td><td>(?:<code data-testid="info">([^<]*)</code>)?`)
)

// presenceChannelsIn returns the member count of each presence channel a
// page lists.
func presenceChannelsIn(body string) map[string]string {
	got := map[string]string{}
	for _, m := range presenceRow.FindAllStringSubmatch(body, -1) {
		got[html.UnescapeString(m[1])] = m[2]
	}
	return got
}

// membersIn returns the members a page lists, user id → info, as text.
func membersIn(t *testing.T, body string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, m := range memberRow.FindAllStringSubmatch(body, -1) {
		id := html.UnescapeString(m[1])
		if text := html.UnescapeString(m[2]); text != id {
			t.Errorf("member %q is shown as %q", id, text)
		}
		got[id] = html.UnescapeString(m[3])
	}
	return got
}

// TestConsolePresence: the Pusher page lists the tenant's presence channels
// with members and their counts, each linking to its members (user id and
// info as JSON text, escaped); a fragment of each refreshes; a bad name in
// the look-up form gets an error under the field; another tenant's members
// never show; without a session the fragments are the console's.
func TestConsolePresence(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme, other := in.signup("Acme"), in.signup("Other")
	key, secret := acme.SigningKey.Kid, acme.SigningKey.Secret

	ann := connectPusher(t, in.url, key)
	ann.joinPresence(key, secret, "presence-room", "ann")
	connectPusher(t, in.url, key).joinAsXSS(key, secret, "presence-room")
	connectPusher(t, in.url, key).joinPresence(key, secret, "presence-lobby", "bob")
	okey, osecret := other.SigningKey.Kid, other.SigningKey.Secret
	connectPusher(t, in.url, okey).joinPresence(okey, osecret, "presence-room", "other-tenants-intruder")
	connectPusher(t, in.url, okey).joinPresence(okey, osecret, "presence-secret", "other-tenants-spy")

	b := in.browser()
	b.login(acme.APIKey)
	code, body, _ := b.get("/console/pusher")
	if code != 200 {
		t.Fatalf("GET /console/pusher = %d", code)
	}
	want := map[string]string{"presence-room": "2", "presence-lobby": "1"}
	if got := presenceChannelsIn(body); !reflect.DeepEqual(got, want) {
		t.Errorf("the Pusher page lists presence channels %v, want %v", got, want)
	}
	for _, w := range []string{
		`id="presence-channels" hx-get="/console/pusher/presence" hx-trigger="every 5s" hx-swap="outerHTML"`,
		`href="/console/pusher?channel=presence-room#presence-lookup" hx-get="/console/pusher?channel=presence-room" hx-target="#presence-lookup" hx-select="#presence-lookup"`,
		`<form method="get" action="/console/pusher#presence-lookup"`, `name="channel"`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("GET /console/pusher lacks %q", w)
		}
	}
	if strings.Contains(body, `id="presence-members"`) {
		t.Errorf("GET /console/pusher shows members before a channel is picked")
	}

	// The list's fragment, as it refreshes itself.
	code, body, _ = b.get("/console/pusher/presence", "HX-Request", "true")
	if got := presenceChannelsIn(body); code != 200 || !reflect.DeepEqual(got, want) || strings.Contains(body, "<html") {
		t.Errorf("GET /console/pusher/presence = %d, lists %v, want the fragment with %v", code, got, want)
	}

	// A channel's members: through the page's link (without JavaScript, or
	// with htmx picking its part out) and through the refreshing fragment.
	wantMembers := map[string]string{"ann": `{"name":"ann"}`, xssUser: xssInfo}
	for _, path := range []string{"/console/pusher?channel=presence-room", "/console/pusher/presence/members?channel=presence-room"} {
		code, body, _ := b.get(path)
		if got := membersIn(t, body); code != 200 || !reflect.DeepEqual(got, wantMembers) {
			t.Errorf("GET %s = %d, members %q, want %q", path, code, got, wantMembers)
		}
		for _, w := range []string{`data-testid="member-count">2 members<`, `hx-get="/console/pusher/presence/members?channel=presence-room" hx-trigger="every 5s"`} {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s lacks %q", path, w)
			}
		}
		for _, leak := range []string{"<script>alert", "<img", "other-tenants-intruder", "other-tenants-spy"} {
			if strings.Contains(body, leak) {
				t.Errorf("GET %s shows %q: unescaped HTML, or another tenant's member", path, leak)
			}
		}
	}
	if _, body, _ := b.get("/console/pusher/presence/members?channel=presence-room"); strings.Contains(body, "<html") {
		t.Errorf("the members fragment is a whole page")
	}
	if _, body, _ := b.get("/console/pusher?channel=+presence-lobby+"); !reflect.DeepEqual(membersIn(t, body), map[string]string{"bob": `{"name":"bob"}`}) || !strings.Contains(body, `value="presence-lobby"`) {
		t.Errorf("presence-lobby's members = %q, want bob", membersIn(t, body))
	}
	if _, body, _ := b.get("/console/pusher?channel=presence-empty"); !strings.Contains(body, "No one is in this channel now.") || !strings.Contains(body, "0 members") {
		t.Errorf("a presence channel without members does not say so")
	}

	// Bad names: the error under the field, the name kept, no members.
	for _, tc := range []struct{ name, want string }{
		{"", "Type a presence channel&#39;s name"},
		{"presence room", "only A-Z a-z 0-9 _ - . : @ = are allowed"},
		{"private-chat", "Only presence channels have members"},
		{"presence-<script>alert(3)</script>", "only A-Z a-z 0-9"},
		{strings.Repeat("presence-", 30), "1 to 200 characters"},
	} {
		code, body, _ := b.get("/console/pusher?channel=" + url.QueryEscape(tc.name))
		for _, w := range []string{`aria-invalid="true"`, `<p class="field-error" id="e-channel">`, tc.want, `value="` + html.EscapeString(tc.name) + `"`} {
			if code != 200 || !strings.Contains(body, w) {
				t.Errorf("looking up %q = %d, lacks %q", tc.name, code, w)
			}
		}
		if strings.Contains(body, `id="presence-members"`) || strings.Contains(body, "<script>alert") {
			t.Errorf("looking up %q shows members, or the name unescaped", tc.name)
		}
		if code, _, _ := b.get("/console/pusher/presence/members?channel=" + url.QueryEscape(tc.name)); code != http.StatusBadRequest {
			t.Errorf("the members fragment of %q = %d, want 400", tc.name, code)
		}
	}

	// Another tenant's console: its own channels and members only.
	ob := in.browser()
	ob.login(other.APIKey)
	_, body, _ = ob.get("/console/pusher")
	if got, want := presenceChannelsIn(body), map[string]string{"presence-room": "1", "presence-secret": "1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("the other tenant's Pusher page lists %v, want %v", got, want)
	}
	_, body, _ = ob.get("/console/pusher?channel=presence-room")
	if got := membersIn(t, body); !reflect.DeepEqual(got, map[string]string{"other-tenants-intruder": `{"name":"other-tenants-intruder"}`}) {
		t.Errorf("the other tenant's presence-room = %q, want only intruder", got)
	}
	if _, body, _ := ob.get("/console/pusher?channel=presence-lobby"); len(membersIn(t, body)) != 0 || strings.Contains(body, "bob") {
		t.Errorf("the other tenant sees acme's presence-lobby")
	}

	// The list follows the members: ann leaves, and the refreshing fragment
	// says so.
	ann.ws.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body, _ := b.get("/console/pusher/presence")
		got := presenceChannelsIn(body)
		if got["presence-room"] == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after ann left the list says %v, want presence-room with 1", got)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Logged out: the console's answers, never the data.
	anon := in.browser()
	for _, path := range []string{"/console/pusher/presence", "/console/pusher/presence/members?channel=presence-room", "/console/pusher?channel=presence-room"} {
		if code, body, h := anon.get(path); code != http.StatusSeeOther || h.Get("Location") != "/console/login" || strings.Contains(body, "presence-room") {
			t.Errorf("GET %s without a session = %d %s", path, code, h.Get("Location"))
		}
		if code, _, h := anon.get(path, "HX-Request", "true"); code != http.StatusUnauthorized || h.Get("HX-Redirect") != "/console/login" {
			t.Errorf("GET %s by htmx without a session = %d %v", path, code, h)
		}
	}
}

// TestConsolePresenceBrowser: in a real browser the presence section fits a
// 375 px window, a channel's link and the look-up form swap in the members
// (the address following), escaped members run no script, a bad name gets
// its error, and the list and the members refresh by themselves.
func TestConsolePresenceBrowser(t *testing.T) {
	// Not parallel, as the other browser tests.
	chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), consoleTestWait)
	t.Cleanup(cancel)
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	key, secret := acme.SigningKey.Kid, acme.SigningKey.Secret
	connectPusher(t, in.url, key).joinPresence(key, secret, "presence-room", "ann")
	connectPusher(t, in.url, key).joinAsXSS(key, secret, "presence-room")
	connectPusher(t, in.url, key).joinPresence(key, secret, "presence-a-rather-long-channel-name-for-a-narrow-screen", "bob")

	tab := loggedInTab(t, ctx, in, acme.APIKey)
	tab.open(in.url + "/console/pusher")
	tab.do("narrow the window", chromedp.EmulateViewport(375, 812))
	tab.waitFor("the presence channels", `document.querySelectorAll('#presence-channels tr[data-presence-channel]').length === 2`, consoleStepWait)
	if w := consoleEval[int](tab, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the Pusher page with presence channels is %d px wide in a 375 px window: it scrolls sideways", w)
	}

	// A channel's link: its members swap in, and the address names it. The
	// marker stays: htmx swaps the part in place, without a navigation.
	if err := tab.eval(`window.__samePage = true, document.querySelector('#presence-channels tr[data-presence-channel="presence-room"] a').click(), true`); err != nil {
		t.Fatal(err)
	}
	tab.waitFor("presence-room's members", `document.querySelectorAll('#presence-members tr[data-member]').length === 2 && location.search === '?channel=presence-room'`, consoleStepWait)
	if got := consoleEval[string](tab, `document.querySelector('#presence-members tr[data-member="ann"] [data-testid=info]').textContent`); got != `{"name":"ann"}` {
		t.Errorf("ann's info reads %q", got)
	}
	xss := consoleEval[[]string](tab, `[...document.querySelectorAll('#presence-members tr[data-member]')].filter(tr => tr.dataset.member.startsWith('<')).map(tr => tr.innerText)`)
	if len(xss) != 1 || !strings.Contains(xss[0], xssUser) || !strings.Contains(xss[0], xssInfo) {
		t.Errorf("the HTML member reads %q, want its id and info as text", xss)
	}
	if n := consoleEval[int](tab, `document.querySelectorAll('#presence script, #presence img').length`); n != 0 {
		t.Errorf("the presence section holds %d script or img elements: a member's HTML was parsed", n)
	}
	if w := consoleEval[int](tab, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the Pusher page with members is %d px wide in a 375 px window", w)
	}

	// The form, from the keyboard: a bad name, then a good one.
	lookUp := func(name string) {
		// The form may just have been swapped in: htmx takes it over once the
		// swap settles, and Enter before that would submit it natively.
		tab.waitFor("the look-up form taken over by htmx",
			`(() => { const f = document.querySelector('#f-channel'); return !!(f && f.form && f.form['htmx-internal-data']) && !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling') })()`,
			consoleStepWait)
		if err := tab.eval(`document.querySelector('#f-channel').value = '', true`); err != nil {
			t.Fatal(err)
		}
		tab.do("look up "+name,
			chromedp.Focus(chromedp.CSS("#f-channel")),
			chromedp.KeyEvent(name),
			chromedp.KeyEvent("\r"),
		)
	}
	lookUp("private-chat")
	tab.waitFor("the name's error", `(document.querySelector('#e-channel') || {}).textContent === 'Only presence channels have members: their names start with presence-.' && !document.querySelector('#presence-members')`, consoleStepWait)
	lookUp("presence-a-rather-long-channel-name-for-a-narrow-screen")
	tab.waitFor("the looked-up members", `!document.querySelector('#e-channel') && document.querySelector('#presence-members tr[data-member="bob"]') && location.search === '?channel=presence-a-rather-long-channel-name-for-a-narrow-screen'`, consoleStepWait)

	// Both refresh by themselves: carol joins, the count and the members follow.
	connectPusher(t, in.url, key).joinPresence(key, secret, "presence-a-rather-long-channel-name-for-a-narrow-screen", "carol")
	tab.waitFor("carol in the list and the members",
		`(document.querySelector('#presence-channels tr[data-presence-channel="presence-a-rather-long-channel-name-for-a-narrow-screen"] [data-testid=members]') || {}).textContent === '2' && document.querySelector('#presence-members tr[data-member="carol"]')`,
		consoleStepWait)
	if w := consoleEval[int](tab, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("the refreshed Pusher page is %d px wide in a 375 px window", w)
	}
	if !consoleEval[bool](tab, `window.__samePage === true`) {
		t.Errorf("the link or the form loaded a new page instead of swapping the members in")
	}
	tab.check("the presence section")
}
