package realtime

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// ClientEventPrefix starts the type of every event a client sends, as in
// Pusher: a subscriber can tell an event its peers sent from one the
// tenant's backend published, and a client cannot pass for the backend.
const ClientEventPrefix = "client-"

var clientEventsSent = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "hybridrt_client_events_total",
	Help: "Client events sent over hybridrt's own transports (POST /api/realtime/publish), by outcome: published or refused.",
}, []string{"outcome"})

// SettingsFunc returns a tenant's settings, as tenant.Cache.Settings does.
type SettingsFunc func(context.Context, tenant.ID) (tenant.Settings, error)

// ClientEvents checks and publishes client events from subscribers of
// hybridrt's own transports (the Pusher door has its own rules, Pusher's).
type ClientEvents struct {
	Publisher *Publisher
	Limits    *Limits
	Settings  SettingsFunc
	// PerConnection holds each sending connection (or, without one, each
	// user) to its rate.
	PerConnection *web.Buckets[string]
	// Webhook, when set, gives the webhook an event sends (its client_event).
	Webhook WebhookFunc
}

// ClientEvent is a client event as a subscriber sends it.
type ClientEvent struct {
	Channel      string          `json:"channel"`
	Type         string          `json:"type"`
	Data         json.RawMessage `json:"data"`
	ConnectionID string          `json:"connectionId"` // the sender's own connection, which skips the event
}

// HandleClientPublish serves POST /api/realtime/publish: a subscriber, with
// its token as bearer, sends a client event (ClientEvents.Publish).
func HandleClientPublish(log *slog.Logger, ce *ClientEvents) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := auth.SubscriberFrom(r.Context())
		max, err := ce.Limits.PublishConfigFor(r.Context(), s.TenantID)
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		ev, err := web.Decode[ClientEvent](w, r, int64(max.MaxEventBytes)+4<<10)
		if err == nil {
			var id int64
			if id, err = ce.Publish(r.Context(), s, ev); err == nil {
				web.Encode(w, http.StatusCreated, map[string][]string{"ids": {strconv.FormatInt(id, 10)}})
				return
			}
		}
		web.Fail(w, r, log, err)
	}
}

// validConnectionID accepts the shape of a connection id: c_ and up to 62
// more printable characters.
func validConnectionID(id string) bool {
	if !strings.HasPrefix(id, "c_") || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// Publish checks a client event from subscriber s and publishes it, when the
// tenant takes client events and s's publish claim names the channel. The
// event is stored and fanned out like any other, with s's subject as its
// sender; the connection ev names does not receive it. It returns the
// event's id, or the refusal as a *web.Problem.
func (ce *ClientEvents) Publish(ctx context.Context, s auth.Subscriber, ev ClientEvent) (id int64, err error) {
	defer func() {
		if err != nil {
			clientEventsSent.WithLabelValues("refused").Inc()
		} else {
			clientEventsSent.WithLabelValues("published").Inc()
		}
	}()
	set, err := ce.Settings(ctx, s.TenantID)
	if err != nil {
		return 0, web.Unavailable(err)
	}
	if !set.ClientEvents {
		return 0, web.NewProblem(http.StatusForbidden, "client_events_disabled",
			"this tenant does not take client events: enable clientEvents with PATCH /v1/tenant/settings")
	}
	if err := channel.Valid(ev.Channel); err != nil {
		return 0, web.NewProblem(http.StatusBadRequest, "invalid_channel", err.Error())
	}
	if !strings.HasPrefix(ev.Type, ClientEventPrefix) {
		return 0, web.NewProblem(http.StatusBadRequest, "invalid_event_type",
			`a client event's "type" starts with "client-", such as "client-typing"`)
	}
	if bad := checkType(ev.Type); bad != nil {
		return 0, bad.problem("")
	}
	if !s.MayPublish(ev.Channel) {
		return 0, web.NewProblem(http.StatusForbidden, "insufficient_scope",
			"the token's publish claim does not name channel "+strconv.Quote(ev.Channel)+": mint the token with it in \"publish\"")
	}
	if ev.ConnectionID != "" && !validConnectionID(ev.ConnectionID) {
		return 0, web.NewProblem(http.StatusBadRequest, "invalid_connection_id",
			`"connectionId" is your own SSE stream's id, from its ready event, or the one your polling requests give (c_…)`)
	}
	who := ev.ConnectionID
	if who == "" {
		who = "user:" + s.Subject
	}
	if !ce.PerConnection.Of(strconv.FormatInt(int64(s.TenantID), 10) + "/" + who).Allow() {
		return 0, web.NewProblem(http.StatusTooManyRequests, "client_event_rate_limited",
			"this connection sent client events faster than its rate allows; slow down (typing indicators: once a second or so)").
			WithHeader("Retry-After", "1")
	}
	cfg, err := ce.Limits.TakePublish(ctx, s.TenantID)
	if err != nil {
		return 0, err
	}
	data, bad := cfg.checkData(ev.Data)
	if bad != nil {
		return 0, bad.problem("")
	}
	d := Draft{Channel: ev.Channel, Type: ev.Type, Data: data, Origin: ev.ConnectionID, Sender: s.Subject, Door: DoorClient}
	if ce.Webhook != nil {
		d.Webhook = ce.Webhook(set, d)
	}
	res, err := ce.Publisher.Publish(ctx, s.TenantID, d.One(), "", nil)
	if err != nil {
		return 0, web.Unavailable(err)
	}
	return res.IDs[0], nil
}
