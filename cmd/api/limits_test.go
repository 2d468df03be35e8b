package main

import (
	"net/http"
	"testing"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestLimits: the per-tenant connection cap and the per-key publish rate
// answer 429 with Retry-After, before anything is streamed or stored.
func TestLimits(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxConnectionsByTenant = 2
	cfg.PublishRate = 5
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, cfg)
	acme, other := in.signup("Acme"), in.signup("Other")
	p := in.publisher(acme)
	tok := p.token("u", nil, 600)

	in.subscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: tok}).connID()
	in.subscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: tok}).connID()
	s, res := in.trySubscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: tok})
	if s != nil {
		t.Fatal("a third connection was accepted over a cap of 2")
	}
	if checkProblem(t, "third connection", res, http.StatusTooManyRequests); res.header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	// Another tenant is not affected.
	in.subscribe(other.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: in.publisher(other).token("u", nil, 600)}).connID()

	// Publishing: a burst of 5 passes, the 6th within the same second is refused.
	before := pgtest.Count(t, pool, `SELECT count(*) FROM events`)
	var refused int
	for range 8 {
		res := in.do("POST", "/v1/events", acme.APIKey, `{"channel":"broadcast","type":"t"}`)
		if res.status == http.StatusTooManyRequests {
			refused++
			if checkProblem(t, "over the rate", res, 429); res.header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
		}
	}
	stored := pgtest.Count(t, pool, `SELECT count(*) FROM events`) - before
	if refused == 0 || stored+refused != 8 {
		t.Errorf("8 publishes at a limit of 5/s: %d refused, %d stored", refused, stored)
	}
	// Another key of another tenant is not affected.
	if res := in.do("POST", "/v1/events", other.APIKey, `{"channel":"broadcast","type":"t"}`); res.status != 201 {
		t.Errorf("other tenant's publish = %d", res.status)
	}
}
