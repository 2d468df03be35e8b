package realtime

import (
	"context"
	"encoding/json"
	"errors"
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

// HandleClientPublish serves POST /api/realtime/publish: a subscriber, with
// its token as bearer, sends a client event to a channel its token's
// publish claim names, when the tenant allows client events. The event is
// stored and fanned out like any other, with the token's subject as its
// sender; the stream whose connectionId the request names (the sender's
// own SSE stream) does not receive it live. perConnection holds each
// sending connection (or, without one, each user) to its rate.
func HandleClientPublish(log *slog.Logger, pub *Publisher, limits *Limits, settings SettingsFunc, perConnection *web.Buckets[string]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := clientPublish(w, r, pub, limits, settings, perConnection); err != nil {
			clientEventsSent.WithLabelValues("refused").Inc()
			web.Fail(w, r, log, err)
			return
		}
		clientEventsSent.WithLabelValues("published").Inc()
	}
}

// clientEvent is the body of POST /api/realtime/publish.
type clientEvent struct {
	Channel      string          `json:"channel"`
	Type         string          `json:"type"`
	Data         json.RawMessage `json:"data"`
	ConnectionID string          `json:"connectionId"` // the sender's own SSE stream, which skips the event
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

// clientPublish checks and publishes one client event and answers 201, or
// returns the problem to answer.
func clientPublish(w http.ResponseWriter, r *http.Request, pub *Publisher, limits *Limits, settings SettingsFunc, perConnection *web.Buckets[string]) error {
	ctx := r.Context()
	s := auth.SubscriberFrom(ctx)
	set, err := settings(ctx, s.TenantID)
	if err != nil {
		return web.Unavailable(err)
	}
	if !set.ClientEvents {
		return web.NewProblem(http.StatusForbidden, "client_events_disabled",
			"this tenant does not take client events: enable clientEvents with PATCH /v1/tenant/settings")
	}
	lim, err := limits.of(ctx, s.TenantID)
	if err != nil {
		return web.Unavailable(err)
	}
	req, err := web.Decode[clientEvent](w, r, int64(lim.publish.MaxEventBytes)+4<<10)
	if err != nil {
		return err
	}
	if err := channel.Valid(req.Channel); err != nil {
		return web.NewProblem(http.StatusBadRequest, "invalid_channel", err.Error())
	}
	if !strings.HasPrefix(req.Type, ClientEventPrefix) {
		return web.NewProblem(http.StatusBadRequest, "invalid_event_type",
			`a client event's "type" starts with "client-", such as "client-typing"`)
	}
	if bad := checkType(req.Type); bad != nil {
		return bad.problem("")
	}
	if !s.MayPublish(req.Channel) {
		return web.NewProblem(http.StatusForbidden, "insufficient_scope",
			"the token's publish claim does not name channel "+strconv.Quote(req.Channel)+": mint the token with it in \"publish\"")
	}
	if req.ConnectionID != "" && !validConnectionID(req.ConnectionID) {
		return web.NewProblem(http.StatusBadRequest, "invalid_connection_id",
			`"connectionId" is your own SSE stream's id, from its ready event, or the one your polling requests give (c_…)`)
	}
	who := req.ConnectionID
	if who == "" {
		who = "user:" + s.Subject
	}
	if !perConnection.Of(strconv.FormatInt(int64(s.TenantID), 10) + "/" + who).Allow() {
		return web.NewProblem(http.StatusTooManyRequests, "client_event_rate_limited",
			"this connection sent client events faster than its rate allows; slow down (typing indicators: once a second or so)").
			WithHeader("Retry-After", "1")
	}
	cfg, err := limits.TakePublish(ctx, s.TenantID)
	if err != nil {
		return err
	}
	data, bad := cfg.checkData(req.Data)
	if bad != nil {
		return bad.problem("")
	}
	res, err := pub.Publish(ctx, s.TenantID, Draft{Channel: req.Channel, Type: req.Type, Data: data, Origin: req.ConnectionID, Sender: s.Subject}.One(), "", nil)
	if errors.Is(err, context.Canceled) {
		return err
	}
	if err != nil {
		return web.Unavailable(err)
	}
	web.Encode(w, http.StatusCreated, map[string][]string{"ids": {strconv.FormatInt(res.IDs[0], 10)}})
	return nil
}
