package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/web"
)

// clientOf returns the client address the access log gave the request whose
// logged URL contains marker.
func (in *instance) clientOf(marker string) string {
	in.t.Helper()
	for _, e := range in.logLines("request") {
		if u, _ := e["url"].(string); strings.Contains(u, marker) {
			c, _ := e["client"].(string)
			return c
		}
	}
	in.t.Fatalf("no access log line for %s:\n%s", marker, in.logs)
	return ""
}

// TestClientAddress: behind a trusted proxy the client address comes from
// X-Forwarded-For (or Forwarded) and reaches the access log, /v1/connections
// and the console; from any other peer the headers are ignored.
func TestClientAddress(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	direct := newInstance(t, pool, testConfig()) // TRUSTED_PROXIES empty
	cfg := testConfig()
	var err error
	if cfg.TrustedProxies, err = web.ParseTrustedProxies("127.0.0.1/32"); err != nil {
		t.Fatal(err)
	}
	behind := newInstance(t, pool, cfg)
	acme := direct.signup("Acme")

	tests := []struct {
		name   string
		in     *instance
		from   string // source address
		header []string
		want   string
	}{
		{"trusted proxy, X-Forwarded-For", behind, "127.0.0.1", []string{"X-Forwarded-For", "6.6.6.6, 198.51.100.7"}, "198.51.100.7"},
		{"trusted proxy, Forwarded", behind, "127.0.0.1", []string{"Forwarded", `for="[2001:db8::5]:4711";proto=https`}, "2001:db8::5"},
		{"trusted proxy, two proxies", behind, "127.0.0.1", []string{"X-Forwarded-For", "198.51.100.8, 127.0.0.1"}, "198.51.100.8"},
		{"trusted proxy, no header", behind, "127.0.0.1", nil, "127.0.0.1"},
		{"trusted proxy, garbage", behind, "127.0.0.1", []string{"X-Forwarded-For", "<script>alert(1)</script>"}, "127.0.0.1"},
		{"trusted proxy, zone and port", behind, "127.0.0.1", []string{"X-Forwarded-For", "[fe80::1%eth0]:99"}, "fe80::1"},
		{"untrusted peer, spoofed", behind, "127.0.0.2", []string{"X-Forwarded-For", "198.51.100.9"}, "127.0.0.2"},
		{"untrusted peer, spoofed Forwarded", behind, "127.0.0.3", []string{"Forwarded", "for=198.51.100.9"}, "127.0.0.3"},
		{"no trusted proxies, spoofed", direct, "127.0.0.1", []string{"X-Forwarded-For", "198.51.100.9"}, "127.0.0.1"},
	}
	for i, tt := range tests {
		marker := fmt.Sprintf("probe=%d", i)
		res := tt.in.doVia(loopbackClient(tt.from), "GET", "/v1/head?"+marker, acme.APIKey, "", tt.header...)
		if res.status != 200 {
			t.Fatalf("%s: GET /v1/head = %d %s", tt.name, res.status, res.body)
		}
		if got := tt.in.clientOf(marker); got != tt.want {
			t.Errorf("%s: access log client = %q, want %q", tt.name, got, tt.want)
		}
	}

	// /v1/connections and the console's clients list show the same address:
	// a long-poll and a stream held through the trusted proxy.
	p := behind.publisher(acme)
	tok := p.token("u1", nil, 600)
	pollDone := make(chan response, 1)
	go func() {
		r, _ := behind.tryDoVia(http.DefaultClient, "GET", "/api/realtime/polling?channels=broadcast&timeout=10", tok, "",
			"X-Forwarded-For", "198.51.100.20")
		pollDone <- r
	}()
	req, _ := http.NewRequest("GET", behind.url+"/api/realtime/sse?channels=broadcast", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Forwarded-For", "198.51.100.21")
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	want := map[string]string{"polling": "198.51.100.20", "sse": "198.51.100.21"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var list struct {
			Connections []struct{ Transport, RemoteAddr string }
		}
		direct.do("GET", "/v1/connections", acme.APIKey, "").json(t, &list)
		got := map[string]string{}
		for _, c := range list.Connections {
			got[c.Transport] = c.RemoteAddr
		}
		if got["polling"] == want["polling"] && got["sse"] == want["sse"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/v1/connections = %+v, want remote addresses %v", list.Connections, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b := direct.browser()
	b.login(acme.APIKey)
	if code, body, _ := b.get("/console/clients/table"); code != 200 || !strings.Contains(body, "198.51.100.20") || !strings.Contains(body, "198.51.100.21") {
		t.Errorf("console clients table = %d, lacks the forwarded addresses:\n%s", code, body)
	}
	p.events(`{"channel":"broadcast","type":"t"}`)
	if r := <-pollDone; r.status != 200 {
		t.Errorf("poll = %d %s", r.status, r.body)
	}
}

// TestPerClientLimits: per-address limits count the client the trusted
// proxy names, not the proxy, and not what an untrusted peer claims. An
// IPv6 client counts by its /64.
func TestPerClientLimits(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	direct := newInstance(t, pool, testConfig())
	cfg := testConfig()
	cfg.TrustedProxies, _ = web.ParseTrustedProxies("127.0.0.1/32")
	behind := newInstance(t, pool, cfg)
	acme := direct.signup("Acme")
	guess := withSecret(acme.APIKey, strings.Repeat("x", len(acme.APIKey)-len("hrt_")-12-1-6))

	// spray sends n invalid keys, the header values given by forwarded(i),
	// and returns how many were answered 429.
	spray := func(in *instance, n int, forwarded func(i int) string) (limited int) {
		for i := range n {
			res := in.do("GET", "/v1/tenant", guess, "", "X-Forwarded-For", forwarded(i))
			switch res.status {
			case http.StatusTooManyRequests:
				limited++
			case http.StatusUnauthorized:
			default:
				t.Fatalf("invalid key = %d %s", res.status, res.body)
			}
		}
		return limited
	}
	// Behind the proxy, one real client's failures are its own.
	if n := spray(behind, 130, func(int) string { return "198.51.100.1" }); n < 20 {
		t.Errorf("130 invalid keys from one client behind the proxy: %d refused with 429, want about 30", n)
	}
	if n := spray(behind, 5, func(int) string { return "198.51.100.2" }); n != 0 {
		t.Errorf("another client behind the same proxy: %d of 5 failures refused with 429, want plain 401s", n)
	}
	// An IPv6 client rotating through its /64 is one client.
	if n := spray(behind, 130, func(i int) string { return fmt.Sprintf("2001:db8:1:2::%x", i+1) }); n < 20 {
		t.Errorf("130 invalid keys from one /64: %d refused with 429, want about 30", n)
	}
	if n := spray(behind, 5, func(int) string { return "2001:db8:1:3::1" }); n != 0 {
		t.Errorf("the next /64: %d of 5 refused, want none", n)
	}
	// Without trust, rotating X-Forwarded-For buys no fresh budget.
	if n := spray(direct, 130, func(i int) string { return fmt.Sprintf("198.51.100.%d", i%250+1) }); n < 20 {
		t.Errorf("130 invalid keys with rotating spoofed X-Forwarded-For: %d refused, want about 30", n)
	}
	// The limited clients' valid keys still work.
	for _, c := range []struct {
		in  *instance
		xff string
	}{{behind, "198.51.100.1"}, {behind, "2001:db8:1:2::1"}, {direct, "198.51.100.1"}} {
		if res := c.in.do("POST", "/v1/events", acme.APIKey, `{"channel":"broadcast","type":"t"}`, "X-Forwarded-For", c.xff); res.status != http.StatusCreated {
			t.Errorf("a valid key from the limited client %s = %d %s", c.xff, res.status, res.body)
		}
	}

	// Sign-up floods count per real client too.
	signups := func(xff string, n int) (refused int) {
		for range n {
			res := behind.do("POST", "/v1/tenants", "", `{"name":"Flood"}`, "X-Forwarded-For", xff)
			if res.status == http.StatusTooManyRequests {
				refused++
			}
		}
		return refused
	}
	if n := signups("198.51.100.30", 32); n == 0 {
		t.Errorf("32 sign-ups from one client behind the proxy: none refused")
	}
	if n := signups("198.51.100.31", 1); n != 0 {
		t.Errorf("another client's sign-up was refused")
	}
}

// TestNoLockout (DESIGN: no client can make another client's valid
// credentials fail): after an address sprays invalid API keys, tokens,
// tickets and console logins, valid ones from the same address work.
func TestNoLockout(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	guess := withSecret(acme.APIKey, strings.Repeat("y", len(acme.APIKey)-len("hrt_")-12-1-6))
	badToken := p.token("u", nil, 600)
	badToken = badToken[:len(badToken)-4] + "AAAA" // signature broken
	badTicket := "tk_" + strings.Repeat("Z", 43)

	limited := 0
	for range 150 {
		if res := in.do("GET", "/v1/tenant", guess, ""); res.status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Errorf("150 invalid keys: none answered 429")
	}
	for range 100 {
		for _, path := range []string{"/api/realtime/polling?channels=broadcast&timeout=0", "/api/realtime/sse?channels=broadcast"} {
			if res := in.do("GET", path, badToken, ""); res.status != http.StatusUnauthorized {
				t.Fatalf("bad token on %s = %d", path, res.status)
			}
		}
		if res := in.do("POST", "/api/realtime/tickets", badToken, ""); res.status != http.StatusUnauthorized {
			t.Fatalf("bad token for a ticket = %d", res.status)
		}
		if res := in.do("GET", "/api/realtime/sse?channels=broadcast&ticket="+badTicket, "", ""); res.status != http.StatusUnauthorized {
			t.Fatalf("bad ticket = %d", res.status)
		}
	}
	att := in.browser()
	refusedLogins := 0
	for range 15 {
		if code, _, _ := att.post("/console/login", url.Values{"apiKey": {guess}}); code == http.StatusTooManyRequests {
			refusedLogins++
		}
	}
	if refusedLogins == 0 {
		t.Errorf("15 failed console logins: none answered 429")
	}

	// Now the same address, with valid credentials.
	tok := p.token("u", nil, 600)
	if res := in.do("POST", "/v1/events", acme.APIKey, `{"channel":"broadcast","type":"before"}`); res.status != http.StatusCreated {
		t.Errorf("valid API key = %d %s", res.status, res.body)
	}
	if res := in.do("GET", "/api/realtime/polling?channels=broadcast&cursor=0&timeout=0", tok, ""); res.status != http.StatusOK {
		t.Errorf("valid token, polling = %d %s", res.status, res.body)
	}
	var ticket struct{ Ticket string }
	res := in.do("POST", "/api/realtime/tickets", tok, "")
	if res.status != http.StatusCreated {
		t.Fatalf("valid token, ticket = %d %s", res.status, res.body)
	}
	res.json(t, &ticket)
	viaTicket := in.subscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{ticket: ticket.Ticket})
	viaToken := in.subscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: tok})
	viaTicket.connID()
	viaToken.connID()
	p.events(`{"channel":"broadcast","type":"after"}`)
	for _, s := range []*stream{viaTicket, viaToken} {
		if evs := s.collect(1, 10*time.Second); len(evs) != 1 || evs[0].Type != "after" {
			t.Errorf("stream after the spray got %+v, want the event", evs)
		}
	}
	b := in.browser()
	b.login(acme.APIKey) // fails the test unless it logs in
}
