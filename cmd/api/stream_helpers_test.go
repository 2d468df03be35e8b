package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/ssetest"
)

// envelope is an event as subscribers receive it.
type envelope struct {
	ID      string          `json:"id"`
	Channel string          `json:"channel"`
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data"`
	Time    string          `json:"time"`
}

func (e envelope) id(t *testing.T) int64 {
	n, err := strconv.ParseInt(e.ID, 10, 64)
	if err != nil {
		t.Fatalf("event id %q is not a number", e.ID)
	}
	return n
}

// ledger records what each tenant published through the test helpers, so
// every subscriber can check that what it receives is its own tenant's event
// on a channel it may read: the no-leak oracle (TESTPLAN O2), applied to
// every stream in every test.
type ledger struct {
	mu     sync.Mutex
	events map[string]map[string]envelope // tenant id → event id → event
}

var published = &ledger{events: map[string]map[string]envelope{}}

func (l *ledger) record(tenantID string, evs []envelope) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.events[tenantID]
	if m == nil {
		m = map[string]envelope{}
		l.events[tenantID] = m
	}
	for _, e := range evs {
		m[e.ID] = e
	}
}

// check fails the test if e is not tenantID's event, or not on a channel
// that subject with grants may read among the subscribed channels.
func (l *ledger) check(t *testing.T, tenantID, subject string, grants, subscribed []string, e envelope) {
	t.Helper()
	if !slices.Contains(subscribed, e.Channel) || !channel.Allowed(subject, grants, e.Channel) {
		t.Errorf("LEAK: subscriber %s of tenant %s on %v got an event on %q", subject, tenantID, subscribed, e.Channel)
	}
	l.mu.Lock()
	want, ok := l.events[tenantID][e.ID]
	l.mu.Unlock()
	if ok && (want.Channel != e.Channel || want.Type != e.Type || string(want.Data) != string(e.Data)) {
		t.Errorf("LEAK or corruption: tenant %s event %s = %s %s %s, published as %s %s %s",
			tenantID, e.ID, e.Channel, e.Type, e.Data, want.Channel, want.Type, want.Data)
	}
}

// publisher publishes through the API and records what it published.
type publisher struct {
	in       *instance
	key      string
	tenantID string
}

func (in *instance) publisher(s signedUp) *publisher {
	return &publisher{in: in, key: s.APIKey, tenantID: in.db + "/" + s.Tenant.ID}
}

// events publishes body to POST /v1/events and returns the ids, failing the
// test on anything but 201.
func (p *publisher) events(body string, header ...string) []string {
	p.in.t.Helper()
	res := p.in.do("POST", "/v1/events", p.key, body, header...)
	if res.status != http.StatusCreated {
		p.in.t.Fatalf("publish %.80s = %d %s", body, res.status, res.body)
	}
	var out struct{ IDs []string }
	res.json(p.in.t, &out)
	// Record what was published, from history, so the ledger is exact.
	p.recordIDs(out.IDs)
	return out.IDs
}

func (p *publisher) recordIDs(ids []string) {
	if len(ids) == 0 {
		return
	}
	first, _ := strconv.ParseInt(ids[0], 10, 64)
	res := p.in.do("GET", fmt.Sprintf("/v1/events?after=%d&limit=%d", first-1, min(len(ids), 1000)), p.key, "")
	var page struct{ Events []envelope }
	res.json(p.in.t, &page)
	published.record(p.tenantID, page.Events)
}

// token mints a subscriber token through POST /v1/tokens.
func (p *publisher) token(sub string, grants []string, ttl int) string {
	p.in.t.Helper()
	b, _ := json.Marshal(map[string]any{"sub": sub, "channels": grants, "ttl": ttl})
	res := p.in.do("POST", "/v1/tokens", p.key, string(b))
	if res.status != http.StatusCreated {
		p.in.t.Fatalf("mint token = %d %s", res.status, res.body)
	}
	var out struct{ Token string }
	res.json(p.in.t, &out)
	return out.Token
}

func (p *publisher) head() int64 {
	p.in.t.Helper()
	var out struct{ ID string }
	p.in.do("GET", "/v1/head", p.key, "").json(p.in.t, &out)
	n, _ := strconv.ParseInt(out.ID, 10, 64)
	return n
}

// stream is a recording SSE client, read by the WHATWG-conformant parser.
type stream struct {
	t        *testing.T
	tenantID string
	subject  string
	grants   []string
	channels []string

	cancel context.CancelFunc
	res    *http.Response
	ready  chan string // the connection id
	events chan envelope
	system chan ssetest.Event // ready, resync, token_expired
	done   chan struct{}
	parser *ssetest.Parser

	// For the oracles (oracles_test.go): the cursor the ready event
	// announced (-1 before it), what arrived, and how the stream ended.
	startCursor  atomic.Int64
	resynced     atomic.Bool
	closedByTest atomic.Bool
	mu           sync.Mutex
	received     map[int64]bool
	lastIDs      map[string]int64 // per channel, for O3
}

type subscribeOpts struct {
	token, ticket string
	lastEventID   string // Last-Event-ID header
	query         string // extra query, e.g. "lastEventId=5"
}

// subscribe opens an SSE stream; it fails the test unless the answer is 200.
func (in *instance) subscribe(tenantID, subject string, grants, channels []string, o subscribeOpts) *stream {
	in.t.Helper()
	s, res := in.trySubscribe(tenantID, subject, grants, channels, o)
	if s == nil {
		in.t.Fatalf("subscribe %v = %d %s", channels, res.status, res.body)
	}
	return s
}

// trySubscribe opens an SSE stream, or returns the refusal.
func (in *instance) trySubscribe(tenantID, subject string, grants, channels []string, o subscribeOpts) (*stream, response) {
	in.t.Helper()
	u := in.url + "/api/realtime/sse?channels=" + url.QueryEscape(strings.Join(channels, ","))
	if o.ticket != "" {
		u += "&ticket=" + o.ticket
	}
	if o.query != "" {
		u += "&" + o.query
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	if o.lastEventID != "" {
		req.Header.Set("Last-Event-ID", o.lastEventID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		in.t.Fatalf("subscribe: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		defer cancel()
		defer res.Body.Close()
		var b strings.Builder
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		refused := response{status: res.StatusCode, header: res.Header, body: []byte(b.String())}
		oraclesOf(in.t).checkResponse("subscribe "+strings.Join(channels, ","), refused)
		return nil, refused
	}
	s := &stream{
		t: in.t, tenantID: in.db + "/" + tenantID, subject: subject, grants: grants, channels: channels,
		cancel: cancel, res: res,
		ready: make(chan string, 1), events: make(chan envelope, 100000), system: make(chan ssetest.Event, 16),
		done:     make(chan struct{}),
		received: map[int64]bool{}, lastIDs: map[string]int64{},
	}
	s.startCursor.Store(-1)
	go s.read()
	in.t.Cleanup(s.close)
	in.t.Cleanup(func() { checkDelivered(in.t, s) }) // O1, before the close above
	return s, response{status: 200, header: res.Header}
}

func (s *stream) read() {
	defer close(s.done)
	defer s.res.Body.Close()
	_ = ssetest.Read(context.Background(), s.res.Body, func(e ssetest.Event) bool {
		switch e.Type {
		case "ready":
			var d struct{ ConnectionID, Cursor string }
			_ = json.Unmarshal([]byte(e.Data), &d)
			if c, err := strconv.ParseInt(d.Cursor, 10, 64); err == nil {
				s.startCursor.Store(c)
			}
			s.ready <- d.ConnectionID
			s.system <- e
		case "resync":
			s.resynced.Store(true)
			s.system <- e
		case "token_expired", "presence", "member_added", "member_removed":
			s.system <- e
		default:
			var env envelope
			if err := json.Unmarshal([]byte(e.Data), &env); err != nil {
				s.t.Errorf("event data %q is not an envelope: %v", e.Data, err)
				return true
			}
			if env.ID != e.ID || env.Type != e.Type {
				s.t.Errorf("SSE id/event %q/%q disagree with envelope %q/%q", e.ID, e.Type, env.ID, env.Type)
			}
			published.check(s.t, s.tenantID, s.subject, s.grants, s.channels, env)
			s.mu.Lock()
			checkOrder(s.t, "the stream of "+s.subject+" on "+strings.Join(s.channels, ","), s.lastIDs, []envelope{env})
			if id, err := strconv.ParseInt(env.ID, 10, 64); err == nil {
				s.received[id] = true
			}
			s.mu.Unlock()
			s.events <- env
		}
		return true
	})
}

func (s *stream) close() {
	s.closedByTest.Store(true)
	s.cancel()
	<-s.done
}

// connID waits for the ready event.
func (s *stream) connID() string {
	s.t.Helper()
	select {
	case id := <-s.ready:
		s.ready <- id
		return id
	case <-time.After(10 * time.Second):
		s.t.Fatal("no ready event within 10 s")
		return ""
	}
}

// collect waits for n events, failing the test after timeout.
func (s *stream) collect(n int, timeout time.Duration) []envelope {
	s.t.Helper()
	var got []envelope
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case e := <-s.events:
			got = append(got, e)
		case <-s.done:
			s.t.Fatalf("stream ended after %d of %d events", len(got), n)
		case <-deadline:
			s.t.Fatalf("got %d of %d events within %v", len(got), n, timeout)
		}
	}
	return got
}

// quiet asserts that no event arrives for d.
func (s *stream) quiet(d time.Duration) {
	s.t.Helper()
	select {
	case e := <-s.events:
		s.t.Errorf("unexpected event %+v", e)
	case <-time.After(d):
	}
}

// pollResult is a long-poll answer.
type pollResult struct {
	Events []envelope
	Cursor string
	Resync bool
}

// poll sends one long-poll and checks what it got against the ledger.
func (in *instance) poll(tenantID, subject string, grants, channels []string, token, query string) (pollResult, response) {
	in.t.Helper()
	path := "/api/realtime/polling?channels=" + url.QueryEscape(strings.Join(channels, ","))
	if query != "" {
		path += "&" + query
	}
	res := in.do("GET", path, token, "")
	var out pollResult
	if res.status == http.StatusOK {
		res.json(in.t, &out)
		for _, e := range out.Events {
			published.check(in.t, in.db+"/"+tenantID, subject, grants, channels, e)
		}
		// O3: ascending per channel, and after the cursor asked for.
		last := map[string]int64{}
		if q, err := url.ParseQuery(query); err == nil && q.Get("cursor") != "" {
			if c, err := strconv.ParseInt(q.Get("cursor"), 10, 64); err == nil {
				for _, ch := range channels {
					last[ch] = c
				}
			}
		}
		checkOrder(in.t, "a long-poll of "+subject+" on "+strings.Join(channels, ","), last, out.Events)
	}
	return out, res
}

// checkSequence asserts that got holds exactly the ids want, once each, in order.
func checkSequence(t *testing.T, who string, got []envelope, want []int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s got %d events, want %d", who, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i].id(t) != want[i] {
			t.Errorf("%s event %d has id %s, want %d", who, i, got[i].ID, want[i])
			return
		}
	}
}
