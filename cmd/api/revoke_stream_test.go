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
