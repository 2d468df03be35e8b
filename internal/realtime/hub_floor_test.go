package realtime

import (
	"context"
	"testing"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestAfterContinuesIntoTheRing: a stream resuming below the ring reads the
// store up to the ring's floor and the ring in the same call, so events that
// entered the ring before it subscribed (their wake-ups long sent) are not
// left waiting for the next event or heartbeat.
func TestAfterContinuesIntoTheRing(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	p := startPublisher(t, pool)
	tid := newTenant(t, pool)
	for range 3 { // ids 1..3, before any room exists
		if _, err := p.Publish(context.Background(), tid, draft(1), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	h := NewHub(NewStore(pool), 16)
	first := h.Subscribe(tid, []string{"c"})
	first.room.position(3)
	res, err := p.Publish(context.Background(), tid, draft(1), "", nil) // id 4
	if err != nil {
		t.Fatal(err)
	}
	evs, err := readRange(context.Background(), pool, tid, 3, res.IDs[0])
	if err != nil {
		t.Fatal(err)
	}
	first.room.ingest(evs) // the ring: (3, 4]

	late := h.Subscribe(tid, []string{"c"})
	got, scanned, err := late.After(context.Background(), 0, 100)
	if err != nil || len(got) != 4 || got[3].ID != 4 || scanned != 4 {
		t.Fatalf("After(0) = %v, scanned %d, %v; want 1..4 from the store and the ring at once", ids(got), scanned, err)
	}
	// A limit still holds across the store and the ring.
	got, scanned, _ = late.After(context.Background(), 0, 3)
	if len(got) != 3 || scanned != 3 {
		t.Fatalf("After(0, limit 3) = %v, scanned %d", ids(got), scanned)
	}
	got, scanned, _ = late.After(context.Background(), 2, 2)
	if len(got) != 2 || got[1].ID != 4 || scanned != 4 {
		t.Fatalf("After(2, limit 2) = %v, scanned %d", ids(got), scanned)
	}
}
