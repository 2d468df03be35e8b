package main

import (
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestSigningKeyRevokedEndsStreams (TESTPLAN F18b): revoking the signing key
// a stream's token was signed with ends the stream with token_expired within
// a heartbeat plus the 5 s key cache.
func TestSigningKeyRevokedEndsStreams(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Stream.Heartbeat = time.Second
	in := newInstance(t, pgtest.NewDB(t), cfg)
	acme := in.signup("Acme")
	p := in.publisher(acme)
	s := in.subscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: p.token("u", nil, 600)})
	s.connID()
	<-s.system // ready
	if res := in.do("DELETE", "/v1/signing-keys/"+acme.SigningKey.Kid, acme.APIKey, ""); res.status != 204 {
		t.Fatalf("revoke = %d", res.status)
	}
	revoked := time.Now()
	select {
	case e := <-s.system:
		if e.Type != "token_expired" {
			t.Errorf("system event = %s, want token_expired", e.Type)
		}
		t.Logf("stream ended %v after its signing key was revoked", time.Since(revoked).Round(time.Millisecond))
	case <-time.After(cfg.Stream.Heartbeat + 5*time.Second + 3*time.Second):
		t.Fatal("the stream outlived its revoked signing key")
	}
}

// TestSSEThroughReverseProxy (TESTPLAN F24): through a stock
// httputil.ReverseProxy, the stream is not buffered: ready and live events
// arrive at once.
func TestSSEThroughReverseProxy(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	u, _ := url.Parse(in.url)
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(u))
	t.Cleanup(proxy.Close)
	acme := in.signup("Acme")
	p := in.publisher(acme)
	via := &instance{t: t, db: in.db, url: proxy.URL, logs: in.logs, svc: in.svc, srv: proxy}
	start := time.Now()
	s := via.subscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: p.token("u", nil, 600)})
	s.connID()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("ready took %v through a reverse proxy: the stream is buffered", took)
	}
	ids := p.events(`{"channel":"broadcast","type":"t"}`)
	if got := s.collect(1, 2*time.Second); got[0].ID != ids[0] {
		t.Errorf("got %s, want %s", got[0].ID, ids[0])
	}
}

// TestKeyRolloverKeepsRenewedStreams: a stream renewed in place with a token
// of a newer signing key, through another instance, outlives the revocation
// of the key it connected with; a stream not renewed ends.
func TestKeyRolloverKeepsRenewedStreams(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Stream.Heartbeat = time.Second
	pool := pgtest.NewDB(t)
	a, b := newInstance(t, pool, cfg), newInstance(t, pool, cfg)
	acme := a.signup("Acme")
	p := a.publisher(acme)
	renewed := a.subscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: p.token("u", nil, 600)})
	stale := a.subscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: p.token("u", nil, 600)})
	id := renewed.connID()
	stale.connID()
	<-renewed.system // ready
	<-stale.system

	if res := a.do("POST", "/v1/signing-keys", acme.APIKey, ""); res.status != 201 {
		t.Fatalf("new signing key = %d %s", res.status, res.body)
	}
	fresh := p.token("u", nil, 900) // signed with the newest key
	// The row must be written before another instance can renew it.
	waitFor(t, 5*time.Second, func() string {
		if pgtest.Count(t, pool, `SELECT count(*) FROM connections WHERE id = $1`, id) == 1 {
			return ""
		}
		return "the stream's row is not written"
	})
	if res := b.do("POST", "/api/realtime/connections/"+id+"/token", fresh, ""); res.status != 200 {
		t.Fatalf("renew through the other instance = %d %s", res.status, res.body)
	}
	if res := a.do("DELETE", "/v1/signing-keys/"+acme.SigningKey.Kid, acme.APIKey, ""); res.status != 204 {
		t.Fatalf("revoke the old key = %d", res.status)
	}
	select {
	case e := <-stale.system:
		if e.Type != "token_expired" {
			t.Errorf("the stream not renewed got %s, want token_expired", e.Type)
		}
	case <-time.After(cfg.Stream.Heartbeat + 5*time.Second + 3*time.Second):
		t.Fatal("the stream not renewed outlived its revoked signing key")
	}
	select {
	case e := <-renewed.system:
		t.Fatalf("the renewed stream got %s after the old key was revoked: %s", e.Type, e.Data)
	case <-time.After(3 * cfg.Stream.Heartbeat):
	}
	ids := p.events(`{"channel":"broadcast","type":"after-rollover"}`)
	if got := renewed.collect(1, 5*time.Second); got[0].ID != ids[0] {
		t.Errorf("the renewed stream got %s, want %s", got[0].ID, ids[0])
	}
}
