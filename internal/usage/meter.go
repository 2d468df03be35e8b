package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// Meter counts one instance's usage per tenant per minute in memory, and
// adds it to usage_minutes every FlushEvery (Run). Counting is a map read
// under a shared lock and an atomic add: nothing on the publish or delivery
// path waits for the database.
//
// A flush adds what was counted since the last one, in one transaction,
// and forgets it only once that commits; so a restart never counts twice.
// What an instance counted and had not flushed when it was killed (at most
// FlushEvery's worth) is lost: usage errs low, never high. A graceful stop
// flushes first.
type Meter struct {
	Pool *pgxpool.Pool
	// Now is the clock (time.Now unless set); tests move it across minutes
	// and days.
	Now func() time.Time

	mu    sync.RWMutex
	cells map[cellKey]*cell
}

type cellKey struct {
	tenant tenant.ID
	minute int64 // unix seconds of the minute's start
}

// cell is one tenant's minute. Its counters are added to under the
// Meter's read lock, so a flush, which takes the write lock to swap the
// map, sees every add that counted in it.
type cell struct {
	publishedAPI, publishedPusher, publishedClient atomic.Int64
	deliveries, bytes                              atomic.Int64
	webhooksSent, webhooksFailed                   atomic.Int64

	rejectedMu sync.Mutex
	rejected   map[string]int64
}

// NewMeter returns a meter writing to pool.
func NewMeter(pool *pgxpool.Pool) *Meter {
	return &Meter{Pool: pool, cells: map[cellKey]*cell{}}
}

func (m *Meter) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// add runs f on tenant t's cell of this minute, under the read lock.
func (m *Meter) add(t tenant.ID, f func(c *cell)) {
	if m == nil {
		return
	}
	k := cellKey{t, m.now().Truncate(time.Minute).Unix()}
	m.mu.RLock()
	c, ok := m.cells[k]
	if ok {
		f(c)
		m.mu.RUnlock()
		return
	}
	m.mu.RUnlock()
	m.mu.Lock()
	c, ok = m.cells[k]
	if !ok {
		c = &cell{}
		m.cells[k] = c
	}
	f(c) // under the write lock: no flush can swap the map meanwhile
	m.mu.Unlock()
}

// Published counts n events stored for t through door (realtime.DoorAPI,
// DoorPusher or DoorClient).
func (m *Meter) Published(t tenant.ID, door string, n int) {
	m.add(t, func(c *cell) {
		switch door {
		case realtime.DoorPusher:
			c.publishedPusher.Add(int64(n))
		case realtime.DoorClient:
			c.publishedClient.Add(int64(n))
		default:
			c.publishedAPI.Add(int64(n))
		}
	})
}

// Delivered counts n events, of bytes bytes, written to a subscriber of t.
func (m *Meter) Delivered(t tenant.ID, n, bytes int) {
	m.add(t, func(c *cell) {
		c.deliveries.Add(int64(n))
		c.bytes.Add(int64(bytes))
	})
}

// Rejected counts a request of t's refused for reason (a limit's name, as
// hybridrt_quota_rejections_total labels it).
func (m *Meter) Rejected(t tenant.ID, reason string) {
	m.add(t, func(c *cell) {
		c.rejectedMu.Lock()
		if c.rejected == nil {
			c.rejected = map[string]int64{}
		}
		c.rejected[reason]++
		c.rejectedMu.Unlock()
	})
}

// Webhooks counts t's webhook events acknowledged (sent) and failed POSTs.
func (m *Meter) Webhooks(t tenant.ID, sent, failed int) {
	m.add(t, func(c *cell) {
		c.webhooksSent.Add(int64(sent))
		c.webhooksFailed.Add(int64(failed))
	})
}

// Flush adds what was counted since the last flush to usage_minutes. On
// failure it keeps it, to be added by the next flush.
func (m *Meter) Flush(ctx context.Context) error {
	m.mu.Lock()
	cells := m.cells
	m.cells = map[cellKey]*cell{}
	m.mu.Unlock()
	if len(cells) == 0 {
		return nil
	}
	var (
		tenants                                              []int64
		minutes                                              []time.Time
		api, pusher, client, deliveries, bytes, sent, failed []int64
		rejected                                             []string
	)
	for k, c := range cells {
		tenants = append(tenants, int64(k.tenant))
		minutes = append(minutes, time.Unix(k.minute, 0).UTC())
		api = append(api, c.publishedAPI.Load())
		pusher = append(pusher, c.publishedPusher.Load())
		client = append(client, c.publishedClient.Load())
		deliveries = append(deliveries, c.deliveries.Load())
		bytes = append(bytes, c.bytes.Load())
		sent = append(sent, c.webhooksSent.Load())
		failed = append(failed, c.webhooksFailed.Load())
		r, _ := json.Marshal(c.rejected)
		if c.rejected == nil {
			r = []byte("{}")
		}
		rejected = append(rejected, string(r))
	}
	_, err := m.Pool.Exec(ctx, `
		INSERT INTO usage_minutes (tenant_id, minute, published_api, published_pusher, published_client,
		                           deliveries, bytes_delivered, webhooks_sent, webhooks_failed, rejected)
		SELECT u.t, u.m, u.a, u.p, u.c, u.d, u.b, u.s, u.f, u.r
		  FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[],
		              $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::jsonb[]) AS u (t, m, a, p, c, d, b, s, f, r)
		  JOIN tenants ON tenants.id = u.t -- a tenant deleted meanwhile: its usage went with it
		 ORDER BY u.t, u.m
		ON CONFLICT (tenant_id, minute) DO UPDATE SET
		    published_api    = usage_minutes.published_api    + EXCLUDED.published_api,
		    published_pusher = usage_minutes.published_pusher + EXCLUDED.published_pusher,
		    published_client = usage_minutes.published_client + EXCLUDED.published_client,
		    deliveries       = usage_minutes.deliveries       + EXCLUDED.deliveries,
		    bytes_delivered  = usage_minutes.bytes_delivered  + EXCLUDED.bytes_delivered,
		    webhooks_sent    = usage_minutes.webhooks_sent    + EXCLUDED.webhooks_sent,
		    webhooks_failed  = usage_minutes.webhooks_failed  + EXCLUDED.webhooks_failed,
		    rejected         = usage_jsonb_add(usage_minutes.rejected, EXCLUDED.rejected)`,
		tenants, minutes, api, pusher, client, deliveries, bytes, sent, failed, rejected)
	if err != nil {
		m.putBack(cells)
		return fmt.Errorf("usage: flush: %w", err)
	}
	return nil
}

// putBack adds the cells of a failed flush into the current ones.
func (m *Meter) putBack(cells map[cellKey]*cell) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, old := range cells {
		c, ok := m.cells[k]
		if !ok {
			m.cells[k] = old
			continue
		}
		c.publishedAPI.Add(old.publishedAPI.Load())
		c.publishedPusher.Add(old.publishedPusher.Load())
		c.publishedClient.Add(old.publishedClient.Load())
		c.deliveries.Add(old.deliveries.Load())
		c.bytes.Add(old.bytes.Load())
		c.webhooksSent.Add(old.webhooksSent.Load())
		c.webhooksFailed.Add(old.webhooksFailed.Load())
		c.rejectedMu.Lock()
		for r, n := range old.rejected {
			if c.rejected == nil {
				c.rejected = map[string]int64{}
			}
			c.rejected[r] += n
		}
		c.rejectedMu.Unlock()
	}
}

// samplerLock is the advisory lock key of the connection sampler ("hrt-usag").
const samplerLock = 0x6872742d75736167

// Sample records each tenant's connections now, by transport, across every
// live instance, as this minute's peaks where they are higher. One instance
// samples at a time; instanceDead is realtime.InstanceDead.
func (m *Meter) Sample(ctx context.Context, instanceDead time.Duration) error {
	minute := m.now().Truncate(time.Minute).UTC()
	err := pgx.BeginFunc(ctx, m.Pool, func(tx pgx.Tx) error {
		var mine bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(samplerLock)).Scan(&mine); err != nil || !mine {
			return err
		}
		// Transports as the connections table names them: sse, polling,
		// ws (hybridrt.v1), websocket (the Pusher door).
		_, err := tx.Exec(ctx, `
			INSERT INTO usage_minutes (tenant_id, minute, peak_sse, peak_websocket, peak_pusher, peak_polling, peak_total)
			SELECT c.tenant_id, $1,
			       count(*) FILTER (WHERE c.transport = 'sse'), count(*) FILTER (WHERE c.transport = 'ws'),
			       count(*) FILTER (WHERE c.transport = 'websocket'), count(*) FILTER (WHERE c.transport = 'polling'),
			       count(*)
			  FROM connections c JOIN instances i ON i.id = c.instance_id
			 WHERE i.heartbeat_at > now() - make_interval(secs => $2)
			 GROUP BY c.tenant_id
			 ORDER BY c.tenant_id
			ON CONFLICT (tenant_id, minute) DO UPDATE SET
			    peak_sse       = greatest(usage_minutes.peak_sse, EXCLUDED.peak_sse),
			    peak_websocket = greatest(usage_minutes.peak_websocket, EXCLUDED.peak_websocket),
			    peak_pusher    = greatest(usage_minutes.peak_pusher, EXCLUDED.peak_pusher),
			    peak_polling   = greatest(usage_minutes.peak_polling, EXCLUDED.peak_polling),
			    peak_total     = greatest(usage_minutes.peak_total, EXCLUDED.peak_total)`,
			minute, instanceDead.Seconds())
		return err
	})
	if err != nil {
		return fmt.Errorf("usage: sample connections: %w", err)
	}
	return nil
}
