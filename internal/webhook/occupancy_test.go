package webhook

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// TestOccupancy: channel_occupied when a channel gets a subscriber on any
// live instance, nothing when it comes back within the grace period,
// channel_vacated once nobody has been back for all of it, also when the
// last subscriber's instance stopped beating; a long-poller's presence row
// counts; two deciders at once announce each change once; a tenant that
// does not take them gets none.
func TestOccupancy(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id, _ := f.tenant(t)
	var quiet tenant.ID
	if err := f.pool.QueryRow(ctx, `INSERT INTO tenants (name, settings) VALUES ('q', '{"webhookUrl":"https://example.com/h","webhookEvents":["member_added"]}') RETURNING id`).Scan(&quiet); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := f.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO instances (id) VALUES ('a'), ('b')`)
	connect := func(conn, instance string, tid tenant.ID, channels ...string) {
		t.Helper()
		exec(`INSERT INTO connections (id, instance_id, tenant_id, subject, channels, transport, remote_addr, user_agent, connected_at, expires_at)
		      VALUES ($1, $2, $3, 'u', $4, 'sse', '127.0.0.1', 'test', now(), now() + interval '1 hour')`, conn, instance, tid, channels)
	}
	o := &Occupancy{Pool: f.pool, Grace: 300 * time.Millisecond, InstanceDead: 20 * time.Second}
	var seen []string
	decide := func() []string {
		t.Helper()
		if _, err := o.Decide(ctx); err != nil {
			t.Fatal(err)
		}
		rows, err := f.pool.Query(ctx, `SELECT event->>'name', event->>'channel', tenant_id FROM webhook_outbox ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var all []string
		for rows.Next() {
			var name, ch string
			var tid tenant.ID
			if err := rows.Scan(&name, &ch, &tid); err != nil {
				t.Fatal(err)
			}
			if tid != id {
				t.Errorf("tenant %d, which takes no occupancy webhooks, got %s %s", tid, name, ch)
			}
			all = append(all, name+" "+ch)
		}
		fresh := all[len(seen):]
		seen = all
		return fresh
	}
	expect := func(what string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %q, want %q", what, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: %q, want %q", what, got, want)
			}
		}
	}

	connect("c1", "a", id, "news", "sports")
	connect("q1", "a", quiet, "news")
	expect("first subscribers", decide(), "channel_occupied news", "channel_occupied sports")
	connect("c2", "b", id, "news")
	expect("a second subscriber, on another instance", decide())

	// news: c1 leaves, c2 stays; sports: c1 was the last.
	exec(`DELETE FROM connections WHERE id = 'c1'`)
	expect("news still has c2; sports in its grace period", decide())
	connect("c3", "a", id, "sports") // back within the grace period
	time.Sleep(400 * time.Millisecond)
	expect("sports came back in time", decide())
	exec(`DELETE FROM connections WHERE id = 'c3'`)
	expect("sports empty again", decide())
	time.Sleep(400 * time.Millisecond)
	expect("sports empty for the grace period", decide(), "channel_vacated sports")

	// Instance b stops beating: its c2 no longer counts.
	exec(`UPDATE instances SET heartbeat_at = now() - interval '1 minute' WHERE id = 'b'`)
	expect("b's heartbeat stale", decide())
	time.Sleep(400 * time.Millisecond)
	expect("b dead for the grace period", decide(), "channel_vacated news")

	// A long-poller in a presence channel counts until its row expires.
	exec(`INSERT INTO presence_members (tenant_id, channel, conn_id, instance_id, user_id, expires_at)
	      VALUES ($1, 'presence-room', 'p1', 'a', 'ann', now() + interval '1 hour')`, id)
	expect("a long-poller", decide(), "channel_occupied presence-room")

	// Two deciders at once: each change once.
	connect("c4", "a", id, "x", "y", "z")
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := o.Decide(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	expect("four deciders at once", decide(), "channel_occupied x", "channel_occupied y", "channel_occupied z")
}
