package webhook

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// The sources of webhooks besides Occupancy: hooks the doors call, each
// writing the outbox where the change is written.

// ClientEvent is a realtime.WebhookFunc: the client_event a client event d
// sends, when the tenant takes them. It is stored with the event, in its
// transaction. data is the event's data as a JSON string, as Pusher sends
// it; user_id the sender's user, where there is one (presence channels).
func ClientEvent(s tenant.Settings, d realtime.Draft) json.RawMessage {
	if s.WebhookURL == "" || !slices.Contains(s.WebhookEvents, "client_event") {
		return nil
	}
	data, err := json.Marshal(string(d.Data))
	if err != nil {
		return nil
	}
	b, err := json.Marshal(Event{Name: "client_event", Channel: d.Channel, Event: d.Type, Data: data, SocketID: d.Origin, UserID: d.Sender})
	if err != nil {
		return nil
	}
	queued.Inc()
	return b
}

// MemberChanged is presence.Registry's Changed: member_added when a user
// joins a presence channel, member_removed when its last connection
// leaves, in the transaction of the change.
func MemberChanged(ctx context.Context, tx pgx.Tx, tenantID tenant.ID, channel string, c presence.Change) error {
	name := "member_removed"
	if c.Added {
		name = "member_added"
	}
	_, err := Enqueue(ctx, tx, tenantID, Event{Name: name, Channel: channel, UserID: c.Member.UserID})
	return err
}

// CacheMiss returns the Pusher door's CacheMiss: a cache_miss webhook for
// a subscription to a cache- channel with nothing in it. There is no
// change to commit it with; an error is logged.
func CacheMiss(db Execer, log interface {
	Warn(msg string, args ...any)
}) func(ctx context.Context, tenantID tenant.ID, channel string) {
	return func(ctx context.Context, tenantID tenant.ID, channel string) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := Enqueue(ctx, db, tenantID, Event{Name: "cache_miss", Channel: channel}); err != nil {
			log.Warn("webhook: could not queue a cache_miss webhook", "tenant", tenantID, "channel", channel, "err", err)
		}
	}
}
