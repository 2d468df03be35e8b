package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

func (in *instance) ticket(token string) string {
	in.t.Helper()
	res := in.do("POST", "/api/realtime/tickets", token, "")
	if res.status != http.StatusCreated {
		in.t.Fatalf("POST /api/realtime/tickets = %d %s", res.status, res.body)
	}
	var out struct{ Ticket string }
	res.json(in.t, &out)
	return out.Ticket
}

// TestTickets: EventSource connects with a ticket instead of a JWT; a
// ticket works only within its token's rights, must be first used within
// 60 s, and may be reused for reconnects.
func TestTickets(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("u1", []string{"team:1"}, 600)
	tk := in.ticket(tok)
	if !strings.HasPrefix(tk, "tk_") {
		t.Fatalf("ticket = %q", tk)
	}

	s := in.subscribe(acme.Tenant.ID, "u1", []string{"team:1"}, []string{"team:1"}, subscribeOpts{ticket: tk})
	s.connID()
	ids := p.events(`{"channel":"team:1","type":"x"}`)
	if got := s.collect(1, 5*time.Second); got[0].ID != ids[0] {
		t.Errorf("ticket stream got %s, want %s", got[0].ID, ids[0])
	}
	s.close()
	// Reconnect with the same ticket, as EventSource does, with Last-Event-ID.
	s = in.subscribe(acme.Tenant.ID, "u1", []string{"team:1"}, []string{"team:1"}, subscribeOpts{ticket: tk, lastEventID: ids[0]})
	s.connID()
	s.close()

	// The ticket carries the token's rights, no more.
	if s, res := in.trySubscribe(acme.Tenant.ID, "u1", nil, []string{"team:2"}, subscribeOpts{ticket: tk}); s != nil || res.status != 403 {
		t.Errorf("ticket for team:1 on team:2 = %d, want 403", res.status)
	}
	for name, bad := range map[string]string{"garbage": "tk_nope", "made up": "tk_" + strings.Repeat("A", 43), "jwt as ticket": tok} {
		if s, res := in.trySubscribe(acme.Tenant.ID, "u1", nil, []string{"broadcast"}, subscribeOpts{ticket: bad}); s != nil || res.status != 401 {
			t.Errorf("%s ticket = %d, want 401", name, res.status)
		}
	}
	// A ticket is not accepted where a JWT is required.
	if res := in.do("GET", "/api/realtime/polling?channels=broadcast&timeout=0&ticket="+tk, "", ""); res.status != 401 {
		t.Errorf("polling with a ticket = %d, want 401", res.status)
	}
	// A ticket unused for 60 s is dead.
	stale := in.ticket(tok)
	if _, err := pool.Exec(t.Context(), `UPDATE tickets SET created_at = now() - interval '61 seconds' WHERE first_used_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	if s, res := in.trySubscribe(acme.Tenant.ID, "u1", nil, []string{"broadcast"}, subscribeOpts{ticket: stale}); s != nil || res.status != 401 {
		t.Errorf("ticket unused for 61 s = %d, want 401", res.status)
	}
	// A used ticket works on after 60 s, until its token expires.
	if _, err := pool.Exec(t.Context(), `UPDATE tickets SET created_at = now() - interval '10 minutes'`); err != nil {
		t.Fatal(err)
	}
	if s, res := in.trySubscribe(acme.Tenant.ID, "u1", nil, []string{"broadcast"}, subscribeOpts{ticket: tk}); s == nil {
		t.Errorf("reused ticket after 10 min = %d, want 200", res.status)
	}
	if strings.Contains(in.logs.String(), tk) {
		t.Errorf("a ticket appears in the logs")
	}
}

// TestTokenExpiryAndRenewal: a stream ends with token_expired when its token
// expires, unless a fresh token renews it in place, on any instance.
func TestTokenExpiryAndRenewal(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	a, b := newInstance(t, pool, testConfig()), newInstance(t, pool, testConfig())
	acme := a.signup("Acme")
	p := a.publisher(acme)
	ch := []string{"user:u1"}

	// Expiry: the stream ends with token_expired, and the token is refused.
	short := p.token("u1", nil, 1)
	s := a.subscribe(acme.Tenant.ID, "u1", nil, ch, subscribeOpts{token: short})
	s.connID()
	<-s.system // ready
	select {
	case e := <-s.system:
		if e.Type != "token_expired" {
			t.Errorf("system event = %+v, want token_expired", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no token_expired within 5 s of a 1 s token")
	}
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
		t.Error("stream did not end after token_expired")
	}

	// Renewal on the same instance, then on another: the stream lives on.
	for _, renewer := range []*instance{a, b} {
		s := a.subscribe(acme.Tenant.ID, "u1", nil, ch, subscribeOpts{token: p.token("u1", nil, 2)})
		id := s.connID()
		<-s.system
		fresh := p.token("u1", nil, 600)
		var res response
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			// Another instance learns of the connection once the registry is written (≤ 1 s).
			res = renewer.do("POST", "/api/realtime/connections/"+id+"/token", fresh, "")
			if res.status != http.StatusNotFound || time.Now().After(deadline) {
				break
			}
		}
		if res.status != http.StatusOK {
			t.Fatalf("renew = %d %s", res.status, res.body)
		}
		time.Sleep(2500 * time.Millisecond) // past the first token's expiry
		ids := p.events(`{"channel":"user:u1","type":"after-renewal"}`)
		if got := s.collect(1, 5*time.Second); got[0].ID != ids[0] {
			t.Errorf("renewed stream got %s, want %s", got[0].ID, ids[0])
		}
		select {
		case e := <-s.system:
			t.Errorf("renewed stream got %s", e.Type)
		default:
		}
	}

	// Renewal refused: another user's token, a token without the channel, an unknown id.
	s = a.subscribe(acme.Tenant.ID, "u1", nil, []string{"user:u1"}, subscribeOpts{token: p.token("u1", nil, 600)})
	id := s.connID()
	cases := map[string]struct {
		path, token string
		want        int
	}{
		"other user":   {"/api/realtime/connections/" + id + "/token", p.token("u2", nil, 600), 404},
		"unknown id":   {"/api/realtime/connections/c_000000000000000000000000/token", p.token("u1", nil, 600), 404},
		"garbage id":   {"/api/realtime/connections/%2e%2e/token", p.token("u1", nil, 600), 404},
		"bad token":    {"/api/realtime/connections/" + id + "/token", "garbage", 401},
		"other tenant": {"/api/realtime/connections/" + id + "/token", a.publisher(a.signup("Other")).token("u1", nil, 600), 404},
	}
	for name, c := range cases {
		checkProblem(t, "renew: "+name, a.do("POST", c.path, c.token, ""), c.want)
	}
}

// TestConnections: GET /v1/connections lists a tenant's live clients on
// every instance, and only its own.
func TestConnections(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	a, b := newInstance(t, pool, testConfig()), newInstance(t, pool, testConfig())
	acme, other := a.signup("Acme"), a.signup("Other")
	p := a.publisher(acme)
	sa := a.subscribe(acme.Tenant.ID, "u1", nil, []string{"broadcast", "user:u1"}, subscribeOpts{token: p.token("u1", nil, 600)})
	sb := b.subscribe(acme.Tenant.ID, "u2", nil, []string{"broadcast"}, subscribeOpts{token: p.token("u2", nil, 600)})
	idA, idB := sa.connID(), sb.connID()
	b.subscribe(other.Tenant.ID, "x", nil, []string{"broadcast"}, subscribeOpts{token: a.publisher(other).token("x", nil, 600)}).connID()

	type conn struct {
		ID, User, Transport, Instance, RemoteAddr, UserAgent string
		Channels                                             []string
		ConnectedAt                                          time.Time
	}
	list := func() map[string]conn {
		var out struct{ Connections []conn }
		a.do("GET", "/v1/connections", acme.APIKey, "").json(t, &out)
		m := map[string]conn{}
		for _, c := range out.Connections {
			m[c.ID] = c
		}
		return m
	}
	var got map[string]conn
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = list(); len(got) == 2 {
			break
		}
	}
	if len(got) != 2 || got[idA].User != "u1" || got[idB].User != "u2" || got[idA].Instance == got[idB].Instance ||
		got[idA].Transport != "sse" || len(got[idA].Channels) != 2 || got[idA].RemoteAddr == "" || got[idA].ConnectedAt.IsZero() {
		b, _ := json.Marshal(got)
		t.Fatalf("connections = %s, want u1 on a and u2 on b", b)
	}
	sb.close()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = list(); len(got) == 1 {
			break
		}
	}
	if _, ok := got[idA]; len(got) != 1 || !ok {
		t.Errorf("after closing u2's stream, connections = %v", got)
	}

	// An instance whose heartbeat stops (killed) no longer counts.
	if _, err := pool.Exec(t.Context(), `UPDATE instances SET heartbeat_at = now() - interval '25 seconds' WHERE id = $1`,
		a.svc.registry.InstanceID()); err != nil {
		t.Fatal(err)
	}
	if got = list(); len(got) != 0 {
		t.Errorf("a dead instance's connections are still listed: %v", got)
	}
}
