package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestResume: a client that disconnects and comes back with Last-Event-ID,
// or switches from SSE to polling with its last SSE id as cursor, loses
// nothing and sees nothing twice.
func TestResume(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("u1", []string{"feed"}, 600)
	ch := []string{"feed"}
	pub := func(n int) (ids []int64) {
		for i := range n {
			for _, id := range p.events(fmt.Sprintf(`{"channel":"feed","type":"item","data":%d}`, i)) {
				v, _ := strconv.ParseInt(id, 10, 64)
				ids = append(ids, v)
			}
		}
		return ids
	}

	s1 := in.subscribe(acme.Tenant.ID, "u1", ch, ch, subscribeOpts{token: tok})
	s1.connID()
	first := pub(5)
	got := s1.collect(5, 5*time.Second)
	checkSequence(t, "first stream", got, first)
	s1.close()

	// While away: more events. Resume with the header, as EventSource does.
	missed := pub(7)
	s2 := in.subscribe(acme.Tenant.ID, "u1", ch, ch, subscribeOpts{token: tok, lastEventID: got[len(got)-1].ID})
	live := pub(3)
	got2 := s2.collect(10, 5*time.Second)
	checkSequence(t, "resumed stream", got2, append(missed, live...))
	s2.quiet(100 * time.Millisecond)
	s2.close()

	// A first connect can name its start with lastEventId=.
	s3 := in.subscribe(acme.Tenant.ID, "u1", ch, ch, subscribeOpts{token: tok, query: "lastEventId=" + strconv.FormatInt(first[2], 10)})
	checkSequence(t, "lastEventId stream", s3.collect(len(first)-3+len(missed)+len(live), 5*time.Second),
		append(append(append([]int64{}, first[3:]...), missed...), live...))
	// The header wins over the query.
	s4 := in.subscribe(acme.Tenant.ID, "u1", ch, ch, subscribeOpts{token: tok, lastEventID: strconv.FormatInt(live[1], 10), query: "lastEventId=1"})
	checkSequence(t, "header over query", s4.collect(1, 5*time.Second), live[2:])
	s4.quiet(100 * time.Millisecond)
	s3.close()
	s4.close()

	// Switch SSE → polling with the last SSE id as cursor, then back.
	s5 := in.subscribe(acme.Tenant.ID, "u1", ch, ch, subscribeOpts{token: tok})
	s5.connID()
	a := pub(4)
	got5 := s5.collect(4, 5*time.Second)
	s5.close()
	b := pub(6)
	// Poll as a client does, until it has caught up: a poll answers as soon as
	// any event is there, which may be before the listener has read them all.
	var r pollResult
	polled := got5
	for cursor := got5[3].ID; len(polled) < len(a)+len(b); cursor = r.Cursor {
		var res response
		r, res = in.poll(acme.Tenant.ID, "u1", ch, ch, tok, "timeout=5&cursor="+cursor)
		if res.status != 200 || len(r.Events) == 0 {
			t.Fatalf("poll = %d %s", res.status, res.body)
		}
		polled = append(polled, r.Events...)
	}
	checkSequence(t, "SSE then polling", polled, append(a, b...))
	c := pub(2)
	s6 := in.subscribe(acme.Tenant.ID, "u1", ch, ch, subscribeOpts{token: tok, lastEventID: r.Cursor})
	checkSequence(t, "polling then SSE", s6.collect(2, 5*time.Second), c)
	s6.quiet(100 * time.Millisecond)

	// A poll with nothing new holds, then wakes on the first event.
	go func() {
		time.Sleep(300 * time.Millisecond)
		pub(1)
	}()
	start := time.Now()
	r, _ = in.poll(acme.Tenant.ID, "u1", ch, ch, tok, "timeout=10&cursor="+strconv.FormatInt(c[1], 10))
	if len(r.Events) == 0 {
		t.Fatal("held poll returned nothing")
	}
	if len(r.Events) != 1 || time.Since(start) > 8*time.Second {
		t.Errorf("held poll = %d events after %v, want 1 event on arrival", len(r.Events), time.Since(start))
	}
	// And an empty answer after its timeout, with the cursor unchanged.
	r, _ = in.poll(acme.Tenant.ID, "u1", ch, ch, tok, "timeout=0&cursor="+r.Cursor)
	if len(r.Events) != 0 || r.Cursor == "" {
		t.Errorf("timed-out poll = %+v, want no events and a cursor", r)
	}
}

// TestResync: a cursor older than retention gets `event: resync` first, then
// continues from the oldest event still stored.
func TestResync(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("u1", nil, 600)
	ch := []string{"broadcast"}
	for range 5 {
		p.events(`{"channel":"broadcast","type":"old"}`)
	}
	if _, err := in.svc.store.Prune(t.Context(), 0, 2); err != nil { // everything is older than zero
		t.Fatal(err)
	}
	kept := p.events(`{"channel":"broadcast","type":"new"}`)

	s := in.subscribe(acme.Tenant.ID, "u1", nil, ch, subscribeOpts{token: tok, lastEventID: "1"})
	select {
	case e := <-s.system:
		if e.Type != "resync" || e.ID != "5" {
			t.Errorf("first system event = %+v, want resync with id 5", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no resync event")
	}
	got := s.collect(1, 5*time.Second)
	if got[0].ID != kept[0] {
		t.Errorf("after resync got %s, want %s", got[0].ID, kept[0])
	}

	r, _ := in.poll(acme.Tenant.ID, "u1", nil, ch, tok, "cursor=2&timeout=0")
	if !r.Resync || len(r.Events) != 1 || r.Events[0].ID != kept[0] {
		t.Errorf("poll from a pruned cursor = %+v, want resync and event %s", r, kept[0])
	}
}

// TestSSEFraming: data with newlines, CR, SSE field syntax and unicode
// arrives intact, as exactly one event, through a parser that follows the
// HTML standard's event-stream rules.
func TestSSEFraming(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	s := in.subscribe(acme.Tenant.ID, "u", nil, []string{"broadcast"}, subscribeOpts{token: p.token("u", nil, 600)})
	s.connID()
	values := []string{
		"a\n\nevent: admin\ndata: x", "\r", "\r\n", "trailing\n", "", "\n\n\n", "id: 999\r\nretry: 1",
		"unicode é 日本 😀 \u2028 \u0085", strings.Repeat("\n", 32<<10-8), // 64 KiB encoded
	}
	for _, v := range values {
		b, _ := json.Marshal(map[string]any{"channel": "broadcast", "type": "x", "data": v})
		p.events(string(b))
	}
	// Pretty-printed JSON data is stored compact, on one line.
	p.events("{\"channel\":\"broadcast\",\"type\":\"x\",\"data\":{\n  \"a\" : [ 1,\n 2 ]\n}}")
	got := s.collect(len(values)+1, 10*time.Second)
	for i, v := range values {
		var d string
		if err := json.Unmarshal(got[i].Data, &d); err != nil || d != v {
			t.Errorf("event %d data = %.40q, want %.40q", i, d, v)
		}
	}
	if string(got[len(values)].Data) != `{"a":[1,2]}` {
		t.Errorf("pretty data arrived as %s", got[len(values)].Data)
	}
	s.quiet(200 * time.Millisecond) // no extra event was injected
}
