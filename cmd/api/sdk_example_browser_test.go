package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// exampleUser is one user of the example page's room, forced onto one
// transport with ?transports=.
type exampleUser struct {
	sub, name string
	transport string // as the SDK and the page name it
	listed    string // as GET /v1/connections names it
}

// mintExampleToken mints, with the tenant's API key, a token for the room:
// presence-lobby to subscribe and to send client events to, and a name in
// info for the member list.
func (env *sdkEnv) mintExampleToken(u exampleUser) string {
	env.t.Helper()
	b, _ := json.Marshal(map[string]any{
		"sub":      u.sub,
		"channels": []string{"presence-lobby"},
		"publish":  []string{"presence-lobby"},
		"info":     map[string]string{"name": u.name},
		"ttl":      600,
	})
	res := env.in.do("POST", "/v1/tokens", env.key, string(b))
	if res.status != http.StatusCreated {
		env.t.Fatalf("POST /v1/tokens for %s = %d %s", u.sub, res.status, res.body)
	}
	var out struct{ Token string }
	res.json(env.t, &out)
	if out.Token == "" {
		env.t.Fatalf("POST /v1/tokens for %s: no token in %s", u.sub, res.body)
	}
	return out.Token
}

// openExampleBrowser opens a tab in a browser context of its own: its own
// storage, Web Locks and BroadcastChannels, as another person's browser, so
// that its clients share no connection with the other users' pages.
func (env *sdkEnv) openExampleBrowser(name string) *sdkTab {
	t := env.t
	t.Helper()
	tab := &sdkTab{t: t, env: env, name: name}
	tab.ctx, tab.cancel = chromedp.NewContext(env.bctx, chromedp.WithNewBrowserContext())
	t.Cleanup(tab.close)
	if err := chromedp.Do(tab.ctx); err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	if err := chromedp.Listen(tab.ctx, tab.listen); err != nil {
		t.Fatalf("listen to %s: %v", name, err)
	}
	return tab
}

// do runs actions in the tab, within browserWait.
func (tab *sdkTab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tab.t.Fatalf("%s: %s: %v", tab.name, what, err)
	}
}

// exampleRoomJS reads what the room shows.
const exampleRoomJS = `(() => {
	const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent : null; };
	return {
		transport: text('#room-transport'),
		members: [...document.querySelectorAll('#members li')].map((li) => ({id: li.dataset.memberId, text: li.textContent})),
		typing: text('#typing'),
		news: text('#presence-news'),
		feed: [...document.querySelectorAll('#root p')].map((p) => p.textContent).find((s) => s.startsWith('Connected over') || s.startsWith('Disconnected')) ?? null,
		alerts: [...document.querySelectorAll('#root [role="alert"], #root .flash.error')].map((e) => e.textContent),
	};
})()`

type exampleRoom struct {
	Transport *string `json:"transport"`
	Members   []struct {
		ID   string `json:"id"`
		Text string `json:"text"`
	} `json:"members"`
	Typing *string  `json:"typing"`
	News   *string  `json:"news"`
	Feed   *string  `json:"feed"`
	Alerts []string `json:"alerts"`
}

func (r exampleRoom) memberIDs() []string {
	ids := make([]string, len(r.Members))
	for i, m := range r.Members {
		ids[i] = m.ID
	}
	return ids
}

func (r exampleRoom) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}

func str(p *string) string {
	if p == nil {
		return "<missing>"
	}
	return *p
}

// waitRoom polls the page's room until cond holds, failing the test after
// within (or when the test's time is up).
func (tab *sdkTab) waitRoom(what string, within time.Duration, cond func(exampleRoom) bool) exampleRoom {
	tab.t.Helper()
	deadline := time.Now().Add(tab.env.remaining(within))
	for {
		r := sdkEval[exampleRoom](tab, exampleRoomJS)
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			tab.mu.Lock()
			problems := append(slices.Clone(tab.problems), tab.logErrors...)
			tab.mu.Unlock()
			tab.t.Fatalf("%s: %s: not within %v; the room shows %s\nproblems: %q", tab.name, what, within, r, problems)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tab *sdkTab) room() exampleRoom {
	tab.t.Helper()
	return sdkEval[exampleRoom](tab, exampleRoomJS)
}

func typingIs(want string) func(exampleRoom) bool {
	return func(r exampleRoom) bool { return str(r.Typing) == want }
}

// TestBrowserSDKExampleRoom: the example page at /examples/dashboard, opened
// by three users in three browsers, each forced onto one transport with
// ?transports= (Ann over the WebSocket, Bo over SSE, Cy over long-polling).
// Every page shows all three in its who-is-here list, by the name of their
// token's info, and its own transport, which is the one the service lists
// for that user's connections. Whoever types is shown typing on the other
// two pages and not on their own, kept shown while the keys keep coming
// (longer than one indicator's life) and cleared soon after they leave the
// field or stop; two typing at once are both shown. When Bo's browser
// closes, Ann's list drops Bo and says so.
func TestBrowserSDKExampleRoom(t *testing.T) {
	testExampleRoom(t, newSDKEnv(t))
}

func testExampleRoom(t *testing.T, env *sdkEnv) {
	res := env.in.do("PATCH", "/v1/tenant/settings", env.key, `{"clientEvents":true}`)
	var settings struct{ ClientEvents bool }
	res.json(t, &settings)
	if res.status != http.StatusOK || !settings.ClientEvents {
		t.Fatalf("PATCH /v1/tenant/settings clientEvents = %d %s", res.status, res.body)
	}

	users := []exampleUser{
		{sub: "ann", name: "Ann", transport: "websocket", listed: "ws"},
		{sub: "bo", name: "Bo", transport: "sse", listed: "sse"},
		{sub: "cy", name: "Cy", transport: "polling", listed: "polling"},
	}
	pages := make([]*sdkTab, len(users))
	// One after another, each a member before the next comes: a long-poller
	// hears of a join only with its next answer, so Cy, polling, comes last
	// and its first poll answers with everyone.
	for i, u := range users {
		token := env.mintExampleToken(u)
		tab := env.openExampleBrowser(u.name + "'s page")
		pages[i] = tab
		tab.navigate(env.proxy.url + "/examples/dashboard?transports=" + u.transport + "&token=" + url.QueryEscape(token))
		tab.wait0("the token form, filled in from ?token=", `(() => { const i = document.querySelector('#root form #token'); return !!i && i.value.length > 20; })()`)
		tab.do("connect", chromedp.Click(chromedp.CSS(`#root form button[type="submit"]`)))
		r := tab.waitRoom("live over "+u.transport+", and a member itself", 15*time.Second, func(r exampleRoom) bool {
			return str(r.Transport) == u.transport && slices.Contains(r.memberIDs(), u.sub)
		})
		t.Logf("%s: live over %s, members %v", u.name, u.transport, r.memberIDs())
	}

	want := []string{"ann", "bo", "cy"}
	for i, tab := range pages {
		u := users[i]
		r := tab.waitRoom("all three in the room", 10*time.Second, func(r exampleRoom) bool { return slices.Equal(r.memberIDs(), want) })
		for j, m := range r.Members {
			wantText := users[j].name
			if users[j].sub == u.sub {
				wantText += " (you)"
			}
			if m.Text != wantText {
				t.Errorf("%s lists %s as %q, want %q", tab.name, m.ID, m.Text, wantText)
			}
		}
		if str(r.Transport) != u.transport {
			t.Errorf("%s's room shows transport %q, want %q", tab.name, str(r.Transport), u.transport)
		}
		tab.waitRoom("the feed live over "+u.transport, 10*time.Second, func(r exampleRoom) bool { return str(r.Feed) == "Connected over "+u.transport+" Reconnect" })
		if text := sdkEval[string](tab, `document.querySelector('#transports').textContent`); !strings.Contains(text, "only "+u.transport+" ") {
			t.Errorf("%s says %q about its transports", tab.name, text)
		}
		if str(r.Typing) != "" || len(r.Alerts) > 0 {
			t.Errorf("%s: before anyone types the room shows %s", tab.name, r)
		}
	}

	// The service agrees: each user's three connections (room, dashboard,
	// feed) are over that user's transport. A long-poller is listed while a
	// poll is held, so Cy's are counted only as they show.
	env.waitConnections("each user's connections over the user's transport", 10*time.Second, func(conns []sdkConn) bool {
		by := map[string][]string{}
		for _, c := range conns {
			by[c.User] = append(by[c.User], c.Transport)
		}
		for _, u := range users {
			got := by[u.sub]
			if len(got) == 0 || len(got) > 3 || (u.transport != "polling" && len(got) != 3) {
				return false
			}
			for _, tr := range got {
				if tr != u.listed {
					t.Errorf("%s has a connection over %q, want only %q: %+v", u.sub, tr, u.listed, conns)
					return true
				}
			}
		}
		return len(by) == len(users)
	})
	if t.Failed() {
		t.FailNow()
	}

	ann, bo, cy := pages[0], pages[1], pages[2]
	const input = "#room-message"

	// 1. Ann types for longer than an indicator lives (3.5 s) without a
	// new client-typing: the throttled ones keep it shown on Bo's and Cy's
	// pages all along, never on Ann's.
	ann.do("type", chromedp.SendKeys(chromedp.CSS(input), "h"))
	for _, tab := range []*sdkTab{bo, cy} {
		tab.waitRoom("Ann typing", 5*time.Second, typingIs("Ann is typing…"))
	}
	for start := time.Now(); time.Since(start) < 4500*time.Millisecond; {
		ann.do("type", chromedp.SendKeys(chromedp.CSS(input), "i"))
		time.Sleep(300 * time.Millisecond)
		for _, tab := range []*sdkTab{bo, cy} {
			if r := tab.room(); str(r.Typing) != "Ann is typing…" {
				t.Fatalf("%s, %v after Ann began typing and while she still types, shows %q", tab.name, time.Since(start).Round(time.Millisecond), str(r.Typing))
			}
		}
		if r := ann.room(); str(r.Typing) != "" {
			t.Fatalf("Ann's own page shows %q while she types: the sender got its own client event", str(r.Typing))
		}
	}
	// She leaves the field: {typing: false} clears it at once, well before
	// the 3.5 s an indicator lives after the last {typing: true} (at most 1 s
	// ago).
	left := time.Now()
	ann.do("leave the field", chromedp.Blur(chromedp.CSS(input)))
	for _, tab := range []*sdkTab{bo, cy} {
		tab.waitRoom("Ann no longer typing", 2*time.Second, typingIs(""))
	}
	t.Logf("Ann left the field: cleared on Bo's and Cy's pages within %v", time.Since(left).Round(time.Millisecond))

	// 2. Bo (SSE) and then Cy (polling) type: Ann sees both, each sees the
	// other; then they stop typing, and 3 s later their pages say so.
	bo.do("type", chromedp.SendKeys(chromedp.CSS(input), "yo"))
	for _, tab := range []*sdkTab{ann, cy} {
		tab.waitRoom("Bo typing", 5*time.Second, typingIs("Bo is typing…"))
	}
	cy.do("type", chromedp.SendKeys(chromedp.CSS(input), "hey"))
	stopped := time.Now()
	ann.waitRoom("Bo and Cy typing", 5*time.Second, typingIs("Bo and Cy are typing…"))
	bo.waitRoom("Cy typing", 5*time.Second, typingIs("Cy is typing…"))
	if r := cy.room(); str(r.Typing) != "Bo is typing…" {
		t.Errorf("Cy's page shows %q, want only Bo typing", str(r.Typing))
	}
	for _, tab := range pages {
		tab.waitRoom("nobody typing after the idle time", 6*time.Second, typingIs(""))
	}
	if idle := time.Since(stopped); idle < 2500*time.Millisecond {
		t.Errorf("the typing cleared %v after the last key, want about 3 s", idle.Round(time.Millisecond))
	}

	for _, tab := range pages {
		if r := tab.room(); len(r.Alerts) > 0 {
			t.Errorf("%s shows %q", tab.name, r.Alerts)
		}
		tab.checkClean(true)
	}
	if t.Failed() {
		t.FailNow()
	}

	// 3. Bo's browser closes: Ann (WebSocket) sees Bo leave.
	bo.close()
	r := ann.waitRoom("Bo gone", 10*time.Second, func(r exampleRoom) bool { return slices.Equal(r.memberIDs(), []string{"ann", "cy"}) })
	if str(r.News) != "Bo left." {
		t.Errorf("after Bo left, Ann's page says %q, want \"Bo left.\"", str(r.News))
	}
	ann.checkClean(true)
	cy.checkClean(true)
	if t.Failed() {
		for _, tab := range []*sdkTab{ann, cy} {
			t.Logf("%s: %s", tab.name, tab.room())
		}
	}
}
