package realtime

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// PublishConfig holds the publish side's limits.
type PublishConfig struct {
	MaxEventBytes int // encoded data of one event (DESIGN: 64 KiB)
	MaxBatch      int // events per request, after expanding channels (DESIGN: 1000)
}

// DefaultPublishConfig is DESIGN's defaults.
var DefaultPublishConfig = PublishConfig{MaxEventBytes: 64 << 10, MaxBatch: 1000}

// bodyLimit is the largest publish body: 8 MiB, or less when a full batch
// of full events is smaller. A batch of 1000 events of 64 KiB each would be
// 64 MiB in one request; split such loads into several requests.
func (c PublishConfig) bodyLimit() int64 {
	return min(int64(c.MaxBatch)*int64(c.MaxEventBytes+512)+4096, 8<<20)
}

// eventInput is one event as a publisher sends it: one channel or several.
type eventInput struct {
	Channel  string          `json:"channel,omitempty"`
	Channels []string        `json:"channels,omitempty"`
	Type     string          `json:"type"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// drafts checks the inputs and expands them into one draft per channel, in
// order. Every failure is a *web.Problem naming the offending event.
func (c PublishConfig) drafts(inputs []eventInput) ([]Draft, error) {
	var out []Draft
	for i, in := range inputs {
		where := ""
		if len(inputs) > 1 {
			where = fmt.Sprintf("events[%d]: ", i)
		}
		channels := in.Channels
		switch {
		case in.Channel != "" && len(in.Channels) > 0:
			return nil, web.NewProblem(http.StatusBadRequest, "invalid_event", where+`give "channel" or "channels", not both`)
		case in.Channel != "":
			channels = []string{in.Channel}
		case len(channels) == 0:
			return nil, web.NewProblem(http.StatusBadRequest, "invalid_event", where+`"channel" (or "channels") is required`)
		}
		if bad := checkType(in.Type); bad != nil {
			return nil, bad.problem(where)
		}
		data, bad := c.checkData(in.Data)
		if bad != nil {
			return nil, bad.problem(where)
		}
		for _, ch := range channels {
			if err := channel.Valid(ch); err != nil {
				return nil, web.NewProblem(http.StatusBadRequest, "invalid_channel", where+err.Error())
			}
			out = append(out, Draft{Channel: ch, Type: in.Type, Data: data})
			if len(out) > c.MaxBatch {
				countRejection("batch_too_large")
				return nil, web.NewProblem(http.StatusRequestEntityTooLarge, "batch_too_large",
					fmt.Sprintf("a request may publish at most %d events (counting one per channel)", c.MaxBatch))
			}
		}
	}
	if len(out) == 0 {
		return nil, web.NewProblem(http.StatusBadRequest, "invalid_event", `"events" is empty`)
	}
	return out, nil
}

// fieldProblem is why one field of an event is refused, with the API's
// status and code for it.
type fieldProblem struct {
	field  string // "type" or "data"
	status int
	code   string
	err    error
}

// problem is p as the API's answer; where says which event of a batch.
func (p *fieldProblem) problem(where string) error {
	if p.status == http.StatusRequestEntityTooLarge {
		countRejection(p.code)
	}
	return web.NewProblem(p.status, p.code, where+p.err.Error())
}

// checkData checks an event's data and returns it compacted.
func (c PublishConfig) checkData(data json.RawMessage) (json.RawMessage, *fieldProblem) {
	d, err := compactData(data, c.MaxEventBytes)
	if errors.Is(err, ErrTooLarge) {
		return nil, &fieldProblem{"data", http.StatusRequestEntityTooLarge, "event_too_large", err}
	}
	if err != nil {
		return nil, &fieldProblem{"data", http.StatusBadRequest, "invalid_event", err}
	}
	return d, nil
}

// checkType checks an event's type.
func checkType(typ string) *fieldProblem {
	if err := ValidType(typ); err != nil {
		return &fieldProblem{"type", http.StatusBadRequest, "invalid_event_type", err}
	}
	return nil
}

// CheckEvent validates one event as the publish API would, for forms that
// build one field by field (the console). It returns the draft, or the
// problems by field name: "channel", "type", "data".
func (c PublishConfig) CheckEvent(ch, typ string, data json.RawMessage) (Draft, map[string]string) {
	errs := map[string]string{}
	if err := channel.Valid(ch); err != nil {
		errs["channel"] = err.Error()
	}
	d, bad := c.checkData(data)
	for _, p := range []*fieldProblem{checkType(typ), bad} {
		if p != nil {
			errs[p.field] = p.err.Error()
		}
	}
	if len(errs) > 0 {
		return Draft{}, errs
	}
	return Draft{Channel: ch, Type: typ, Data: d}, nil
}

// idempotencyKey reads the Idempotency-Key header: 1–255 visible ASCII characters.
func idempotencyKey(r *http.Request) (string, error) {
	vals := r.Header.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", nil
	}
	k := vals[0]
	ok := len(vals) == 1 && len(k) >= 1 && len(k) <= 255
	for i := 0; ok && i < len(k); i++ {
		ok = k[i] > 0x20 && k[i] < 0x7f
	}
	if !ok {
		return "", web.NewProblem(http.StatusBadRequest, "invalid_idempotency_key",
			"Idempotency-Key must be one header of 1 to 255 visible ASCII characters, such as a UUID")
	}
	return k, nil
}

// publish stores drafts and answers 201 {"ids":[…]}, handling the
// Idempotency-Key header. Every publish endpoint ends here.
func publish(w http.ResponseWriter, r *http.Request, log *slog.Logger, pub *Publisher, drafts []Draft) {
	key, err := idempotencyKey(r)
	if err != nil {
		web.Fail(w, r, log, err)
		return
	}
	var hash []byte
	if key != "" {
		h := sha256.New()
		h.Write([]byte(r.URL.Path + "\n"))
		_ = json.NewEncoder(h).Encode(drafts)
		hash = h.Sum(nil)
	}
	res, err := pub.Publish(r.Context(), tenant.FromContext(r.Context()), drafts, key, hash)
	switch {
	case errors.Is(err, ErrIdempotencyMismatch):
		web.Error(w, http.StatusUnprocessableEntity, "idempotency_key_mismatch",
			"this Idempotency-Key was used with a different request in the last 24 h; use a new key for a new request")
		return
	case err != nil:
		web.Fail(w, r, log, web.Unavailable(err))
		return
	}
	ids := make([]string, len(res.IDs))
	for i, id := range res.IDs {
		ids[i] = strconv.FormatInt(id, 10)
	}
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	web.Encode(w, http.StatusCreated, map[string][]string{"ids": ids})
}

// HandlePublish serves POST /v1/events: one event, one event on several
// channels, or {"events":[…]}, all or nothing.
func HandlePublish(log *slog.Logger, pub *Publisher, limits *Limits) http.HandlerFunc {
	type request struct {
		eventInput
		Events []eventInput `json:"events,omitempty"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		cfg, err := limits.publishLimits(r)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		req, err := web.Decode[request](w, r, cfg.bodyLimit())
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		inputs := req.Events
		single := req.Channel != "" || len(req.Channels) > 0 || req.Type != "" || req.Data != nil
		switch {
		case req.Events != nil && single:
			err = web.NewProblem(http.StatusBadRequest, "invalid_event", `send either one event or {"events":[…]}, not both`)
		case req.Events == nil:
			inputs = []eventInput{req.eventInput}
		}
		var drafts []Draft
		if err == nil {
			drafts, err = cfg.drafts(inputs)
		}
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		publish(w, r, log, pub, drafts)
	}
}

// HandleNotify serves POST /v1/notifications: one "notification" event on
// user:<id> for each user id, as the seed's emitNotification did.
func HandleNotify(log *slog.Logger, pub *Publisher, limits *Limits) http.HandlerFunc {
	type request struct {
		Title   string          `json:"title"`
		Message string          `json:"message"`
		UserIDs []string        `json:"userIds"`
		Data    json.RawMessage `json:"data,omitempty"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		cfg, err := limits.publishLimits(r)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		req, err := web.Decode[request](w, r, int64(cfg.MaxEventBytes)+64<<10)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		if req.Title == "" && req.Message == "" {
			web.Error(w, http.StatusBadRequest, "invalid_event", `a notification needs a "title" or a "message"`)
			return
		}
		if len(req.UserIDs) == 0 {
			web.Error(w, http.StatusBadRequest, "invalid_event", `"userIds" lists the users to notify`)
			return
		}
		data := req.Data
		if data == nil {
			data = json.RawMessage("null")
		}
		payload, err := json.Marshal(struct {
			Title   string          `json:"title"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		}{req.Title, req.Message, data})
		if err != nil {
			web.Error(w, http.StatusBadRequest, "invalid_event", `"data" is not valid JSON`)
			return
		}
		inputs := make([]eventInput, len(req.UserIDs))
		for i, id := range req.UserIDs {
			// A user id is a token's sub: "" or "a b" would make a channel
			// (user:, user:a b) that no subscriber could ever own.
			if err := auth.ValidSubject(id); err != nil {
				web.Error(w, http.StatusBadRequest, "invalid_user_id", fmt.Sprintf("userIds[%d]: %s", i, strings.Replace(err.Error(), `"sub"`, "a user id", 1)))
				return
			}
			inputs[i] = eventInput{Channel: "user:" + id, Type: "notification", Data: payload}
		}
		drafts, err := cfg.drafts(inputs)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		publish(w, r, log, pub, drafts)
	}
}

// HandleDashboard serves POST /v1/dashboard: one "dashboard_update" event on
// channel dashboard, as the seed's emitDashboardUpdate did.
func HandleDashboard(log *slog.Logger, pub *Publisher, limits *Limits) http.HandlerFunc {
	type request struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data,omitempty"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		cfg, err := limits.publishLimits(r)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		req, err := web.Decode[request](w, r, int64(cfg.MaxEventBytes)+4<<10)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		if req.Type == "" || len(req.Type) > MaxTypeLen {
			web.Error(w, http.StatusBadRequest, "invalid_event", `"type" names the update, such as "STATS_UPDATED" (1 to 200 characters)`)
			return
		}
		data := req.Data
		if data == nil {
			data = json.RawMessage("null")
		}
		payload, err := json.Marshal(struct {
			UpdateType string          `json:"updateType"`
			Data       json.RawMessage `json:"data"`
		}{req.Type, data})
		if err != nil {
			web.Error(w, http.StatusBadRequest, "invalid_event", `"data" is not valid JSON`)
			return
		}
		drafts, err := cfg.drafts([]eventInput{{Channel: "dashboard", Type: "dashboard_update", Data: payload}})
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		publish(w, r, log, pub, drafts)
	}
}

// HandleTest serves POST /api/realtime/test: a test event, by default of type
// "test" on channel broadcast, as the seed's test endpoint did. The body may
// be empty.
func HandleTest(log *slog.Logger, pub *Publisher, limits *Limits) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cfg, err := limits.publishLimits(r)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		in := eventInput{}
		if r.ContentLength != 0 {
			in, err = web.Decode[eventInput](w, r, int64(cfg.MaxEventBytes)+4<<10)
			if err != nil {
				web.Fail(w, r, log, err)
				return
			}
		}
		if in.Channel == "" && len(in.Channels) == 0 {
			in.Channel = "broadcast"
		}
		if in.Type == "" {
			in.Type = "test"
		}
		if in.Data == nil {
			in.Data, _ = json.Marshal(map[string]string{"message": "Test event from hybridrt", "sentAt": time.Now().UTC().Format(timeLayout)})
		}
		drafts, err := cfg.drafts([]eventInput{in})
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		publish(w, r, log, pub, drafts)
	}
}

// HandleHistory serves GET /v1/events?channel=c&after=ID&limit=N.
func HandleHistory(log *slog.Logger, store *Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ch := q.Get("channel")
		if ch != "" {
			if err := channel.Valid(ch); err != nil {
				web.Error(w, http.StatusBadRequest, "invalid_channel", err.Error())
				return
			}
		}
		after, _, err := ParseCursor(q.Get("after"))
		if err != nil {
			web.Error(w, http.StatusBadRequest, "invalid_cursor", err.Error())
			return
		}
		limit := 100
		if v := q.Get("limit"); v != "" {
			limit, err = strconv.Atoi(v)
			if err != nil || limit < 1 || limit > 1000 {
				web.Error(w, http.StatusBadRequest, "invalid_limit", "limit is a whole number from 1 to 1000")
				return
			}
		}
		page, err := store.History(r.Context(), tenant.FromContext(r.Context()), ch, after, limit)
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		encodeEvents(w, http.StatusOK, page)
	}
}

// HandleHead serves GET /v1/head: the tenant's latest event id, the cursor a
// backend hands a page it renders so the page's client misses nothing.
func HandleHead(log *slog.Logger, store *Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pos, err := store.Position(r.Context(), tenant.FromContext(r.Context()))
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		web.Encode(w, http.StatusOK, map[string]string{"id": strconv.FormatInt(pos.Head, 10)})
	}
}

// HandleConnections serves GET /v1/connections: the tenant's live
// connections on every instance.
func HandleConnections(log *slog.Logger, reg *Registry) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conns, err := reg.List(r.Context(), tenant.FromContext(r.Context()))
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		web.Encode(w, http.StatusOK, map[string][]*Conn{"connections": conns})
	}
}

// HandleRenew serves POST /api/realtime/connections/{id}/token: a fresh
// subscriber token, sent as bearer, extends a live stream in place.
func HandleRenew(log *slog.Logger, reg *Registry) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := auth.SubscriberFrom(r.Context())
		id := chi.URLParam(r, "id")
		if !strings.HasPrefix(id, "c_") || len(id) > 64 {
			web.Error(w, http.StatusNotFound, "connection_not_found", "no live connection of this user has that id")
			return
		}
		err := reg.Renew(r.Context(), s.TenantID, s.Subject, id, s.Allows, s.Expires, s.Kid)
		switch {
		case errors.Is(err, ErrConnNotFound):
			web.Error(w, http.StatusNotFound, "connection_not_found", "no live connection of this user has that id")
		case errors.Is(err, ErrNotAllowed):
			web.Error(w, http.StatusForbidden, "insufficient_scope", "the new token does not allow every channel of the connection")
		case err != nil:
			web.Fail(w, r, log, web.Unavailable(err))
		default:
			web.Encode(w, http.StatusOK, map[string]any{"connectionId": id, "expiresAt": s.Expires})
		}
	}
}
