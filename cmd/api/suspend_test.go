package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// suspendBound is TESTPLAN F19's T: a suspended tenant's streams close, and
// its requests are refused, within this on every instance.
const suspendBound = 5 * time.Second

const testOperatorToken = "operator-token-0123456789abcdef"

// account is a tenant as the operator API shows it.
type account struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Suspended   bool       `json:"suspended"`
	SuspendedAt *time.Time `json:"suspendedAt"`
}

// operator sends an operator API request and decodes a 200 answer.
func (in *instance) operator(method, path, token string) (account, response) {
	in.t.Helper()
	res := in.do(method, "/v1/operator/tenants/"+path, token, "")
	var a account
	if res.status == http.StatusOK {
		res.json(in.t, &a)
	}
	return a, res
}

// heldPoll is how a long-poll held in the background ended.
type heldPoll struct {
	status int
	code   string
	events []envelope
	at     time.Time // when it answered
	err    error
}

// holdPoll sends a long-poll from cursor in the background. It does not
// check the events against the ledger: the test does, on its own goroutine.
func holdPoll(in *instance, token string, channels []string, cursor int64) <-chan heldPoll {
	out := make(chan heldPoll, 1)
	u := fmt.Sprintf("%s/api/realtime/polling?channels=%s&cursor=%d&timeout=25", in.url, url.QueryEscape(strings.Join(channels, ",")), cursor)
	go func() {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- heldPoll{err: err}
			return
		}
		defer res.Body.Close()
		var body struct {
			Code   string
			Events []envelope
		}
		err = json.NewDecoder(res.Body).Decode(&body)
		out <- heldPoll{status: res.StatusCode, code: body.Code, events: body.Events, at: time.Now(), err: err}
	}()
	return out
}

// waitConnections waits until tenant key's connection list (all instances)
// holds n connections of transport.
func waitConnections(t *testing.T, in *instance, key, transport string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out struct{ Connections []struct{ Transport string } }
		in.do("GET", "/v1/connections", key, "").json(t, &out)
		got := 0
		for _, c := range out.Connections {
			if c.Transport == transport {
				got++
			}
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s connections listed after 10 s, want %d", got, transport, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ids(t *testing.T, evs []envelope) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.id(t)
	}
	return out
}

func parseIDs(t *testing.T, s []string) []int64 {
	out := make([]int64, len(s))
	for i, v := range s {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("id %q is not a number", v)
		}
		out[i] = n
	}
	return out
}

// TestTenantSuspendedEndsStreamsOnEveryInstance (TESTPLAN F19): the operator
// suspends tenant A on instance 1. A's SSE streams and held long-polls on
// both instances end within 5 s; A's publishes, reconnects, tickets and
// tokens get 403 tenant_suspended; tenant B keeps publishing and receiving
// on both instances, losing nothing and seeing nothing of A's (O2). Resumed,
// A publishes again and its clients resume from their Last-Event-ID with
// nothing lost.
func TestTenantSuspendedEndsStreamsOnEveryInstance(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.OperatorToken = testOperatorToken
	in1, in2 := newInstance(t, db, cfg), newInstance(t, db, cfg)
	instances := []*instance{in1, in2}
	a, b := in1.signup("Suspended"), in1.signup("Bystander")
	pa, pb := []*publisher{in1.publisher(a), in2.publisher(a)}, []*publisher{in1.publisher(b), in2.publisher(b)}
	channels := []string{"broadcast", "user:u"}
	tokA, tokB := pa[0].token("u", nil, 600), pb[0].token("u", nil, 600)

	// Each tenant: an SSE stream and a held long-poll on each instance.
	var streamsA, streamsB []*stream
	for _, in := range instances {
		streamsA = append(streamsA, in.subscribe(a.Tenant.ID, "u", nil, channels, subscribeOpts{token: tokA}))
		streamsB = append(streamsB, in.subscribe(b.Tenant.ID, "u", nil, channels, subscribeOpts{token: tokB}))
	}
	for _, s := range append(streamsA, streamsB...) {
		s.connID()
		<-s.system // ready
	}
	before := parseIDs(t, pa[0].events(`{"channel":"broadcast","type":"before","data":1}`))
	for _, s := range streamsA {
		checkSequence(t, "A's stream before suspension", s.collect(1, 5*time.Second), before)
	}
	headA, headB := pa[0].head(), pb[0].head()
	var pollsA, pollsB []<-chan heldPoll
	for _, in := range instances {
		pollsA = append(pollsA, holdPoll(in, tokA, channels, headA))
		pollsB = append(pollsB, holdPoll(in, tokB, channels, headB))
	}
	waitConnections(t, in1, a.APIKey, "polling", 2)
	waitConnections(t, in1, b.APIKey, "polling", 2)

	// Measure how long each of A's streams and polls lasts after the suspend.
	type ended struct {
		who  string
		took time.Duration
		code string
	}
	endings := make(chan ended, 4)
	start := time.Now()
	for i, s := range streamsA {
		go func() {
			select {
			case e := <-s.system:
				var d struct{ Code string }
				_ = json.Unmarshal([]byte(e.Data), &d)
				<-s.done
				endings <- ended{fmt.Sprintf("SSE stream on instance %d (%s)", i+1, e.Type), time.Since(start), d.Code}
			case <-s.done:
				endings <- ended{fmt.Sprintf("SSE stream on instance %d (no event)", i+1), time.Since(start), ""}
			}
		}()
	}
	got, res := in1.operator("POST", a.Tenant.ID+"/suspend", testOperatorToken)
	if res.status != http.StatusOK || !got.Suspended || got.SuspendedAt == nil || got.ID != a.Tenant.ID {
		t.Fatalf("suspend = %d %s, want 200 and the tenant, suspended", res.status, res.body)
	}

	// B publishes through both instances while A's connections end.
	var sentB []int64
	for i := 0; len(sentB) < 40; i++ {
		sentB = append(sentB, parseIDs(t, pb[i%2].events(fmt.Sprintf(`{"channels":["broadcast","user:u"],"type":"b","data":%d}`, i)))...)
		time.Sleep(25 * time.Millisecond)
	}
	for range streamsA {
		select {
		case e := <-endings:
			t.Logf("A's %s ended %v after the suspend request", e.who, e.took.Round(time.Millisecond))
			if e.code != "tenant_suspended" || e.took > suspendBound {
				t.Errorf("A's %s ended after %v with code %q, want token_expired with code tenant_suspended within %v", e.who, e.took, e.code, suspendBound)
			}
		case <-time.After(suspendBound + time.Second):
			t.Fatalf("a stream of suspended tenant A is still open after %v", suspendBound+time.Second)
		}
	}
	for i, c := range pollsA {
		select {
		case p := <-c:
			took := p.at.Sub(start)
			t.Logf("A's held long-poll on instance %d answered %d %s %v after the suspend request", i+1, p.status, p.code, took.Round(time.Millisecond))
			if p.err != nil || p.status != http.StatusForbidden || p.code != "tenant_suspended" || len(p.events) != 0 || took > suspendBound {
				t.Errorf("A's held long-poll on instance %d = %d %q %v after %v, want 403 tenant_suspended within %v", i+1, p.status, p.code, p.err, took, suspendBound)
			}
		case <-time.After(time.Until(start.Add(suspendBound + time.Second))):
			t.Fatalf("A's long-poll on instance %d is still held %v after the suspend", i+1, time.Since(start))
		}
	}

	// Everything A does is refused, on both instances, with the same code.
	for i, in := range instances {
		where := fmt.Sprintf(" on instance %d", i+1)
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/v1/events", `{"channel":"broadcast","type":"t"}`},
			{"POST", "/v1/tokens", `{"sub":"u","ttl":60}`},
			{"GET", "/v1/tenant", ""},
			{"GET", "/v1/events", ""},
			{"POST", "/api/realtime/test", ""},
		} {
			res := in.do(req.method, req.path, a.APIKey, req.body)
			if code := checkProblem(t, "A's "+req.method+" "+req.path+where, res, http.StatusForbidden); code != "tenant_suspended" {
				t.Errorf("A's %s %s%s code = %q, want tenant_suspended", req.method, req.path, where, code)
			}
		}
		_, res := in.trySubscribe(a.Tenant.ID, "u", nil, channels, subscribeOpts{token: tokA, lastEventID: strconv.FormatInt(before[0], 10)})
		if code := checkProblem(t, "A's reconnect"+where, res, http.StatusForbidden); code != "tenant_suspended" {
			t.Errorf("A's reconnect%s code = %q, want tenant_suspended", where, code)
		}
		if code := checkProblem(t, "A's ticket"+where, in.do("POST", "/api/realtime/tickets", tokA, ""), http.StatusForbidden); code != "tenant_suspended" {
			t.Errorf("A's ticket%s code = %q, want tenant_suspended", where, code)
		}
		_, res = in.poll(a.Tenant.ID, "u", nil, channels, tokA, "timeout=0")
		if code := checkProblem(t, "A's poll"+where, res, http.StatusForbidden); code != "tenant_suspended" {
			t.Errorf("A's poll%s code = %q, want tenant_suspended", where, code)
		}
	}
	// A bad credential still gets its 401: suspension is told only to holders of a valid one.
	checkProblem(t, "publish with a made-up key", in2.do("POST", "/v1/events", "hrt_notakey", `{"channel":"b","type":"t"}`), http.StatusUnauthorized)

	// B lost nothing: every stream got every event, in order (O1, O3; the
	// ledger checked O2 on receipt), and its held polls answered with B's events.
	for i, s := range streamsB {
		checkSequence(t, fmt.Sprintf("B's stream on instance %d", i+1), s.collect(len(sentB), 10*time.Second), sentB)
		select {
		case <-s.done:
			t.Errorf("B's stream on instance %d ended", i+1)
		default:
		}
	}
	for i, c := range pollsB {
		p := <-c
		if p.err != nil || p.status != http.StatusOK || len(p.events) == 0 {
			t.Errorf("B's held long-poll on instance %d = %d %q %v with %d events, want 200 with B's events", i+1, p.status, p.code, p.err, len(p.events))
			continue
		}
		for _, e := range p.events {
			published.check(t, in1.db+"/"+b.Tenant.ID, "u", nil, channels, e)
		}
		checkSequence(t, fmt.Sprintf("B's long-poll on instance %d", i+1), p.events, sentB[:len(p.events)])
	}

	// Resumed on instance 1: instance 2 lets A publish again within the bound.
	got, res = in1.operator("POST", a.Tenant.ID+"/resume", testOperatorToken)
	if res.status != http.StatusOK || got.Suspended || got.SuspendedAt != nil {
		t.Fatalf("resume = %d %s, want 200 and the tenant, active", res.status, res.body)
	}
	resumed := time.Now()
	var after []int64
	for {
		res := in2.do("POST", "/v1/events", a.APIKey, `{"channel":"user:u","type":"after","data":0}`)
		if res.status == http.StatusCreated {
			var out struct{ IDs []string }
			res.json(t, &out)
			pa[1].recordIDs(out.IDs)
			after = parseIDs(t, out.IDs)
			break
		}
		if time.Since(resumed) > suspendBound {
			t.Fatalf("A's publish on instance 2 = %d %s %v after the resume, want 201 within %v", res.status, res.body, time.Since(resumed), suspendBound)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("instance 2 accepted A's publishes %v after the resume on instance 1", time.Since(resumed).Round(time.Millisecond))
	for i := 1; i <= 5; i++ {
		after = append(after, parseIDs(t, pa[i%2].events(fmt.Sprintf(`{"channel":"broadcast","type":"after","data":%d}`, i)))...)
	}
	// A's clients resume from the last id they saw, on either instance, and get every later event once.
	for i, in := range instances {
		s := in.subscribe(a.Tenant.ID, "u", nil, channels, subscribeOpts{token: tokA, lastEventID: strconv.FormatInt(before[0], 10)})
		checkSequence(t, fmt.Sprintf("A's resumed stream on instance %d", i+1), s.collect(len(after), 10*time.Second), after)
		s.quiet(200 * time.Millisecond)
		p, res := in.poll(a.Tenant.ID, "u", nil, channels, tokA, "cursor="+strconv.FormatInt(before[0], 10))
		if res.status != http.StatusOK {
			t.Fatalf("A's poll after the resume on instance %d = %d %s", i+1, res.status, res.body)
		}
		checkSequence(t, fmt.Sprintf("A's poll after the resume on instance %d", i+1), p.Events, after)
	}
}

// TestSuspendedTenantConsole (TESTPLAN F19, console): the console's live event log
// of a suspended tenant ends too, its console pages say why, and its API key
// cannot log in; the operator sees the status and resumes it from the
// operator view.
func TestSuspendedTenantConsole(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.OperatorToken = testOperatorToken
	in1, in2 := newInstance(t, db, cfg), newInstance(t, db, cfg)
	acme := in1.signup("Acme")

	dev := in2.browser()
	dev.login(acme.APIKey)
	op := in1.browser()
	op.get("/console/operator/login")
	if code, _, _ := op.post("/console/operator/login", url.Values{"token": {testOperatorToken}}); code != http.StatusSeeOther {
		t.Fatalf("operator login = %d", code)
	}
	code, body, _ := op.get("/console/operator")
	if code != 200 || !strings.Contains(body, "/console/operator/tenants/"+acme.Tenant.ID+"/suspend") {
		t.Fatalf("operator view = %d, lacks a suspend button for Acme:\n%s", code, body)
	}

	// The developer's live event log, on the other instance.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", in2.url+"/console/events/stream", nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := dev.c.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("console event stream = %v %v", res, err)
	}
	streamDone := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := res.Body.Read(buf); err != nil {
				streamDone <- time.Now()
				return
			}
		}
	}()

	start := time.Now()
	if code, _, h := op.post("/console/operator/tenants/"+acme.Tenant.ID+"/suspend", nil); code != http.StatusSeeOther || h.Get("Location") != "/console/operator" {
		t.Fatalf("suspend from the operator view = %d %s", code, h.Get("Location"))
	}
	if _, body, _ := op.get("/console/operator"); !strings.Contains(body, "suspended") || !strings.Contains(body, "/console/operator/tenants/"+acme.Tenant.ID+"/resume") {
		t.Errorf("operator view after the suspend lacks the status or the resume button:\n%s", body)
	}
	select {
	case at := <-streamDone:
		t.Logf("the console's live event log on the other instance ended %v after the suspend", at.Sub(start).Round(time.Millisecond))
	case <-time.After(suspendBound + time.Second):
		t.Fatalf("the suspended tenant's console event stream is still open after %v", suspendBound+time.Second)
	}
	res.Body.Close()

	// Its pages and its login say why; the API key itself is not called invalid.
	code, body, _ = dev.get("/console/overview")
	if code != http.StatusForbidden || !strings.Contains(body, "suspended by the operator") {
		t.Errorf("suspended tenant's overview = %d, want 403 saying it is suspended:\n%s", code, body)
	}
	fresh := in2.browser()
	fresh.get("/console/login")
	code, body, _ = fresh.post("/console/login", url.Values{"apiKey": {acme.APIKey}})
	if code != http.StatusForbidden || !strings.Contains(body, "suspended by the operator") || fresh.cookie() != "" {
		t.Errorf("suspended tenant's login = %d (session %q), want 403 saying it is suspended:\n%s", code, fresh.cookie(), body)
	}

	if code, _, _ := op.post("/console/operator/tenants/"+acme.Tenant.ID+"/resume", nil); code != http.StatusSeeOther {
		t.Fatalf("resume from the operator view = %d", code)
	}
	deadline := time.Now().Add(suspendBound)
	for {
		code, _, _ := dev.get("/console/overview")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resumed tenant's console session still gets %d after %v", code, suspendBound)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, _ := op.post("/console/operator/tenants/999999/suspend", nil); code != http.StatusNotFound {
		t.Errorf("suspend of an unknown tenant from the operator view = %d, want 404", code)
	}
}

// TestOperatorSuspendAPI: the operator API's suspend and resume are
// idempotent, show the status, and refuse unknown tenants (404) and bad
// operator tokens (401).
func TestOperatorSuspendAPI(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.OperatorToken = testOperatorToken
	in := newInstance(t, db, cfg)
	acme, other := in.signup("Acme"), in.signup("Other")

	first, res := in.operator("POST", acme.Tenant.ID+"/suspend", testOperatorToken)
	if res.status != http.StatusOK || !first.Suspended || first.SuspendedAt == nil || first.Name != "Acme" {
		t.Fatalf("suspend = %d %s", res.status, res.body)
	}
	again, res := in.operator("POST", acme.Tenant.ID+"/suspend", testOperatorToken)
	if res.status != http.StatusOK || !again.Suspended || again.SuspendedAt == nil || !again.SuspendedAt.Equal(*first.SuspendedAt) {
		t.Errorf("suspend again = %d %s, want 200 with the first suspension's time %v", res.status, res.body, first.SuspendedAt)
	}
	if got, res := in.operator("GET", acme.Tenant.ID, testOperatorToken); res.status != http.StatusOK || !got.Suspended {
		t.Errorf("GET suspended tenant = %d %s, want 200 suspended", res.status, res.body)
	}
	if got, res := in.operator("GET", other.Tenant.ID, testOperatorToken); res.status != http.StatusOK || got.Suspended || got.SuspendedAt != nil {
		t.Errorf("GET the other tenant = %d %s, want 200 active", res.status, res.body)
	}
	if res := in.do("POST", "/v1/events", other.APIKey, `{"channel":"c","type":"t"}`); res.status != http.StatusCreated {
		t.Errorf("the other tenant's publish = %d %s, want 201", res.status, res.body)
	}
	for range 2 {
		if got, res := in.operator("POST", acme.Tenant.ID+"/resume", testOperatorToken); res.status != http.StatusOK || got.Suspended || got.SuspendedAt != nil {
			t.Errorf("resume = %d %s, want 200 active", res.status, res.body)
		}
	}
	if res := in.do("POST", "/v1/events", acme.APIKey, `{"channel":"c","type":"t"}`); res.status != http.StatusCreated {
		t.Errorf("publish after the resume = %d %s", res.status, res.body)
	}

	for _, path := range []string{"999999/suspend", "999999/resume", "999999", "abc/suspend", "-1/resume", "99999999999999999999/suspend"} {
		method := "POST"
		if !strings.Contains(path, "/") {
			method = "GET"
		}
		_, res := in.operator(method, path, testOperatorToken)
		if code := checkProblem(t, method+" "+path, res, http.StatusNotFound); code != "tenant_not_found" {
			t.Errorf("%s %s code = %q, want tenant_not_found", method, path, code)
		}
	}
	for _, token := range []string{"wrong-token", testOperatorToken + "x", acme.APIKey} {
		_, res := in.operator("POST", acme.Tenant.ID+"/suspend", token)
		if code := checkProblem(t, "suspend with a bad operator token", res, http.StatusUnauthorized); code != "invalid_operator_token" {
			t.Errorf("suspend with a bad operator token code = %q, want invalid_operator_token", code)
		}
	}
	_, res = in.operator("POST", acme.Tenant.ID+"/suspend", "")
	checkProblem(t, "suspend without a token", res, http.StatusUnauthorized)
	if got, _ := in.operator("GET", acme.Tenant.ID, testOperatorToken); got.Suspended {
		t.Errorf("a refused suspend suspended the tenant")
	}

	// Without OPERATOR_TOKEN the operator API is off.
	off := newInstance(t, db, testConfig())
	_, res = off.operator("POST", acme.Tenant.ID+"/suspend", testOperatorToken)
	if code := checkProblem(t, "suspend with the operator API off", res, http.StatusNotFound); code != "operator_api_off" {
		t.Errorf("suspend with the operator API off code = %q, want operator_api_off", code)
	}
}

// TestDeletedTenantEndsStreams (TESTPLAN F19, deleted): a tenant deleted
// from the database by hand (there is no API for it) loses its streams on
// every instance within the bound, as a suspended one does.
func TestDeletedTenantEndsStreams(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	in1, in2 := newInstance(t, db, testConfig()), newInstance(t, db, testConfig())
	gone := in1.signup("Gone")
	token := in1.publisher(gone).token("u", nil, 600)
	s := in2.subscribe(gone.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: token})
	s.connID()
	<-s.system // ready
	waitConnections(t, in1, gone.APIKey, "sse", 1)

	start := time.Now()
	if _, err := db.Exec(context.Background(), `DELETE FROM tenants WHERE id = $1`, gone.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
		t.Logf("the deleted tenant's stream on the other instance ended %v after the delete", time.Since(start).Round(time.Millisecond))
	case <-time.After(suspendBound + time.Second):
		t.Fatalf("the deleted tenant's stream is still open after %v", suspendBound+time.Second)
	}
}
