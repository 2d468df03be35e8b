package main

// Fault tests that put internal/faultproxy, a TCP proxy, between a client
// and an instance.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/faultproxy"
	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// through returns a view of in whose clients connect through proxy: the
// same server, logs and oracles, another address.
func (in *instance) through(proxy *faultproxy.Proxy) *instance {
	return &instance{t: in.t, db: in.db, url: "http://" + proxy.Addr(), logs: in.logs, svc: in.svc, srv: in.srv}
}

func proxyTo(t *testing.T, in *instance) *faultproxy.Proxy {
	t.Helper()
	proxy, err := faultproxy.Start(strings.TrimPrefix(in.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	return proxy
}

// pacedLoad is what publishPaced did.
type pacedLoad struct {
	ids     []int64 // ascending
	slowest time.Duration
	took    time.Duration
}

// publishPaced publishes 1,000 events a second to broadcast, 50 every 50 ms,
// until done says so (asked before each batch) or limit passes. Up to four
// requests run at once, so one slow request does not lower the rate.
func publishPaced(t *testing.T, p *publisher, done func(elapsed time.Duration) bool, limit time.Duration) pacedLoad {
	t.Helper()
	data := strings.Repeat("x", 2<<10)
	var batch []string
	for range 50 {
		batch = append(batch, `{"channel":"broadcast","type":"load","data":"`+data+`"}`)
	}
	body := `{"events":[` + strings.Join(batch, ",") + `]}`
	var (
		out  pacedLoad
		mu   sync.Mutex
		wg   sync.WaitGroup
		busy = make(chan struct{}, 4)
	)
	send := func() {
		defer wg.Done()
		defer func() { <-busy }()
		sent := time.Now()
		res, err := p.in.tryDo("POST", "/v1/events", p.key, body)
		took := time.Since(sent)
		if err != nil || res.status != http.StatusCreated {
			t.Errorf("publish = %d %s %v", res.status, res.body, err)
			return
		}
		var ids struct{ IDs []string }
		if err := json.Unmarshal(res.body, &ids); err != nil {
			t.Errorf("publish answer %s: %v", res.body, err)
			return
		}
		// The ledger learns the events from what was sent rather than
		// from history (recordIDs), which would halve the rate here.
		var evs []envelope
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids.IDs {
			n, _ := strconv.ParseInt(id, 10, 64)
			out.ids = append(out.ids, n)
			evs = append(evs, envelope{ID: id, Channel: "broadcast", Type: "load", Data: json.RawMessage(`"` + data + `"`)})
		}
		published.record(p.tenantID, evs)
		out.slowest = max(out.slowest, took)
	}
	start := time.Now()
	for k := 0; ; k++ {
		if elapsed := time.Since(start); done(elapsed) || elapsed > limit {
			break
		}
		time.Sleep(time.Until(start.Add(time.Duration(k) * 50 * time.Millisecond)))
		busy <- struct{}{}
		wg.Add(1)
		go send()
	}
	wg.Wait()
	out.took = time.Since(start)
	slices.Sort(out.ids)
	return out
}

// TestSlowConsumerThrottled (TESTPLAN F11): subscriber A reads its stream
// through a link that passes 1 KiB/s while 1,000 events a second (about
// 2 MiB/s) go to its channel; five subscribers on the same channel read
// directly. Once the socket buffers between the server and A are full, a
// write to A cannot finish within the write deadline (or the kernel drops
// the connection by TCP_USER_TIMEOUT) and the server cuts A off; the
// publisher never waits for A, and the others get every event. A then
// reconnects directly with Last-Event-ID and catches up (O1 for A).
func TestSlowConsumerThrottled(t *testing.T) {
	checkResources(t) // serial, so O4 can count the whole process
	cfg := testConfig()
	cfg.Stream.WriteTimeout = 4 * time.Second
	in := newInstance(t, pgtest.NewDB(t), cfg)
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("u", nil, 600)
	channels := []string{"broadcast"}

	var others []*stream // B–F
	for range 5 {
		s := in.subscribe(acme.Tenant.ID, "u", nil, channels, subscribeOpts{token: tok})
		s.connID()
		others = append(others, s)
	}
	everyoneGets := func(ids []int64) {
		t.Helper()
		for i, s := range others {
			checkSequence(t, fmt.Sprintf("direct subscriber %d", i), s.collect(len(ids), 60*time.Second), ids)
		}
	}

	// The baseline: the same load with no slow subscriber, on the same
	// machine at the same time, so the comparison is not a timing guess.
	base := publishPaced(t, p, func(d time.Duration) bool { return d >= 3*time.Second }, time.Minute)
	everyoneGets(base.ids)
	t.Logf("baseline: %d events in %v, slowest publish %v", len(base.ids), base.took, base.slowest)

	proxy := proxyTo(t, in)
	proxy.Throttle(1 << 10)
	a := in.through(proxy).subscribe(acme.Tenant.ID, "u", nil, channels, subscribeOpts{token: tok})
	aConn := a.connID()
	if n := in.svc.registry.Count(); n != len(others)+1 {
		t.Fatalf("%d streams registered, want %d", n, len(others)+1)
	}

	start := time.Now()
	var cutAfter time.Duration
	load := publishPaced(t, p, func(d time.Duration) bool {
		if cutAfter == 0 && in.svc.registry.Count() == len(others) {
			cutAfter = time.Since(start)
		}
		// Go on for a second after the cut, so the others' share of the
		// load spans A's whole life.
		return cutAfter != 0 && d >= cutAfter+time.Second
	}, 30*time.Second)
	if cutAfter == 0 {
		t.Fatalf("the throttled subscriber was still connected %v after the load began (%d events published)", load.took, len(load.ids))
	}
	ended := streamEnded(in.logs.String(), aConn)
	t.Logf("throttled subscriber cut off %v after the load began; %s", cutAfter.Round(time.Millisecond), ended)
	// The server ends it, not the client (which is still there): either a
	// write misses its deadline, or the kernel gives up on a window that
	// stayed shut for the write timeout (TCP_USER_TIMEOUT), and the
	// stream's reader sees the connection gone first.
	if !strings.Contains(ended, `"reason":"write failed or timed out"`) && !strings.Contains(ended, `"reason":"client gone"`) {
		t.Errorf("the throttled subscriber's stream ended with %q, want the reason write failed or timed out, or client gone", ended)
	}
	// The buffers hold a few MiB: at 2 MiB/s they fill within seconds,
	// then the write deadline runs.
	if cutAfter > 20*time.Second {
		t.Errorf("the throttled subscriber was cut off only %v after the load began, want within 20 s (write timeout %v)", cutAfter, cfg.Stream.WriteTimeout)
	}

	// A publisher that waited on A even once would have taken the write
	// timeout for that request.
	t.Logf("with the throttled subscriber: %d events in %v, slowest publish %v", len(load.ids), load.took, load.slowest)
	if bound := max(cfg.Stream.WriteTimeout, 2*base.slowest+time.Second); load.slowest >= bound {
		t.Errorf("a publish took %v with a throttled subscriber (slowest %v without): the publisher waited on it", load.slowest, base.slowest)
	}
	everyoneGets(load.ids)

	// A resumes directly from the last event it got, and gets the rest once, in order.
	a.close()
	last := a.startCursor.Load()
	a.mu.Lock()
	got := len(a.received)
	for id := range a.received {
		last = max(last, id)
	}
	a.mu.Unlock()
	resumed := in.subscribe(acme.Tenant.ID, "u", nil, channels, subscribeOpts{token: tok, lastEventID: strconv.FormatInt(last, 10)})
	i, _ := slices.BinarySearch(load.ids, last+1)
	rest := load.ids[i:]
	t.Logf("the throttled subscriber had received %d events; it resumes after %d and catches up %d", got, last, len(rest))
	checkSequence(t, "the throttled subscriber after resuming", resumed.collect(len(rest), 60*time.Second), rest)
}

// streamEnded returns the "stream ended" log line of connection id.
func streamEnded(logs, id string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"msg":"stream ended"`) && strings.Contains(l, `"connection_id":"`+id+`"`) {
			return l
		}
	}
	return "no stream ended line for connection " + id
}

// TestLostPublishReplyTCP (TESTPLAN F14): the TCP proxy forwards a publish,
// the instance commits it, and the reply is lost on the way back. The
// client retries with the same Idempotency-Key and gets the event's id; the
// event is stored once and delivered once. (TestGoClientPublish loses the
// reply in an HTTP proxy instead.)
func TestLostPublishReplyTCP(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("u", nil, 600)
	sub := in.subscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: tok})
	sub.connID()
	proxy := proxyTo(t, in)
	countEvents := func() int { return pgtest.Count(t, pool, `SELECT count(*) FROM events`) }
	before := countEvents()

	body := `{"channel":"broadcast","type":"order","data":{"n":1}}`
	proxy.DropNextResponse()
	req, _ := http.NewRequest("POST", "http://"+proxy.Addr()+"/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+acme.APIKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "order-f14")
	// A client of its own on a fresh connection: Go's Transport resends a
	// request with an Idempotency-Key by itself when a reused connection
	// fails, and the test is to see the loss as the application does.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 15 * time.Second}
	defer c.CloseIdleConnections()
	if res, err := c.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("the publish through the proxy got %d, want its reply lost", res.StatusCode)
	} else {
		t.Logf("the client saw: %v", err)
	}
	// The reply is sent only after the commit, so the event is stored.
	if n := countEvents() - before; n != 1 {
		t.Fatalf("%d events stored after the lost reply, want 1", n)
	}

	retry := in.do("POST", "/v1/events", acme.APIKey, body, "Idempotency-Key", "order-f14")
	if retry.status != http.StatusCreated || retry.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry = %d replayed=%q %s, want a replayed 201", retry.status, retry.header.Get("Idempotent-Replayed"), retry.body)
	}
	var out struct{ IDs []string }
	retry.json(t, &out)
	if len(out.IDs) != 1 {
		t.Fatalf("retry ids = %v, want one", out.IDs)
	}
	p.recordIDs(out.IDs)
	// Once more through the proxy, now harmless: the same answer.
	if again := in.through(proxy).do("POST", "/v1/events", acme.APIKey, body, "Idempotency-Key", "order-f14"); again.status != http.StatusCreated || string(again.body) != string(retry.body) {
		t.Errorf("a second retry through the proxy = %d %s, want %d %s", again.status, again.body, retry.status, retry.body)
	}
	if n := countEvents() - before; n != 1 {
		t.Errorf("%d events stored after the retries, want 1", n)
	}
	got := sub.collect(1, 10*time.Second)
	if got[0].ID != out.IDs[0] || got[0].Type != "order" {
		t.Errorf("the subscriber got %+v, want event %s", got[0], out.IDs[0])
	}
	sub.quiet(time.Second) // delivered once
}
