package realtime

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

func testEvent(id int64, ch string) *Event {
	e := &Event{ID: id, Channel: ch, Type: "t", Data: []byte("null"), Time: time.Now()}
	e.encode()
	return e
}

// readyHub returns a hub with one positioned room for tenant 1 at head.
func readyHub(ringSize int, head int64) (*Hub, *room) {
	h := NewHub(nil, ringSize)
	s := h.Subscribe(1, []string{"warm"})
	s.room.position(head)
	s.Close()
	return h, s.room
}

func TestRingScanAndWrap(t *testing.T) {
	t.Parallel()
	h, r := readyHub(4, 10)
	sub := h.Subscribe(1, []string{"a"})
	defer sub.Close()
	var evs []*Event
	for id := int64(11); id <= 16; id++ {
		ch := "a"
		if id%2 == 0 {
			ch = "b"
		}
		evs = append(evs, testEvent(id, ch))
	}
	r.ingest(evs)
	select {
	case <-sub.Wake():
	default:
		t.Fatal("ingest of a matching event did not wake the subscription")
	}
	// The ring keeps 13..16; a cursor at 12 or later reads it.
	got, scanned, err := sub.After(context.Background(), 12, 10)
	if err != nil || len(got) != 2 || got[0].ID != 13 || got[1].ID != 15 || scanned != 16 {
		t.Fatalf("After(12) = %v, %d, %v; want 13 and 15, scanned to 16", ids(got), scanned, err)
	}
	// A limit stops the scan at the last returned event, not past it.
	got, scanned, _ = sub.After(context.Background(), 12, 1)
	if len(got) != 1 || scanned != 13 {
		t.Fatalf("After(12, limit 1) = %v, scanned %d; want [13] scanned 13", ids(got), scanned)
	}
	// Nothing new: the cursor stays.
	got, scanned, _ = sub.After(context.Background(), 16, 10)
	if len(got) != 0 || scanned != 16 {
		t.Fatalf("After(16) = %v, %d", ids(got), scanned)
	}
	// Duplicates are ignored; a gap restarts the ring.
	r.ingest([]*Event{testEvent(15, "a"), testEvent(16, "b")})
	if r.last != 16 || r.n != 4 {
		t.Fatalf("re-ingesting old events changed the ring: last %d n %d", r.last, r.n)
	}
	r.ingest([]*Event{testEvent(20, "a")})
	if r.last != 20 || r.n != 1 {
		t.Fatalf("after a gap, last %d n %d; want 20 and 1", r.last, r.n)
	}
}

func TestWakeOnlyMatchingChannels(t *testing.T) {
	t.Parallel()
	h, r := readyHub(8, 0)
	a, b := h.Subscribe(1, []string{"a"}), h.Subscribe(1, []string{"b"})
	other := h.Subscribe(2, []string{"a"})
	r.ingest([]*Event{testEvent(1, "a")})
	select {
	case <-a.Wake():
	default:
		t.Error("subscriber of a not woken")
	}
	select {
	case <-b.Wake():
		t.Error("subscriber of b woken by an event on a")
	case <-other.Wake():
		t.Error("another tenant's subscriber woken")
	default:
	}
	// Wake never blocks, however many events arrive unread.
	for id := int64(2); id < 1000; id++ {
		r.ingest([]*Event{testEvent(id, "a")})
	}
}

func TestDropIdleRooms(t *testing.T) {
	t.Parallel()
	h, _ := readyHub(8, 0)
	h.dropIdle(time.Now().Add(2 * time.Minute))
	if h.room(1) != nil {
		t.Error("idle room kept")
	}
	s := h.Subscribe(1, []string{"a"})
	h.dropIdle(time.Now().Add(2 * time.Minute))
	if h.room(1) == nil {
		t.Error("room with a subscriber dropped")
	}
	s.Close()
}

func ids(evs []*Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// BenchmarkHubIngest measures one event reaching 10,000 subscriptions of
// one channel: the ring append and the non-blocking wake-ups.
func BenchmarkHubIngest(b *testing.B) {
	h, r := readyHub(DefaultRingSize, 0)
	for range 10000 {
		h.Subscribe(1, []string{"load"})
	}
	b.ReportAllocs()
	id := int64(0)
	for b.Loop() {
		id++
		r.ingest([]*Event{testEvent(id, "load")})
	}
}

// BenchmarkRingAfter measures a live stream's read: the events after its
// cursor, from the ring.
func BenchmarkRingAfter(b *testing.B) {
	h, r := readyHub(DefaultRingSize, 0)
	for id := int64(1); id <= DefaultRingSize; id++ {
		r.ingest([]*Event{testEvent(id, fmt.Sprint("c", id%4))})
	}
	sub := h.Subscribe(tenant.ID(1), []string{"c1"})
	b.ReportAllocs()
	for b.Loop() {
		if evs, _, _ := sub.After(context.Background(), DefaultRingSize-8, 100); len(evs) != 2 {
			b.Fatal(len(evs))
		}
	}
}

func TestRingByteCap(t *testing.T) {
	t.Parallel()
	_, r := readyHub(DefaultRingSize, 0)
	big := []byte(`"` + strings.Repeat("x", 1<<20) + `"`)
	for id := int64(1); id <= 20; id++ {
		e := &Event{ID: id, Channel: "a", Type: "t", Data: big, Time: time.Now()}
		e.encode()
		r.ingest([]*Event{e})
	}
	if r.bytes > maxRingBytes || r.n > 8 || r.n < 7 || r.last != 20 {
		t.Errorf("ring of 1 MiB events holds %d events, %d bytes; want at most %d bytes", r.n, r.bytes, maxRingBytes)
	}
}

// TestWakeGap: the first event after a quiet spell wakes at once; one that
// follows within the room's gap waits for the gap's end, and the gap grows
// with the room up to its cap.
func TestWakeGap(t *testing.T) {
	t.Parallel()
	if g := wakeGap(1); g != wakeGapPerSubscriber {
		t.Errorf("wakeGap(1) = %v, want %v", g, wakeGapPerSubscriber)
	}
	if g := wakeGap(1_000_000); g != maxWakeGap {
		t.Errorf("wakeGap of a huge room = %v, want the cap %v", g, maxWakeGap)
	}

	h, r := readyHub(64, 0)
	subs := make([]*Subscription, 50) // a gap of 5 ms
	for i := range subs {
		subs[i] = h.Subscribe(1, []string{"a"})
		defer subs[i].Close()
	}
	s := subs[0]
	first := time.Now()
	r.ingest([]*Event{testEvent(1, "a")})
	select {
	case <-s.Wake():
	default:
		t.Fatal("the first event did not wake at once")
	}
	r.ingest([]*Event{testEvent(2, "a")})
	select {
	case <-s.Wake():
		// Allowed only if the gap had already passed (a slow machine).
		if time.Since(first) < wakeGap(len(subs)) {
			t.Fatal("an event right after another woke at once, not at the gap's end")
		}
	default:
	}
	select {
	case <-s.Wake():
	case <-time.After(5 * time.Second):
		t.Fatal("the deferred wake-up never came")
	}
}
