package main

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/pusher"
	"github.com/hybridrt/hybridrt/internal/usage"
)

type usageReport struct {
	Granularity string `json:"granularity"`
	From, To    string
	Usage       []usage.Row
	Total       usage.Row
}

// TestUsageCountsWhatIsStored: two instances on one database take
// publishes at once through the HTTP API and Pusher's HTTP API, and client
// events; once each has flushed and the day is rolled up, GET /v1/usage
// counts, by door, exactly the events stored, and the deliveries to a
// subscriber; refusals by a limit are counted by reason. A tenant sees only
// its own usage; the operator sees the service's and any tenant's; bad
// ranges are 400s.
func TestUsageCountsWhatIsStored(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.OperatorToken = "operator-token-of-the-usage-test"
	a, b := newInstance(t, pool, cfg), newInstance(t, pool, cfg)
	acme, other := a.signup("Acme"), a.signup("Other")
	if res := a.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"clientEvents":true}`); res.status != 200 {
		t.Fatalf("enable client events = %d %s", res.status, res.body)
	}
	watcher := a.publisher(acme)
	sub := a.subscribe(acme.Tenant.ID, "watcher", []string{"*"}, []string{"news"},
		subscribeOpts{token: watcher.token("watcher", []string{"news"}, 600)})
	<-sub.ready
	tok := a.do("POST", "/v1/tokens", acme.APIKey, `{"sub":"writer","channels":["chat:*"],"publish":["chat:*"],"ttl":600}`)
	var minted struct{ Token string }
	tok.json(t, &minted)

	const perDoor = 40
	var wg sync.WaitGroup
	for i, in := range []*instance{a, b} {
		wg.Add(3)
		go func() {
			defer wg.Done()
			for j := range perDoor {
				if res := in.do("POST", "/v1/events", acme.APIKey, fmt.Sprintf(`{"channel":"news","type":"n","data":%d}`, j)); res.status != 201 {
					t.Errorf("publish = %d %s", res.status, res.body)
				}
			}
		}()
		go func() {
			defer wg.Done()
			path := "/apps/" + acme.Tenant.ID + "/events"
			for j := range perDoor {
				body := fmt.Sprintf(`{"name":"p","data":"%d-%d","channel":"pusher-news"}`, i, j)
				q := pusher.SignQuery(acme.SigningKey.Kid, []byte(acme.SigningKey.Secret), "POST", path, nil, []byte(body), time.Now())
				if res := in.do("POST", path+"?"+q, "", body); res.status != 200 {
					t.Errorf("Pusher trigger = %d %s", res.status, res.body)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range perDoor / 4 { // under the per-connection rate of client events
				res := in.do("POST", "/api/realtime/publish", minted.Token, `{"channel":"chat:1","type":"client-typing"}`)
				if res.status == 429 {
					time.Sleep(time.Second)
					continue
				}
				if res.status != 201 {
					t.Errorf("client event = %d %s", res.status, res.body)
				}
			}
		}()
	}
	wg.Wait()
	// A refusal by a limit: an event over the size limit.
	big := strings.Repeat("x", cfg.Publish.MaxEventBytes+1)
	checkProblem(t, "an event too large", a.do("POST", "/v1/events", acme.APIKey, `{"channel":"news","type":"n","data":"`+big+`"}`), 413)
	sub.collect(2*perDoor, 10*time.Second)

	// The watcher's stream, once its instance has written it, is a peak.
	deadline := time.Now().Add(10 * time.Second)
	for pgtest.Count(t, pool, `SELECT count(*) FROM connections WHERE tenant_id = $1 AND transport = 'sse'`, acme.Tenant.ID) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := a.svc.usage.Sample(t.Context(), time.Minute); err != nil {
		t.Fatal(err)
	}
	flush := func() {
		t.Helper()
		for _, in := range []*instance{a, b} {
			if err := in.svc.usage.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if err := usage.Rollup(t.Context(), pool, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	flush()
	stored := func(where string) int64 {
		return int64(pgtest.Count(t, pool, `SELECT count(*) FROM events WHERE tenant_id = $1 AND `+where, acme.Tenant.ID))
	}
	var rep usageReport
	a.do("GET", "/v1/usage", acme.APIKey, "").json(t, &rep)
	got := rep.Total
	if got.PublishedAPI != stored("channel = 'news'") || got.PublishedPusher != stored("channel = 'pusher-news'") ||
		got.PublishedClient != stored("channel = 'chat:1'") || got.PublishedAPI != 2*perDoor || got.PublishedPusher != 2*perDoor {
		t.Errorf("usage = api %d, pusher %d, client %d; stored %d, %d, %d",
			got.PublishedAPI, got.PublishedPusher, got.PublishedClient, stored("channel = 'news'"), stored("channel = 'pusher-news'"), stored("channel = 'chat:1'"))
	}
	if got.Deliveries < 2*perDoor || got.BytesDelivered <= got.Deliveries {
		t.Errorf("deliveries %d (%d bytes), want at least the %d events the watcher received", got.Deliveries, got.BytesDelivered, 2*perDoor)
	}
	if got.Peak.SSE != 1 || got.Peak.Total != 1 {
		t.Errorf("peak connections = %+v, want the watcher's one SSE stream", got.Peak)
	}
	if got.Rejected["event_size"] != 1 {
		t.Errorf("rejected = %v, want one event_size", got.Rejected)
	}
	if len(rep.Usage) != 1 || rep.Granularity != "day" || rep.To != time.Now().UTC().Format(time.DateOnly) {
		t.Errorf("report = %+v, want today by day", rep)
	}

	// Flushing and rolling up again counts nothing twice.
	flush()
	var again usageReport
	b.do("GET", "/v1/usage?granularity=month", acme.APIKey, "").json(t, &again)
	if again.Total.Published() != got.Published() || again.Total.Deliveries != got.Deliveries {
		t.Errorf("after another flush and roll-up: %+v, want %+v", again.Total, got)
	}

	// Other sees none of it; the operator sees both, and each alone.
	var theirs usageReport
	a.do("GET", "/v1/usage", other.APIKey, "").json(t, &theirs)
	if theirs.Total.Published() != 0 || theirs.Total.Deliveries != 0 {
		t.Errorf("the other tenant's usage = %+v, want none", theirs.Total)
	}
	var service, one usageReport
	a.do("GET", "/v1/operator/usage", cfg.OperatorToken, "").json(t, &service)
	a.do("GET", "/v1/operator/usage?tenant="+acme.Tenant.ID, cfg.OperatorToken, "").json(t, &one)
	if service.Total.Published() != got.Published() || one.Total.Published() != got.Published() {
		t.Errorf("operator: service %d, acme %d, want %d", service.Total.Published(), one.Total.Published(), got.Published())
	}
	checkProblem(t, "operator usage with an API key", a.do("GET", "/v1/operator/usage", acme.APIKey, ""), 401)

	// CSV: a header and today's line, adding up.
	res := a.do("GET", "/v1/usage?format=csv", acme.APIKey, "")
	if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV = %d %s", res.status, res.header.Get("Content-Type"))
	}
	lines, err := csv.NewReader(strings.NewReader(string(res.body))).ReadAll()
	if err != nil || len(lines) != 2 || lines[0][0] != "day" || lines[1][4] != fmt.Sprint(got.Published()) {
		t.Errorf("CSV = %q (%v)", res.body, err)
	}

	for _, q := range []string{"from=yesterday", "to=2026-13-01", "granularity=hour", "from=2026-12-05&to=2026-12-01", "from=2020-01-01&to=2026-01-01", "format=xml"} {
		checkProblem(t, q, a.do("GET", "/v1/usage?"+q, acme.APIKey, ""), http.StatusBadRequest)
	}
}
