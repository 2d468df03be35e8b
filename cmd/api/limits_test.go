package main

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/limit"
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

// TestLimitsAcrossInstances: the per-key publish rate, a tenant's publish
// quota and its connection quota hold for the tenant as a whole within 10%
// once traffic is steady, hammered through two instances at once with most
// of the traffic on one of them (internal/limit).
func TestLimitsAcrossInstances(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.OperatorToken = "operator-token-0123456789abcdef"
	cfg.PublishRate = 60
	a, b := newInstance(t, pool, cfg), newInstance(t, pool, cfg)
	acme, quota := a.signup("Acme"), a.signup("Quota")
	if res := a.do("PUT", "/v1/operator/tenants/"+quota.Tenant.ID+"/quotas", cfg.OperatorToken,
		`{"publishRate":40,"maxConnections":30}`); res.status != 200 {
		t.Fatalf("PUT quotas = %d %s", res.status, res.body)
	}
	// One key per worker, each under the per-key rate: only the tenant's quota bites.
	quotaKeys := []string{quota.APIKey}
	for range 3 {
		var k struct{ APIKey string }
		a.do("POST", "/v1/keys", quota.APIKey, `{"name":"worker"}`).json(t, &k)
		quotaKeys = append(quotaKeys, k.APIKey)
	}

	// hammer publishes from 3 workers on a and 1 on b, each 50 requests a
	// second whatever the answer (well over the limits), and returns the
	// 201s of each second.
	hammer := func(t *testing.T, keys []string, wantCode string, seconds int) []int {
		start := time.Now()
		var mu sync.Mutex
		created := make([]int, seconds)
		var wg sync.WaitGroup
		for w, in := range []*instance{a, a, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for range tick.C {
					sec := int(time.Since(start) / time.Second)
					if sec >= seconds {
						return
					}
					res, err := in.tryDo("POST", "/v1/events", keys[w%len(keys)], `{"channel":"broadcast","type":"t"}`)
					if err != nil {
						t.Error(err)
						return
					}
					switch res.status {
					case http.StatusCreated:
						mu.Lock()
						created[sec]++
						mu.Unlock()
					case http.StatusTooManyRequests:
						if code := checkProblem(t, "over the limit", res, 429); code != wantCode || res.header.Get("Retry-After") != "1" {
							t.Errorf("429 with code %q and Retry-After %q, want %s and 1", code, res.header.Get("Retry-After"), wantCode)
						}
					default:
						t.Errorf("publish = %d %s", res.status, res.body)
					}
				}
			}()
		}
		wg.Wait()
		return created
	}
	steady := func(t *testing.T, what string, created []int, from int, perSecond float64) {
		sum := 0
		for _, n := range created[from:] {
			sum += n
		}
		got := float64(sum) / float64(len(created)-from)
		t.Logf("%s: admitted each second %v; %.1f/s once steady, limit %.0f/s", what, created, got, perSecond)
		if got < 0.9*perSecond || got > 1.1*perSecond {
			t.Errorf("%s: %.1f/s admitted once steady (every second: %v), want %.0f ± 10%%", what, got, created, perSecond)
		}
	}

	t.Run("publish rate per key", func(t *testing.T) {
		t.Parallel()
		steady(t, "one key at 60/s", hammer(t, []string{acme.APIKey}, "rate_limited", 8), 3, 60)
	})
	t.Run("publish quota of the tenant", func(t *testing.T) {
		t.Parallel()
		steady(t, "four keys, tenant quota 40/s", hammer(t, quotaKeys, "tenant_rate_limited", 8), 3, 40)
	})
	t.Run("connection quota of the tenant", func(t *testing.T) {
		t.Parallel()
		p := a.publisher(quota)
		tok := p.token("u", nil, 600)
		var (
			mu      sync.Mutex
			streams = map[*instance][]*stream{}
		)
		held := func() int {
			id, _ := strconv.ParseInt(quota.Tenant.ID, 10, 64)
			return a.svc.shared.Held(limit.Connections(id)) + b.svc.shared.Held(limit.Connections(id))
		}
		// clients keeps n clients per instance trying every 300 ms until
		// they hold a stream, for d.
		clients := func(d time.Duration, n map[*instance]int) {
			var wg sync.WaitGroup
			stop := time.Now().Add(d)
			for in, k := range n {
				for range k {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for time.Now().Before(stop) {
							s, res := in.trySubscribe(quota.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: tok})
							if s != nil {
								mu.Lock()
								streams[in] = append(streams[in], s)
								mu.Unlock()
								return
							}
							if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") == "" {
								t.Errorf("connection over the quota = %d %s, want 429 with Retry-After", res.status, res.body)
								return
							}
							time.Sleep(300 * time.Millisecond)
						}
					}()
				}
			}
			wg.Wait()
		}
		clients(6*time.Second, map[*instance]int{a: 45, b: 15})
		n := held()
		t.Logf("60 clients, 45 on one instance, against a quota of 30: %d held (%d on a, %d on b)", n, len(streams[a]), len(streams[b]))
		if n < 27 || n > 33 {
			t.Errorf("%d connections held against a quota of 30, want 30 ± 10%%", n)
		}
		// Ten of a's streams end; b's waiting clients take their places.
		for _, s := range streams[a][:10] {
			s.close()
		}
		clients(6*time.Second, map[*instance]int{b: 20})
		n = held()
		t.Logf("after 10 streams on a ended and 20 clients tried b: %d held", n)
		if n < 27 || n > 33 {
			t.Errorf("%d connections held after the move, want 30 ± 10%%", n)
		}
	})
}
