package main

// The global oracles of TESTPLAN (O1–O6), applied to every integration test
// that starts its servers with newInstance or startInstance, without the
// test asking for them:
//
//   - O1 no loss: a stream opened through instance.subscribe that is still
//     open when its test ends must have received every event of its channels
//     that the test's publishers recorded (publisher.events, recordIDs) after
//     the stream's start cursor. Streams the test closed itself, that the
//     server ended, or that were told to resync are exempt: there O1 is the
//     test's own business (see follower.await).
//   - O2 no leak: the ledger in stream_helpers_test.go.
//   - O3 order: every SSE stream and every long-poll answer seen by the
//     helpers has strictly increasing ids per channel.
//   - O4 bounded resources: every instance has no live connection left once
//     it is shut down; serial tests also call checkResources for goroutines,
//     open files and the process-wide connections gauge.
//   - O5 clear errors: every 4xx/5xx seen by instance.do or a refused
//     subscribe is problem+json with a stable code and a human title and
//     detail, 401s carry WWW-Authenticate: Bearer, and no body shows
//     internal error text.
//   - O6 no secrets in logs: every API key, signing secret, token, ticket and
//     console session cookie that a response handed to the helpers is looked
//     for in the test's instance logs when the test ends.
//
// The Pusher doors follow the same oracles: on the Pusher HTTP API (/apps/…)
// O5 asks for Pusher's own error shape, one line of text/plain, instead of
// problem+json; every WebSocket client of the tests (wsClient, and the real
// pusher-js clients) checks each event it receives against the ledger (O2:
// its own tenant's event, on a channel it subscribed to); signing secrets
// are looked for in the logs (O6), the access log redacting auth_signature;
// the connections gauge and goroutines of serial tests include the
// WebSockets, and an instance that shut down must leave no presence member
// in the database (O4).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// oracleSet is one test's oracle state.
type oracleSet struct {
	t *testing.T

	mu      sync.Mutex
	logs    []*syncBuffer
	secrets map[string]string // secret → what it is, for the failure message
	dbs     map[string]bool   // databases whose tenants to drop from the ledger at the end
}

var (
	oraclesMu sync.Mutex
	oracles   = map[*testing.T]*oracleSet{}
)

// oraclesOf returns t's oracle set, creating it on first use. Its final
// check (O6) is a cleanup of t, registered before the instances' own, so it
// runs after every instance of t has stopped writing logs.
func oraclesOf(t *testing.T) *oracleSet {
	oraclesMu.Lock()
	defer oraclesMu.Unlock()
	o := oracles[t]
	if o == nil {
		o = &oracleSet{t: t, secrets: map[string]string{}, dbs: map[string]bool{}}
		oracles[t] = o
		t.Cleanup(func() {
			o.checkLogs()
			for db := range o.dbs {
				published.forget(db)
			}
			oraclesMu.Lock()
			delete(oracles, t)
			oraclesMu.Unlock()
		})
	}
	return o
}

// watchLogs adds an instance's log to those O6 greps.
func (o *oracleSet) watchLogs(b *syncBuffer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.logs = append(o.logs, b)
}

// forgetLedger drops db's tenants from the ledger when the test ends: a
// later test may reuse the same database name on the same port (a private
// cluster), and the ledger need not keep every test's events.
func (o *oracleSet) forgetLedger(db string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dbs[db] = true
}

// forget drops the tenants of database db.
func (l *ledger) forget(db string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for tenant := range l.events {
		if strings.HasPrefix(tenant, db+"/") {
			delete(l.events, tenant)
		}
	}
}

// secret registers a value that must never reach a log.
func (o *oracleSet) secret(what, v string) {
	if len(v) < 16 { // too short to be a real credential, and to grep for
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.secrets[v] = what
}

// secretFields are the JSON fields in which the API hands out credentials.
var secretFields = map[string]string{"apiKey": "API key", "secret": "signing secret", "token": "subscriber token", "ticket": "ticket"}

// noteSecrets registers the credentials a response hands out: session
// cookies, and the secret fields of a JSON body.
func (o *oracleSet) noteSecrets(h http.Header, body []byte) {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if strings.Contains(c.Name, "session") && c.Value != "" {
			o.secret("console session cookie "+c.Name, c.Value)
		}
	}
	// Credentials come in small bodies; history pages of megabytes do not
	// need decoding for them.
	if len(body) == 0 || len(body) > 64<<10 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		return
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return
	}
	o.walkSecrets(v)
}

func (o *oracleSet) walkSecrets(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok {
				if what, ok := secretFields[k]; ok {
					o.credential(what, s)
				}
				continue
			}
			o.walkSecrets(x)
		}
	case []any:
		for _, x := range v {
			o.walkSecrets(x)
		}
	}
}

// credential registers s and the part of it that is the actual secret: the
// secret of an API key (hrt_<lookup>_<secret>), the signature of a JWT. A log
// that printed only that part would leak as much.
func (o *oracleSet) credential(what, s string) {
	o.secret(what, s)
	if rest, ok := strings.CutPrefix(s, "hrt_"); ok {
		if _, secret, ok := strings.Cut(rest, "_"); ok {
			o.secret(what+" (its secret part)", secret)
		}
	}
	if parts := strings.Split(s, "."); len(parts) == 3 {
		o.secret(what+" (its signature)", parts[2])
	}
}

// checkLogs is O6: no registered secret appears in any instance's log.
func (o *oracleSet) checkLogs() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, b := range o.logs {
		logs := b.String()
		for s, what := range o.secrets {
			at := strings.Index(logs, s)
			if at < 0 {
				continue
			}
			start := strings.LastIndexByte(logs[:at], '\n') + 1
			end := strings.IndexByte(logs[at:], '\n')
			if end < 0 {
				end = len(logs) - at
			}
			o.t.Errorf("O6 secret in logs: the %s %.12s… appears in the log of instance %d: %.400s", what, s, i+1, logs[start:at+end])
		}
	}
}

// internalText is what a response must never show a client (CWE-209): driver
// and database errors, panics and stack traces.
var internalText = []string{"pgx", "pgconn", "SQLSTATE", "runtime error", "goroutine ", "panic:", ".go:", "ERROR: "}

var stableCode = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// checkResponse is O5 for one response: what names the request.
func (o *oracleSet) checkResponse(what string, res response) {
	o.t.Helper()
	if res.status < 400 {
		return
	}
	if builtin(res) {
		return
	}
	for _, s := range internalText {
		if strings.Contains(string(res.body), s) {
			o.t.Errorf("O5 internal error text: %s = %d shows %q to the client: %.300s", what, res.status, s, res.body)
		}
	}
	if strings.Contains(what, " /apps/") {
		// The Pusher HTTP API answers as Pusher does: one line of plain
		// text that says what is wrong, which its libraries show as it is.
		if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			o.t.Errorf("O5 Pusher API error: %s = %d with Content-Type %q, want text/plain: %.300s", what, res.status, ct, res.body)
		}
		if msg := strings.TrimSpace(string(res.body)); len(msg) < 10 || strings.Contains(msg, "\n\n") {
			o.t.Errorf("O5 Pusher API error: %s = %d says %q, want a message telling the client what to do", what, res.status, msg)
		}
		return
	}
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		o.t.Errorf("O5 not a problem: %s = %d with Content-Type %q, want application/problem+json: %.300s", what, res.status, ct, res.body)
		return
	}
	var p struct {
		Type, Title, Detail, Code string
		Status                    int
	}
	if err := json.Unmarshal(res.body, &p); err != nil {
		o.t.Errorf("O5 bad problem: %s = %d, body is not JSON (%v): %.300s", what, res.status, err, res.body)
		return
	}
	switch {
	case !stableCode.MatchString(p.Code):
		o.t.Errorf("O5 bad problem: %s = %d has code %q, want a stable snake_case code: %s", what, res.status, p.Code, res.body)
	case p.Type != "urn:hybridrt:problem:"+p.Code:
		o.t.Errorf("O5 bad problem: %s = %d has type %q for code %q: %s", what, res.status, p.Type, p.Code, res.body)
	case p.Status != res.status:
		o.t.Errorf("O5 bad problem: %s = %d says status %d: %s", what, res.status, p.Status, res.body)
	case p.Title == "":
		o.t.Errorf("O5 bad problem: %s = %d has no title: %s", what, res.status, res.body)
	case res.status < 500 && p.Detail == "":
		o.t.Errorf("O5 bad problem: %s = %d (%s) has no detail telling the client what to do: %s", what, res.status, p.Code, res.body)
	}
	if res.status == http.StatusUnauthorized && !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
		o.t.Errorf("O5 401 without challenge: %s = 401 (%s) has WWW-Authenticate %q, want Bearer …", what, p.Code, res.header.Get("WWW-Authenticate"))
	}
}

// builtin reports whether res was written by net/http itself before any
// handler ran (a 431 for oversized headers, a 400 for a malformed request):
// the server cannot shape those, and TESTPLAN accepts them.
func builtin(res response) bool {
	return strings.HasPrefix(string(res.body), strconv.Itoa(res.status)+" "+http.StatusText(res.status))
}

// checkOrder is O3 for one batch of events received in order on one
// connection: per channel, ids strictly increase, starting after last (the
// ids seen before on that connection, updated in place).
func checkOrder(t *testing.T, who string, last map[string]int64, evs []envelope) {
	t.Helper()
	for _, e := range evs {
		id, err := strconv.ParseInt(e.ID, 10, 64)
		if err != nil {
			t.Errorf("O3: %s got event id %q, not a number", who, e.ID)
			continue
		}
		if prev, ok := last[e.Channel]; ok && id <= prev {
			t.Errorf("O3 order: %s got id %d on channel %q after id %d", who, id, e.Channel, prev)
		}
		last[e.Channel] = id
	}
}

// after returns the ids that tenantID published through the helpers on any
// of channels after cursor, in order.
func (l *ledger) after(tenantID string, cursor int64, channels []string) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []int64
	for _, e := range l.events[tenantID] {
		id, _ := strconv.ParseInt(e.ID, 10, 64)
		if id > cursor && slices.Contains(channels, e.Channel) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// checkDelivered is O1 for a stream the test left open: it got every event
// recorded in the ledger for its channels after its start cursor, waiting a
// while for those still on their way.
func checkDelivered(t *testing.T, s *stream) {
	t.Helper()
	const wait = 10 * time.Second
	deadline := time.Now().Add(wait)
	for {
		if t.Failed() {
			return // the test's own failure says more than the losses it causes
		}
		if s.closedByTest.Load() || s.resynced.Load() || s.startCursor.Load() < 0 {
			return // deliberately dropped, resynced, or never ready: O1 is the test's business
		}
		select {
		case <-s.done:
			return // the server ended it; its client would resume, which the test may check
		default:
		}
		want := published.after(s.tenantID, s.startCursor.Load(), s.channels)
		s.mu.Lock()
		var missing []int64
		for _, id := range want {
			if !s.received[id] {
				missing = append(missing, id)
			}
		}
		s.mu.Unlock()
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("O1 loss: the stream of %s on %v (from id %d, still open at the end) is missing %d of %d acknowledged events after %v: %v",
				s.subject, s.channels, s.startCursor.Load(), len(missing), len(want), wait, head(missing, 20))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func head(ids []int64, n int) []int64 {
	if len(ids) > n {
		return ids[:n]
	}
	return ids
}

// checkResources is O4 for a serial (not t.Parallel) test: it records the
// goroutines, open files and the connections gauge now, and when the test
// has cleaned up (its servers, pools and databases), fails it unless all
// three are back to that baseline, give or take a small constant for
// process-wide helpers that start lazily (the test database's admin pool),
// within 5 s. Call it first, before anything the test must clean up.
//
// Goroutines and files are process-wide: with t.Parallel tests running at
// the same time the check would blame this test for theirs. Go runs every
// serial test before it releases the parallel ones, so serial tests are safe.
func checkResources(t *testing.T) {
	t.Helper()
	const slack = 5
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	baseG, baseStacks := runtime.NumGoroutine(), goroutines()
	baseFDs := openFiles()
	baseGauge := connectionsGauge(t)
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			// The test's own keep-alive connections to its (now closed)
			// servers are not the server's leak.
			http.DefaultTransport.(*http.Transport).CloseIdleConnections()
			g, fds, gauge := runtime.NumGoroutine(), openFiles(), connectionsGauge(t)
			okG, okF, okC := g <= baseG+slack, len(fds) <= len(baseFDs)+slack, gauge == baseGauge
			if okG && okF && okC {
				return
			}
			if time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if !okG {
				t.Errorf("O4 goroutine leak: %d goroutines 5 s after cleanup, %d before the test (+%d allowed); new ones by where they were created:\n%s",
					g, baseG, slack, newGoroutines(baseStacks))
			}
			if !okF {
				t.Errorf("O4 file descriptor leak: %d open files 5 s after cleanup, %d before the test (+%d allowed); new ones: %s",
					len(fds), len(baseFDs), slack, newFiles(baseFDs, fds))
			}
			if !okC {
				t.Errorf("O4 connections gauge: hybridrt_connections = %d 5 s after cleanup, want %d (its value before the test)", gauge, baseGauge)
			}
			if baseGauge != 0 {
				t.Errorf("O4 connections gauge: hybridrt_connections was %d before this serial test started: an earlier test leaked connections", baseGauge)
			}
			return
		}
	})
}

// connectionsGauge sums hybridrt_connections over its transports: the
// process's open subscriber connections, all instances together.
func connectionsGauge(t *testing.T) int {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "hybridrt_connections" {
			for _, m := range mf.GetMetric() {
				n += m.GetGauge().GetValue()
			}
		}
	}
	return int(n)
}

// openFiles maps this process's open file descriptors to what they are.
func openFiles() map[string]string {
	ents, _ := os.ReadDir("/proc/self/fd")
	fds := make(map[string]string, len(ents))
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fds[e.Name()] = target
	}
	return fds
}

func newFiles(base, now map[string]string) string {
	kinds := map[string]int{}
	for fd, target := range now {
		if base[fd] != target {
			kinds[strings.SplitN(target, ":", 2)[0]]++
		}
	}
	return fmt.Sprint(kinds)
}

// goroutines returns the stacks of the live goroutines by goroutine id.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		fields := strings.Fields(header) // goroutine 42 [select]:
		if len(fields) >= 2 {
			out[fields[1]] = g
		}
	}
	return out
}

// newGoroutines describes the goroutines that are not in base, grouped by
// the function that created them, with one stack of each group.
func newGoroutines(base map[string]string) string {
	groups := map[string][]string{}
	for id, g := range goroutines() {
		if _, ok := base[id]; ok {
			continue
		}
		creator := "unknown"
		sc := bufio.NewScanner(strings.NewReader(g))
		for sc.Scan() {
			if c, ok := strings.CutPrefix(sc.Text(), "created by "); ok {
				creator = c
			}
		}
		groups[creator] = append(groups[creator], g)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(groups[keys[i]]) > len(groups[keys[j]]) })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %d created by %s; one of them:\n%s\n", len(groups[k]), k, groups[k][0])
	}
	return b.String()
}

// pusherTenants maps a Pusher key (a signing key's kid) to its tenant in the
// ledger, for O2 on the Pusher clients, which know only their key.
var pusherTenants sync.Map

// checkPusherEvent is O2 for an event a Pusher client received: on a
// channel it subscribed to, and, when the ledger has the event, its own
// tenant's, as published. data is the event's data as the client decoded
// it: pusher-js parses a JSON data string, the bare test client does not.
func checkPusherEvent(t *testing.T, who, key string, subscribed bool, channel, typ, id string, data json.RawMessage) {
	t.Helper()
	if !subscribed {
		t.Errorf("LEAK: %s got an event on %q, which it did not subscribe to", who, channel)
	}
	tenantID, ok := pusherTenants.Load(key)
	if !ok || id == "" {
		return
	}
	published.mu.Lock()
	want, ok := published.events[tenantID.(string)][id]
	published.mu.Unlock()
	if !ok {
		return // published by another door (a trigger, a client event)
	}
	if want.Channel != channel || want.Type != typ || !sameJSON(want.Data, data) {
		t.Errorf("LEAK or corruption: %s of tenant %s got event %s as %s %s %s, published as %s %s %s",
			who, tenantID, id, channel, typ, data, want.Channel, want.Type, want.Data)
	}
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}
