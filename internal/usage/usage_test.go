package usage

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// clock is a settable time.
type clock struct{ ns atomic.Int64 }

func (c *clock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }

func newTenant(t *testing.T, pool *pgxpool.Pool, name string) tenant.ID {
	t.Helper()
	var id tenant.ID
	if err := pool.QueryRow(context.Background(), `INSERT INTO tenants (name) VALUES ($1) RETURNING id`, name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestCountsAddUpAcrossFlushesAndInstances: two meters (two instances)
// counting at once from many goroutines, flushing while they count, add up
// to exactly what was counted, per door; a meter started after another
// stopped (a restart) adds to the same rows and counts nothing twice.
func TestCountsAddUpAcrossFlushesAndInstances(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	ctx := context.Background()
	acme := newTenant(t, pool, "acme")
	var c clock
	c.set(time.Date(2026, 12, 5, 10, 0, 30, 0, time.UTC))
	a, b := NewMeter(pool), NewMeter(pool)
	a.Now, b.Now = c.now, c.now

	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var flushes sync.WaitGroup
	for _, m := range []*Meter{a, b} {
		flushes.Add(1)
		go func() { // flushing while counting: nothing counted twice or lost
			defer flushes.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if err := m.Flush(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					m.Published(acme, realtime.DoorAPI, 1)
					if i%5 == 0 {
						m.Published(acme, realtime.DoorClient, 2)
					}
					m.Delivered(acme, 3, 100)
					m.Webhooks(acme, 2, 1)
					if i%100 == 0 {
						m.Rejected(acme, "rate")
					}
				}
			}()
		}
	}
	wg.Wait()
	close(stop)
	flushes.Wait()
	for _, m := range []*Meter{a, b} {
		if err := m.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A restart: a new meter, the same minute.
	restarted := NewMeter(pool)
	restarted.Now = c.now
	restarted.Published(acme, realtime.DoorPusher, 7)
	if err := restarted.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := Rollup(ctx, pool, c.now()); err != nil {
		t.Fatal(err)
	}
	rows, err := Read(ctx, pool, Query{Scope: Scope{Tenant: acme}, Granularity: Days, From: c.now().AddDate(0, 0, -1), To: c.now().AddDate(0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2 * goroutines * each
	want := Row{PublishedAPI: n, PublishedClient: 2 * n / 5, PublishedPusher: 7, Deliveries: 3 * n, BytesDelivered: 100 * n}
	if len(rows) != 1 {
		t.Fatalf("rows = %+v, want one day", rows)
	}
	got := rows[0]
	if got.PublishedAPI != want.PublishedAPI || got.PublishedClient != want.PublishedClient || got.PublishedPusher != want.PublishedPusher ||
		got.Deliveries != want.Deliveries || got.BytesDelivered != want.BytesDelivered || got.Rejected["rate"] != n/100 ||
		got.WebhooksSent != 2*n || got.WebhooksFailed != n {
		t.Errorf("day = %+v, want %+v and %d rate refusals", got, want, n/100)
	}
}

// TestRollupAcrossADayBoundary: minutes on both sides of midnight UTC go to
// their own days; rolling up again (another instance, a restart) changes
// nothing; peaks are the highest minute; months add days up; minutes past
// 48 h and days past 400 are dropped; one tenant never reads another's.
func TestRollupAcrossADayBoundary(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	ctx := context.Background()
	acme, other := newTenant(t, pool, "acme"), newTenant(t, pool, "other")
	var c clock
	m := NewMeter(pool)
	m.Now = c.now
	count := func(at time.Time, tid tenant.ID, n int) {
		t.Helper()
		c.set(at)
		m.Published(tid, realtime.DoorAPI, n)
		if err := m.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	peak := func(at time.Time, tid tenant.ID, sse, total int) {
		t.Helper()
		if _, err := pool.Exec(ctx, `INSERT INTO usage_minutes (tenant_id, minute, peak_sse, peak_total) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id, minute) DO UPDATE SET peak_sse = EXCLUDED.peak_sse, peak_total = EXCLUDED.peak_total`, tid, at.Truncate(time.Minute), sse, total); err != nil {
			t.Fatal(err)
		}
	}
	midnight := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	count(midnight.Add(-90*time.Second), acme, 5) // 23:58:30 on the 5th
	count(midnight.Add(-10*time.Second), acme, 3) // 23:59:50 on the 5th
	count(midnight.Add(10*time.Second), acme, 4)  // 00:00:10 on the 6th
	count(midnight.Add(10*time.Second), other, 100)
	peak(midnight.Add(-2*time.Minute), acme, 4, 6)
	peak(midnight.Add(-1*time.Minute), acme, 9, 9)
	peak(midnight.Add(time.Minute), acme, 2, 2)

	c.set(midnight.Add(30 * time.Second))
	for range 2 {
		if err := Rollup(ctx, pool, c.now()); err != nil {
			t.Fatal(err)
		}
	}
	days, err := Read(ctx, pool, Query{Scope: Scope{Tenant: acme}, Granularity: Days, From: midnight.AddDate(0, 0, -1), To: midnight.AddDate(0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 2 || days[0].PublishedAPI != 8 || days[1].PublishedAPI != 4 ||
		days[0].Peak.SSE != 9 || days[0].Peak.Total != 9 || days[1].Peak.Total != 2 ||
		!days[0].Period.Equal(midnight.AddDate(0, 0, -1)) || !days[1].Period.Equal(midnight) {
		t.Errorf("days = %+v, want 8 events and a peak of 9 on the 5th, 4 and 2 on the 6th", days)
	}
	months, err := Read(ctx, pool, Query{Scope: Scope{Tenant: acme}, Granularity: Months, From: midnight.AddDate(0, -1, 0), To: midnight.AddDate(0, 1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if len(months) != 1 || months[0].PublishedAPI != 12 || months[0].Peak.Total != 9 {
		t.Errorf("months = %+v, want December with 12 events and a peak of 9", months)
	}
	all, err := Read(ctx, pool, Query{Scope: Scope{All: true}, Granularity: Days, From: midnight, To: midnight.AddDate(0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].PublishedAPI != 104 {
		t.Errorf("the service on the 6th = %+v, want 104 events", all)
	}
	minutes, err := Read(ctx, pool, Query{Scope: Scope{Tenant: acme}, Granularity: Minutes, Bucket: time.Hour, From: midnight.Add(-time.Hour), To: midnight.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(minutes) != 2 || minutes[0].PublishedAPI != 8 || minutes[1].PublishedAPI != 4 {
		t.Errorf("hourly buckets = %+v, want 8 then 4", minutes)
	}

	// Two days on, the minutes are gone but the days stay.
	if err := Rollup(ctx, pool, midnight.Add(50*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM usage_minutes`); n != 0 {
		t.Errorf("%d minute rows older than 48 h kept", n)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM usage_days`); n != 3 {
		t.Errorf("%d day rows, want 3 (acme's two, other's one)", n)
	}
	// A day whose first minutes are gone but whose last are kept is
	// recomputed from what is left, and never goes down. (The minute added
	// here, flushed after its day's first minutes were dropped, is the one
	// case that is not counted: an instance would have to hold it unflushed
	// for a day.)
	count(midnight.Add(24*time.Hour-30*time.Second), acme, 1) // 23:59:30 on the 6th
	if err := Rollup(ctx, pool, midnight.Add(47*time.Hour)); err != nil {
		t.Fatal(err)
	}
	days, err = Read(ctx, pool, Query{Scope: Scope{Tenant: acme}, Granularity: Days, From: midnight.AddDate(0, 0, -1), To: midnight.AddDate(0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 2 || days[0].PublishedAPI != 8 || days[1].PublishedAPI != 4 {
		t.Errorf("days after their minutes were dropped = %+v, want 8 and 4 kept", days)
	}
	if err := Rollup(ctx, pool, midnight.AddDate(0, 0, KeepDays+1)); err != nil {
		t.Fatal(err)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM usage_days`); n != 0 {
		t.Errorf("%d day rows older than %d days kept", n, KeepDays)
	}
}
