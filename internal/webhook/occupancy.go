package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// DefaultGrace is how long a channel stays occupied after its last
// subscriber anywhere left, before channel_vacated is sent; a subscriber
// coming back within it sends nothing. Five seconds covers a page reload
// and a client's first reconnect attempts (EventSource retries after about
// 3 s, the SDKs after 1 to 2 s), plus the second it takes each instance to
// write its connections, so a reconnect does not flap vacated/occupied; a
// backend that stops work on vacated does so five seconds late, which is
// cheap next to stopping and starting it again.
const DefaultGrace = 5 * time.Second

// Occupancy decides channel_occupied and channel_vacated across every
// instance: from the connections table (every instance's live
// connections, written each second, and none of an instance that stopped
// beating) and the long-pollers' presence rows, against what the tenant
// was last told (webhook_channels). One instance at a time decides,
// under an advisory lock, and writes the outbox in the same transaction as
// webhook_channels, so each change is announced exactly once.
type Occupancy struct {
	Pool *pgxpool.Pool
	Log  *slog.Logger
	// Grace is DefaultGrace unless set.
	Grace time.Duration
	// Every is how often to decide: a second unless set.
	Every time.Duration
	// InstanceDead is the heartbeat age after which an instance's
	// connections do not count (realtime.InstanceDead).
	InstanceDead time.Duration
}

// occupancyLock is the advisory lock key of the decision ("hrt-occu").
const occupancyLock = 0x6872742d6f636375

// wantsOccupancy is the SQL condition of a tenants row t that takes
// channel_occupied or channel_vacated.
var wantsOccupancy = tenant.WebhookWantsSQL("t", "array['channel_occupied', 'channel_vacated']")

// live is the SQL of the channels with a subscriber now, of the tenants
// that take occupancy webhooks ($1: InstanceDead in seconds).
var live = `
	SELECT c.tenant_id, ch AS channel
	  FROM connections c JOIN instances i ON i.id = c.instance_id
	       JOIN tenants t ON t.id = c.tenant_id, unnest(c.channels) AS ch
	 WHERE i.heartbeat_at > now() - make_interval(secs => $1) AND ` + wantsOccupancy + `
	UNION
	SELECT m.tenant_id, m.channel
	  FROM presence_members m JOIN tenants t ON t.id = m.tenant_id
	 WHERE m.expires_at > now() AND ` + wantsOccupancy

// Run decides every Every until ctx ends.
func (o *Occupancy) Run(ctx context.Context) error {
	if o.Every == 0 {
		o.Every = time.Second
	}
	tick := time.NewTicker(o.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if _, err := o.Decide(ctx); err != nil && ctx.Err() == nil {
			o.Log.Warn("webhook: deciding occupied and vacated channels failed; retrying", "err", err)
		}
	}
}

// Decide compares the channels with subscribers now with those the
// tenants were last told of, and enqueues the difference: occupied at
// once, vacated after Grace with nobody back. It returns how many webhook
// events it queued; none when another instance is deciding just now.
func (o *Occupancy) Decide(ctx context.Context) (int64, error) {
	grace := o.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	var n int64
	err := pgx.BeginFunc(ctx, o.Pool, func(tx pgx.Tx) error {
		var mine bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(occupancyLock)).Scan(&mine); err != nil || !mine {
			return err
		}
		dead := o.InstanceDead.Seconds()
		// Occupied: a channel with a subscriber that the tenant was not
		// told of (xmax = 0: inserted, not updated). One that was emptying
		// is simply full again.
		tag, err := tx.Exec(ctx, `
			WITH changed AS (
				INSERT INTO webhook_channels (tenant_id, channel)
				SELECT tenant_id, channel FROM (`+live+`) l
				ON CONFLICT (tenant_id, channel) DO UPDATE SET empty_since = NULL
				 WHERE webhook_channels.empty_since IS NOT NULL
				RETURNING tenant_id, channel, xmax = 0 AS fresh)
			INSERT INTO webhook_outbox (tenant_id, event)
			SELECT c.tenant_id, json_build_object('name', 'channel_occupied', 'channel', c.channel)
			  FROM changed c JOIN tenants t ON t.id = c.tenant_id
			 WHERE c.fresh AND `+tenant.WebhookWantsSQL("t", "array['channel_occupied']")+`
			 ORDER BY c.tenant_id, c.channel`, dead)
		if err != nil {
			return fmt.Errorf("occupied: %w", err)
		}
		n += tag.RowsAffected()
		// Emptying: no subscriber now; the grace period starts.
		if _, err := tx.Exec(ctx, `
			UPDATE webhook_channels w SET empty_since = now()
			 WHERE w.empty_since IS NULL
			   AND NOT EXISTS (SELECT 1 FROM (`+live+`) l WHERE l.tenant_id = w.tenant_id AND l.channel = w.channel)`, dead); err != nil {
			return fmt.Errorf("emptying: %w", err)
		}
		// Vacated: empty for the whole grace period. A tenant that no
		// longer takes occupancy webhooks is forgotten without one.
		tag, err = tx.Exec(ctx, `
			WITH gone AS (
				DELETE FROM webhook_channels w USING tenants t
				 WHERE t.id = w.tenant_id
				   AND (w.empty_since < now() - make_interval(secs => $1) OR NOT (`+wantsOccupancy+`))
				RETURNING w.tenant_id, w.channel,
				          w.empty_since IS NOT NULL AND `+tenant.WebhookWantsSQL("t", "array['channel_vacated']")+` AS vacated)
			INSERT INTO webhook_outbox (tenant_id, event)
			SELECT tenant_id, json_build_object('name', 'channel_vacated', 'channel', channel)
			  FROM gone WHERE vacated
			 ORDER BY tenant_id, channel`, grace.Seconds())
		if err != nil {
			return fmt.Errorf("vacated: %w", err)
		}
		n += tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("webhook: decide occupancy: %w", err)
	}
	queued.Add(float64(n))
	return n, nil
}
