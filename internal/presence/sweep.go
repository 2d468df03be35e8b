package presence

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// sweep removes the members that instances which stopped beating left
// behind, and the long-pollers whose time passed, and announces the users
// that had no other connection. Any live
// instance may sweep; two sweeping the same channel serialise on its lock,
// and the second finds nothing left to do.
func (p *Registry) sweep(ctx context.Context) error {
	rows, err := p.pool.Query(ctx, `
		SELECT DISTINCT m.tenant_id, m.channel FROM presence_members m
		 WHERE m.expires_at <= now()
		    OR (m.expires_at IS NULL AND NOT EXISTS (SELECT 1 FROM instances i
		                    WHERE i.id = m.instance_id AND i.heartbeat_at > now() - make_interval(secs => $1)))`,
		realtime.InstanceDead.Seconds())
	if err != nil {
		return fmt.Errorf("presence: find members of dead instances: %w", err)
	}
	var (
		t  tenant.ID
		ch string
	)
	var channels []key
	if _, err := pgx.ForEachRow(rows, []any{&t, &ch}, func() error { channels = append(channels, key{t, ch}); return nil }); err != nil {
		return fmt.Errorf("presence: find members of dead instances: %w", err)
	}
	for _, k := range channels {
		err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			version, err := lockChannel(ctx, tx, k.tenant, k.channel)
			if err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `
				DELETE FROM presence_members m
				 WHERE m.tenant_id = $1 AND m.channel = $2 AND NOT `+alive+`
				RETURNING m.user_id`, k.tenant, k.channel, realtime.InstanceDead.Seconds())
			if err != nil {
				return err
			}
			users, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			_, err = p.leftIfLast(ctx, tx, k.tenant, k.channel, version, dedupe(users))
			return err
		})
		if err != nil {
			return fmt.Errorf("presence: sweep %q: %w", k.channel, err)
		}
		sweptChannels.Inc()
	}
	return nil
}

func dedupe(users []string) []string {
	seen := map[string]bool{}
	out := users[:0]
	for _, u := range users {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}
