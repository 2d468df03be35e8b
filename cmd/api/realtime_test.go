package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

func TestPublishAndSubscribe(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("42", nil, 600)

	s := in.subscribe(acme.Tenant.ID, "42", nil, []string{"broadcast", "user:42"}, subscribeOpts{token: tok})
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := s.res.Header.Get(k); got != want {
			t.Errorf("SSE header %s = %q, want %q", k, got, want)
		}
	}
	if id := s.connID(); !strings.HasPrefix(id, "c_") {
		t.Errorf("ready connectionId = %q", id)
	}
	ids := p.events(`{"channel":"broadcast","type":"greeting","data":{"hello":"world","n":[1,2]}}`)
	p.events(`{"channel":"user:43","type":"secret","data":"for 43 only"}`)
	ids = append(ids, p.events(`{"channel":"user:42","type":"notification","data":{"a":1}}`)...)
	got := s.collect(2, 5*time.Second)
	if got[0].ID != ids[0] || got[0].Channel != "broadcast" || got[0].Type != "greeting" || string(got[0].Data) != `{"hello":"world","n":[1,2]}` {
		t.Errorf("first event = %+v", got[0])
	}
	if _, err := time.Parse(time.RFC3339, got[0].Time); err != nil || len(got[0].Time) != len("2006-01-02T15:04:05.000Z") {
		t.Errorf("event time %q is not RFC 3339 with milliseconds in UTC", got[0].Time)
	}
	if got[1].ID != ids[1] || got[1].Channel != "user:42" {
		t.Errorf("second event = %+v, want user:42 id %s", got[1], ids[1])
	}
	s.quiet(200 * time.Millisecond)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	s := in.subscribe(acme.Tenant.ID, "1", nil, []string{"broadcast"}, subscribeOpts{token: p.token("1", nil, 600)})
	s.connID()
	p.events(`{"channel":"broadcast","type":"t"}`)
	s.collect(1, 5*time.Second)
	res := in.do("GET", "/metrics", "", "")
	if res.status != http.StatusOK {
		t.Fatalf("GET /metrics = %d", res.status)
	}
	for _, series := range []string{
		`hybridrt_connections{transport="sse"}`, "hybridrt_events_published_total", `hybridrt_events_delivered_total{transport="sse"}`,
		"hybridrt_publish_commit_seconds_bucket", "hybridrt_delivery_latency_seconds_bucket",
		"hybridrt_listener_reconnects_total", "hybridrt_slow_consumers_dropped_total",
	} {
		if !strings.Contains(string(res.body), series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}
