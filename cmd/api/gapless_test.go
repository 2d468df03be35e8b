package main

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestGapless: 8 publishers spread over 2 instances publish 2,000 events on
// one channel, some in batches. An SSE subscriber on each instance and a
// long-poller each get every id exactly once, in order, and history agrees.
func TestGapless(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	a, b := newInstance(t, pool, testConfig()), newInstance(t, pool, testConfig())
	acme := a.signup("Acme")
	pa, pb := a.publisher(acme), b.publisher(acme)
	tok := pa.token("u1", []string{"orders"}, 600)
	start := pa.head()

	subA := a.subscribe(acme.Tenant.ID, "u1", []string{"orders"}, []string{"orders"}, subscribeOpts{token: tok})
	subB := b.subscribe(acme.Tenant.ID, "u1", []string{"orders"}, []string{"orders"}, subscribeOpts{token: tok})
	subA.connID()
	subB.connID()

	// A long-poller, looping as a client would, on instance b.
	const total = 2000
	var polled []envelope
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		cursor := strconv.FormatInt(start, 10)
		for len(polled) < total {
			r, res := b.poll(acme.Tenant.ID, "u1", []string{"orders"}, []string{"orders"}, tok, "timeout=5&cursor="+cursor)
			if res.status != 200 {
				t.Errorf("poll = %d %s", res.status, res.body)
				return
			}
			polled = append(polled, r.Events...)
			cursor = r.Cursor
		}
	}()

	// 8 publishers, 250 events each: half single, half in batches of 25.
	var wg sync.WaitGroup
	for i := range 8 {
		p := pa
		if i%2 == 1 {
			p = pb
		}
		wg.Go(func() {
			if i < 4 {
				for j := range 250 {
					p.events(fmt.Sprintf(`{"channel":"orders","type":"order","data":{"publisher":%d,"n":%d}}`, i, j))
				}
				return
			}
			for j := range 10 {
				var evs []string
				for k := range 25 {
					evs = append(evs, fmt.Sprintf(`{"channel":"orders","type":"order","data":{"publisher":%d,"n":%d}}`, i, j*25+k))
				}
				p.events(`{"events":[` + strings.Join(evs, ",") + `]}`)
			}
		})
	}
	wg.Wait()

	want := make([]int64, total)
	for i := range want {
		want[i] = start + 1 + int64(i)
	}
	if head := pa.head(); head != start+total {
		t.Fatalf("head = %d after %d events from %d: ids are not gapless", head, total, start)
	}
	checkSequence(t, "SSE subscriber on a", subA.collect(total, 30*time.Second), want)
	checkSequence(t, "SSE subscriber on b", subB.collect(total, 30*time.Second), want)
	select {
	case <-pollDone:
	case <-time.After(30 * time.Second):
		t.Fatal("long-poller did not get every event within 30 s")
	}
	checkSequence(t, "long-poller on b", polled, want)

	// History agrees, page by page.
	var history []envelope
	for cursor := start; ; {
		var page struct {
			Events []envelope
			Cursor string
		}
		a.do("GET", fmt.Sprintf("/v1/events?channel=orders&after=%d&limit=1000", cursor), acme.APIKey, "").json(t, &page)
		history = append(history, page.Events...)
		next, _ := strconv.ParseInt(page.Cursor, 10, 64)
		if len(page.Events) == 0 || next == cursor {
			break
		}
		cursor = next
	}
	checkSequence(t, "history", history, want)
	subA.quiet(100 * time.Millisecond)
}
