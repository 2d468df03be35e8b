package main

import (
	"strings"
	"testing"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestQuotas: the operator sets a tenant's quotas; each is enforced with a
// clear 4xx and counted, on that tenant only.
func TestQuotas(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.OperatorToken = "operator-token-0123456789abcdef"
	in := newInstance(t, pool, cfg)
	acme, other := in.signup("Acme"), in.signup("Other")
	path := "/v1/operator/tenants/" + acme.Tenant.ID + "/quotas"
	op := cfg.OperatorToken

	// The operator API: only with the operator token, only valid quotas.
	checkProblem(t, "quotas without token", in.do("PUT", path, "", `{}`), 401)
	checkProblem(t, "quotas with a tenant key", in.do("PUT", path, acme.APIKey, `{}`), 401)
	checkProblem(t, "quotas of no tenant", in.do("PUT", "/v1/operator/tenants/999999/quotas", op, `{}`), 404)
	for _, bad := range []string{`{"maxBatch":0}`, `{"maxEventBytes":10}`, `{"retention":"soon"}`, `{"retention":"1s"}`, `{"maxChanels":3}`} {
		checkProblem(t, "quotas "+bad, in.do("PUT", path, op, bad), 400)
	}
	quotas := `{"maxConnections":1,"maxChannels":2,"publishRate":3,"maxEventBytes":100,"maxBatch":2,"retention":"1m"}`
	if res := in.do("PUT", path, op, quotas); res.status != 200 {
		t.Fatalf("PUT quotas = %d %s", res.status, res.body)
	}
	if res := in.do("GET", path, op, ""); res.status != 200 || !strings.Contains(string(res.body), `"retention":"1m0s"`) {
		t.Errorf("GET quotas = %d %s", res.status, res.body)
	}

	p := in.publisher(acme)
	tok := p.token("u", []string{"a", "b", "c"}, 600)
	checkProblem(t, "event over maxEventBytes", in.do("POST", "/v1/events", acme.APIKey, `{"channel":"a","type":"t","data":"`+strings.Repeat("x", 200)+`"}`), 413)
	checkProblem(t, "batch over maxBatch", in.do("POST", "/v1/events", acme.APIKey, `{"channels":["a","b","c"],"type":"t"}`), 413)
	_, res := in.trySubscribe(acme.Tenant.ID, "u", []string{"a", "b", "c"}, []string{"a", "b", "c"}, subscribeOpts{token: tok})
	if code := checkProblem(t, "subscription over maxChannels", res, 400); code != "too_many_channels" {
		t.Errorf("code %q", code)
	}
	in.subscribe(acme.Tenant.ID, "u", []string{"a"}, []string{"a"}, subscribeOpts{token: tok}).connID()
	_, res = in.trySubscribe(acme.Tenant.ID, "u", []string{"a"}, []string{"a"}, subscribeOpts{token: tok})
	if code := checkProblem(t, "connection over maxConnections", res, 429); code != "too_many_connections" {
		t.Errorf("code %q", code)
	}
	refused := 0
	for range 6 {
		if res := in.do("POST", "/v1/events", acme.APIKey, `{"channel":"a","type":"t"}`); res.status == 429 {
			refused++
			if code := checkProblem(t, "over publishRate", res, 429); code != "tenant_rate_limited" {
				t.Errorf("code %q", code)
			}
		}
	}
	if refused == 0 {
		t.Errorf("6 publishes in a burst at a quota of 3/s: none refused")
	}

	// The other tenant keeps the server's defaults.
	po := in.publisher(other)
	po.events(`{"channels":["a","b","c"],"type":"t","data":"` + strings.Repeat("x", 200) + `"}`)
	for range 6 {
		po.events(`{"channel":"a","type":"t"}`)
	}

	// Retention: acme's events older than its 1m quota go; other's stay (24h).
	if _, err := pool.Exec(t.Context(), `UPDATE events SET created_at = now() - interval '2 minutes'`); err != nil {
		t.Fatal(err)
	}
	if _, err := in.svc.store.Prune(t.Context(), cfg.EventRetention, 1000); err != nil {
		t.Fatal(err)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events WHERE tenant_id = $1`, acme.Tenant.ID); n != 0 {
		t.Errorf("%d of acme's events survived its 1m retention", n)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events WHERE tenant_id = $1`, other.Tenant.ID); n != 9 {
		t.Errorf("other's events = %d, want 9 kept under the default retention", n)
	}

	metrics := string(in.do("GET", "/metrics", "", "").body)
	for _, q := range []string{"event_size", "batch_size", "channels", "connections", "publish_rate"} {
		if !strings.Contains(metrics, `hybridrt_quota_rejections_total{quota="`+q+`"}`) {
			t.Errorf("/metrics lacks rejections of %s", q)
		}
	}
}

func TestOperatorAPIOff(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig()) // no OPERATOR_TOKEN
	acme := in.signup("Acme")
	if code := checkProblem(t, "operator API without OPERATOR_TOKEN", in.do("GET", "/v1/operator/tenants/"+acme.Tenant.ID+"/quotas", "anything", ""), 404); code != "operator_api_off" {
		t.Errorf("code %q", code)
	}
}

// TestPprof checks profiles are off by default and, with PPROF=on, served
// to the operator only.
func TestPprof(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	off := newInstance(t, pool, testConfig())
	checkProblem(t, "pprof off", off.do("GET", "/debug/pprof/", "", ""), 404)

	cfg := testConfig()
	cfg.OperatorToken = "operator-token-0123456789abcdef"
	cfg.Pprof = true
	on := newInstance(t, pool, cfg)
	acme := on.signup("Acme")
	checkProblem(t, "pprof without a token", on.do("GET", "/debug/pprof/", "", ""), 401)
	checkProblem(t, "pprof with a tenant's API key", on.do("GET", "/debug/pprof/", acme.APIKey, ""), 401)
	for path, want := range map[string]string{"/debug/pprof/": "goroutine", "/debug/pprof/goroutine?debug=1": "goroutine profile", "/debug/pprof/heap?debug=1": "heap profile"} {
		res := on.do("GET", path, cfg.OperatorToken, "")
		if res.status != 200 || !strings.Contains(string(res.body), want) {
			t.Errorf("GET %s as the operator = %d %.200q", path, res.status, res.body)
		}
	}
}
