package pusher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// apiRequests counts Pusher HTTP API requests by route and answer.
var apiRequests = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "hybridrt_pusher_api_requests_total",
	Help: "Pusher HTTP API requests, by route and HTTP status code.",
}, []string{"route", "code"})

// Pusher's limits on the HTTP API.
const (
	maxAPIBody         = 1 << 20  // bytes of a request body
	maxTriggerData     = 10 << 10 // bytes of one event's data string ("10 KB")
	maxTriggerChannels = 100      // channels of one trigger
	maxBatchEvents     = 10       // events of one batch_events
	maxSocketID        = 64       // bytes of a socket_id
)

// API serves Pusher's HTTP API under /apps/{appId}/: the app id is the
// tenant id, auth_key a signing key's kid and the secret that key's secret.
// Every request is signed as Pusher signs it (see sign.go). Answers are
// Pusher's: JSON on success, a plain-text line with the status otherwise;
// unknown JSON fields are ignored, as Pusher ignores them.
type API struct {
	Log  *slog.Logger
	Keys interface {
		KeySecret(ctx context.Context, kid string) (tenant.ID, []byte, error)
	} // *auth.Verifier; auth.ErrNotFound for an unknown kid
	Publisher *realtime.Publisher
	Limits    *realtime.Limits // one TakePublish per trigger request
	Counts    interface {
		ChannelCounts(ctx context.Context, t tenant.ID, prefix string) (map[string]int, error)
	} // *realtime.Registry: subscriptions per channel, across instances
	Presence interface {
		Members(ctx context.Context, t tenant.ID, channel string) ([]presence.Member, error)
		UserCounts(ctx context.Context, t tenant.ID, prefix string) (map[string]int, error)
	}
	// Terminate closes the user's signed-in WebSocket connections on every instance.
	Terminate func(ctx context.Context, t tenant.ID, userID string) error
	// Status, when set, refuses a suspended tenant's requests with 403,
	// Pusher's "app disabled" (*tenant.Status).
	Status interface {
		Suspended(ctx context.Context, t tenant.ID) (bool, error)
	}
	// KeyRate, when set, takes one request from the publish rate of the
	// key that signed a trigger (PUBLISH_RATE, as for an API key), false
	// when it is used up.
	KeyRate func(kid string) bool
	Now     func() time.Time
}

// Routes mounts the API on r, a router mounted at /apps/{appId}.
func (a *API) Routes(r chi.Router) {
	r.Post("/events", a.handle("events", a.trigger))
	r.Post("/batch_events", a.handle("batch_events", a.triggerBatch))
	r.Get("/channels", a.handle("channels", a.listChannels))
	r.Get("/channels/{channel}", a.handle("channel", a.channelInfo))
	r.Get("/channels/{channel}/users", a.handle("users", a.channelUsers))
	r.Post("/users/{userId}/terminate_connections", a.handle("terminate_connections", a.terminate))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		a.respond(w, r, "unknown", nil, &apiError{http.StatusNotFound,
			"Not found: no HTTP API endpoint " + r.Method + " " + r.URL.Path + "; see Pusher's HTTP API reference"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		a.respond(w, r, "unknown", nil, &apiError{http.StatusMethodNotAllowed,
			"Method not allowed: " + r.Method + " is not served on " + r.URL.Path + "; see Pusher's HTTP API reference"})
	})
}

// apiCall is a request whose signature checked out.
type apiCall struct {
	r      *http.Request
	key    string // the signing key that signed it
	tenant tenant.ID
	query  url.Values
	body   []byte
}

func (a *API) now() time.Time {
	if a.Now == nil {
		return time.Now()
	}
	return a.Now()
}

func (c *apiCall) ctx() context.Context { return c.r.Context() }

// param is the path parameter name, unescaped: chi matches the escaped
// path when the request has one.
func (c *apiCall) param(name string) (string, error) {
	v, err := url.PathUnescape(chi.URLParam(c.r, name))
	if err != nil {
		return "", &apiError{http.StatusBadRequest, "Invalid path: " + name + " is not a valid URL path segment"}
	}
	return v, nil
}

// channel is the {channel} of the path, checked as validAPIChannel does.
func (c *apiCall) channel() (string, error) {
	name, err := c.param("channel")
	if err != nil {
		return "", err
	}
	if err := validAPIChannel(name); err != nil {
		return "", badRequest("%v", err)
	}
	return name, nil
}

// apiError is a refusal with its status and a line of text saying what is
// wrong and what to do.
type apiError struct {
	status int
	text   string
}

func (e *apiError) Error() string { return e.text }

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func tooLarge(format string, args ...any) error {
	return &apiError{http.StatusRequestEntityTooLarge, "Request Entity Too Large: " + fmt.Sprintf(format, args...)}
}

// handle verifies a request's signature, runs h and answers.
func (a *API) handle(route string, h func(*apiCall) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := a.verify(w, r)
		var v any
		if err == nil {
			v, err = h(c)
		}
		a.respond(w, r, route, v, err)
	}
}

// verify reads the body and checks the request's signature, its key and
// that the key belongs to the app of the path.
func (a *API) verify(w http.ResponseWriter, r *http.Request) (*apiCall, error) {
	// A body that trickles in must not hold a connection forever.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(30 * time.Second))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIBody))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, tooLarge("the request body is over %d bytes", maxAPIBody)
	}
	if err != nil {
		return nil, badRequest("Invalid body: it could not be read (%v)", err)
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("Invalid query string: %v", err)
	}
	p, err := readAuth(q, a.now())
	if err != nil {
		return nil, err
	}
	id, secret, err := a.Keys.KeySecret(r.Context(), p.key)
	// An unknown key and another app's key get the same answer: whether an
	// app or a key exists is not for a stranger to learn.
	appID := chi.URLParam(r, "appId")
	switch {
	case errors.Is(err, auth.ErrNotFound) || err == nil && appID != strconv.FormatInt(int64(id), 10):
		return nil, authError("Unknown auth_key: " + strconv.Quote(clipText(p.key)) + " is not a key of app " +
			strconv.Quote(clipText(appID)) + "; use the app id, key and secret shown together in the console")
	case err != nil:
		return nil, err
	}
	err = p.verify(r.Method, r.URL.Path, q, body, secret)
	if esc := r.URL.EscapedPath(); err != nil && esc != r.URL.Path && p.verify(r.Method, esc, q, body, secret) == nil {
		err = nil // signed over the path as sent, escaped
	}
	if err != nil {
		return nil, err
	}
	if a.Status != nil {
		suspended, err := a.Status.Suspended(r.Context(), id)
		if err != nil {
			return nil, err
		}
		if suspended {
			return nil, &apiError{http.StatusForbidden, "App disabled: this app is suspended by the operator of this service; nothing was done"}
		}
	}
	return &apiCall{r: r, key: p.key, tenant: id, query: q, body: body}, nil
}

// respond answers v as JSON, or err as Pusher does: a status and a line of
// text. Database trouble is a 503 with Retry-After; anything unforeseen is
// logged and a bare 500.
func (a *API) respond(w http.ResponseWriter, r *http.Request, route string, v any, err error) {
	status := http.StatusOK
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if err == nil {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
		apiRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		return
	}
	var text string
	if e, ok := errors.AsType[*apiError](err); ok {
		status, text = e.status, e.text
	} else if e, ok := errors.AsType[authError](err); ok {
		status, text = http.StatusUnauthorized, string(e)
	} else if p, ok := errors.AsType[*web.Problem](err); ok {
		// The tenant's publish rate (429), or a 503 already logged.
		status, text = p.Status, problemText(w, p)
	} else if p, ok := errors.AsType[*web.Problem](web.Unavailable(err)); ok {
		status, text = p.Status, problemText(w, p) // the database away
		a.logFailure(r, slog.LevelWarn, err)
	} else {
		status, text = http.StatusInternalServerError, "Internal error: the request failed on the server and was logged; retry later"
		a.logFailure(r, slog.LevelError, err)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text+"\n")
	apiRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
}

// problemText is p as a line of text, its headers (Retry-After) set on w.
func problemText(w http.ResponseWriter, p *web.Problem) string {
	for k, vs := range p.Header {
		w.Header()[k] = vs
	}
	return http.StatusText(p.Status) + ": " + p.Detail
}

// logFailure logs err with the request id and path: never the query,
// which holds the signature.
func (a *API) logFailure(r *http.Request, level slog.Level, err error) {
	a.Log.LogAttrs(r.Context(), level, "pusher api request failed",
		slog.String("request_id", web.RequestID(r.Context())),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("err", err.Error()))
}

// decodeJSON reads body into v, ignoring unknown fields as Pusher does.
func decodeJSON(body []byte, v any) error {
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return badRequest("Missing body: send the parameters as a JSON object with Content-Type: application/json")
	case !utf8.Valid(body):
		return badRequest("Invalid body: it is not valid UTF-8")
	}
	err := json.Unmarshal(body, v)
	if e, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if e.Field == "" {
			return badRequest("Invalid body: expected a JSON object, got a JSON %s", e.Value)
		}
		return badRequest("Invalid body: field %q cannot be a JSON %s", e.Field, e.Value)
	}
	if err != nil {
		return badRequest("Invalid body: malformed JSON (%s)", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// triggerEvent is one event of POST events, or of batch_events' batch.
type triggerEvent struct {
	Name     string          `json:"name"`
	Data     json.RawMessage `json:"data"`
	Channel  string          `json:"channel"`
	Channels []string        `json:"channels"`
	SocketID string          `json:"socket_id"`
	Info     string          `json:"info"`
}

// drafts checks e, whose channels are given, and returns one draft per
// distinct channel. where names the event in a batch.
func (e *triggerEvent) drafts(cfg realtime.PublishConfig, channels []string, where string) ([]realtime.Draft, error) {
	if err := realtime.ValidType(e.Name); err != nil {
		return nil, badRequest("%sInvalid event name: %v", where, err)
	}
	var data string
	switch {
	case len(e.Data) == 0 || string(e.Data) == "null":
		return nil, badRequest("%sMissing data: every event needs data, a string (JSON text or any other)", where)
	case e.Data[0] == '"':
		if err := json.Unmarshal(e.Data, &data); err != nil {
			return nil, badRequest("%sInvalid data: %v", where, err)
		}
	default:
		// Pusher's data is a string; a JSON value sent as it is stands
		// for its own text, as the libraries would have encoded it.
		var b bytes.Buffer
		_ = json.Compact(&b, e.Data) // valid: it came out of a valid body
		data = b.String()
	}
	if len(data) > maxTriggerData {
		return nil, tooLarge("%sevent data is %d bytes, over the limit of %d bytes (10 KB); send less, or a reference to it", where, len(data), maxTriggerData)
	}
	stored := FromPusher(data)
	if len(stored) > cfg.MaxEventBytes {
		return nil, tooLarge("%sevent data is %d bytes stored, over this app's limit of %d bytes", where, len(stored), cfg.MaxEventBytes)
	}
	if e.SocketID != "" && !validSocketIDText(e.SocketID) {
		return nil, badRequest("%sInvalid socket_id %q: a socket id is two numbers joined by a dot, such as 1234.5678", where, clipText(e.SocketID))
	}
	switch {
	case len(channels) == 0:
		return nil, badRequest("%sMissing channel: give channel, or channels with 1 to %d names", where, maxTriggerChannels)
	case len(channels) > maxTriggerChannels:
		return nil, badRequest("%sToo many channels: %d given, at most %d per event; split the event", where, len(channels), maxTriggerChannels)
	}
	out := make([]realtime.Draft, 0, len(channels))
	seen := map[string]bool{}
	for _, ch := range channels {
		if err := validAPIChannel(ch); err != nil {
			return nil, badRequest("%s%v", where, err)
		}
		if seen[ch] {
			continue // one event per channel, however often it is named
		}
		seen[ch] = true
		out = append(out, realtime.Draft{Channel: ch, Type: e.Name, Data: stored, Origin: e.SocketID, Door: realtime.DoorPusher})
	}
	return out, nil
}

// validSocketIDText reports whether s looks like a socket id: digits, a
// dot, digits.
func validSocketIDText(s string) bool {
	before, after, ok := strings.Cut(s, ".")
	digits := func(p string) bool {
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
		return p != ""
	}
	return ok && len(s) <= maxSocketID && digits(before) && digits(after)
}

// validAPIChannel checks a channel name given to the API: hybridrt's
// channel rule, and no ':', which marks hybridrt's own channels (user:<id>
// and the like), never reachable over the Pusher protocol.
func validAPIChannel(name string) error {
	if err := channel.Valid(name); err != nil {
		return fmt.Errorf("Invalid channel name: %w", err)
	}
	if strings.Contains(name, ":") {
		return fmt.Errorf("Invalid channel name %q: ':' is not allowed over the Pusher API (names with ':' are hybridrt's own channels, reachable through /v1 only)", clipText(name))
	}
	return nil
}

func isPresence(name string) bool { return strings.HasPrefix(name, prefixPresence) }

// infoAttrs are the attributes an info parameter asks for.
type infoAttrs struct {
	subscriptionCount, userCount, cache bool
}

// parseInfo reads a comma-separated info parameter, allowing only the
// attributes named.
func parseInfo(info string, allowed ...string) (infoAttrs, error) {
	var a infoAttrs
	for f := range strings.SplitSeq(info, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		ok := false
		for _, name := range allowed {
			ok = ok || f == name
		}
		if !ok {
			return a, badRequest("Invalid info attribute %q: ask for %s", clipText(f), strings.Join(allowed, " or "))
		}
		switch f {
		case "subscription_count":
			a.subscriptionCount = true
		case "user_count":
			a.userCount = true
		case "cache":
			a.cache = true
		}
	}
	return a, nil
}

func (a infoAttrs) asked() bool { return a.subscriptionCount || a.userCount }

// channelStat is what the API tells of a channel; only the attributes
// asked for are set.
type channelStat struct {
	Occupied          *bool `json:"occupied,omitempty"`
	UserCount         *int  `json:"user_count,omitempty"`
	SubscriptionCount *int  `json:"subscription_count,omitempty"`
}

// stats returns the counts of channels: subscriptions, and users of the
// presence ones, in one query each.
func (a *API) stats(ctx context.Context, t tenant.ID, channels []string, attrs infoAttrs) (subs, users map[string]int, err error) {
	var presenceChannels []string
	for _, ch := range channels {
		if isPresence(ch) {
			presenceChannels = append(presenceChannels, ch)
		}
	}
	if attrs.subscriptionCount && len(channels) > 0 {
		if subs, err = a.Counts.ChannelCounts(ctx, t, commonPrefix(channels)); err != nil {
			return nil, nil, err
		}
	}
	if attrs.userCount && len(presenceChannels) > 0 {
		if users, err = a.Presence.UserCounts(ctx, t, commonPrefix(presenceChannels)); err != nil {
			return nil, nil, err
		}
	}
	return subs, users, nil
}

// stat is channel ch's entry from stats' counts: user_count only for a
// presence channel, as Pusher answers.
func (attrs infoAttrs) stat(ch string, subs, users map[string]int) channelStat {
	var s channelStat
	if attrs.subscriptionCount {
		n := subs[ch]
		s.SubscriptionCount = &n
	}
	if attrs.userCount && isPresence(ch) {
		n := users[ch]
		s.UserCount = &n
	}
	return s
}

// commonPrefix is the longest prefix of every name.
func commonPrefix(names []string) string {
	p := names[0]
	for _, n := range names[1:] {
		for !strings.HasPrefix(n, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}

// publish stores drafts for the call's tenant, all or nothing. A failure
// is the database's: 503, nothing stored, retry.
func (a *API) publish(c *apiCall, cfg realtime.PublishConfig, drafts []realtime.Draft) error {
	if len(drafts) > cfg.MaxBatch {
		return tooLarge("%d events (one per channel), over this app's limit of %d per request", len(drafts), cfg.MaxBatch)
	}
	if _, err := a.Publisher.Publish(c.ctx(), c.tenant, drafts, "", nil); err != nil {
		a.logFailure(c.r, slog.LevelWarn, err)
		return web.NewProblem(http.StatusServiceUnavailable, "unavailable",
			"the events could not be stored; nothing was published, retry shortly").WithHeader("Retry-After", "1")
	}
	return nil
}

// takePublish takes a trigger request from the signing key's rate and the
// tenant's, and returns the tenant's publish limits.
func (a *API) takePublish(c *apiCall) (realtime.PublishConfig, error) {
	if a.KeyRate != nil && !a.KeyRate(c.key) {
		return realtime.PublishConfig{}, web.NewProblem(http.StatusTooManyRequests, "rate_limited",
			"this key sent more triggers a second than the server allows (PUBLISH_RATE); slow down, or batch events").
			WithHeader("Retry-After", "1")
	}
	return a.Limits.TakePublish(c.ctx(), c.tenant)
}

// trigger serves POST /apps/{appId}/events.
func (a *API) trigger(c *apiCall) (any, error) {
	cfg, err := a.takePublish(c)
	if err != nil {
		return nil, err
	}
	var e triggerEvent
	if err := decodeJSON(c.body, &e); err != nil {
		return nil, err
	}
	channels := e.Channels
	if e.Channel != "" {
		if len(channels) > 0 {
			return nil, badRequest("Invalid body: give channel or channels, not both")
		}
		channels = []string{e.Channel}
	}
	attrs, err := parseInfo(e.Info, "subscription_count", "user_count")
	if err != nil {
		return nil, err
	}
	drafts, err := e.drafts(cfg, channels, "")
	if err != nil {
		return nil, err
	}
	if err := a.publish(c, cfg, drafts); err != nil {
		return nil, err
	}
	if !attrs.asked() {
		return struct{}{}, nil
	}
	names := make([]string, len(drafts))
	for i, d := range drafts {
		names[i] = d.Channel
	}
	subs, users, err := a.stats(c.ctx(), c.tenant, names, attrs)
	if err != nil {
		return nil, err
	}
	out := map[string]channelStat{}
	for _, ch := range names {
		out[ch] = attrs.stat(ch, subs, users)
	}
	return map[string]any{"channels": out}, nil
}

// triggerBatch serves POST /apps/{appId}/batch_events.
func (a *API) triggerBatch(c *apiCall) (any, error) {
	cfg, err := a.takePublish(c)
	if err != nil {
		return nil, err
	}
	var req struct {
		Batch []triggerEvent `json:"batch"`
	}
	if err := decodeJSON(c.body, &req); err != nil {
		return nil, err
	}
	switch {
	case len(req.Batch) == 0:
		return nil, badRequest("Missing batch: send {\"batch\":[...]} with 1 to %d events", maxBatchEvents)
	case len(req.Batch) > maxBatchEvents:
		return nil, badRequest("Too many events: the batch has %d, at most %d are allowed; split it", len(req.Batch), maxBatchEvents)
	}
	var (
		drafts   []realtime.Draft
		attrs    = make([]infoAttrs, len(req.Batch))
		union    infoAttrs
		channels []string
	)
	for i := range req.Batch {
		e := &req.Batch[i]
		where := fmt.Sprintf("batch[%d]: ", i)
		if attrs[i], err = parseInfo(e.Info, "subscription_count", "user_count"); err != nil {
			return nil, badRequest("%s%v", where, err)
		}
		union.subscriptionCount = union.subscriptionCount || attrs[i].subscriptionCount
		union.userCount = union.userCount || attrs[i].userCount
		var chans []string
		if e.Channel != "" {
			chans = []string{e.Channel} // a batch event has one channel
		}
		d, err := e.drafts(cfg, chans, where)
		if err != nil {
			return nil, err
		}
		drafts = append(drafts, d...)
		channels = append(channels, e.Channel)
	}
	if err := a.publish(c, cfg, drafts); err != nil {
		return nil, err
	}
	if !union.asked() {
		return struct{}{}, nil
	}
	subs, users, err := a.stats(c.ctx(), c.tenant, channels, union)
	if err != nil {
		return nil, err
	}
	out := make([]channelStat, len(req.Batch))
	for i, ch := range channels {
		out[i] = attrs[i].stat(ch, subs, users)
	}
	return map[string]any{"batch": out}, nil
}

// listChannels serves GET /apps/{appId}/channels: the occupied channels,
// with filter_by_prefix and info=user_count (presence- prefixes only).
func (a *API) listChannels(c *apiCall) (any, error) {
	prefix := c.query.Get("filter_by_prefix")
	if prefix != "" {
		if err := channel.ValidPattern(prefix + "*"); err != nil {
			return nil, badRequest("Invalid filter_by_prefix %q: a prefix is made of A-Z a-z 0-9 _ - . @ =", clipText(prefix))
		}
	}
	attrs, err := parseInfo(c.query.Get("info"), "user_count")
	if err != nil {
		return nil, err
	}
	if attrs.userCount && !strings.HasPrefix(prefix, prefixPresence) {
		return nil, badRequest("info=user_count is only available for presence channels: add filter_by_prefix=presence-")
	}
	subs, err := a.Counts.ChannelCounts(c.ctx(), c.tenant, prefix)
	if err != nil {
		return nil, err
	}
	var users map[string]int
	if attrs.userCount {
		if users, err = a.Presence.UserCounts(c.ctx(), c.tenant, prefix); err != nil {
			return nil, err
		}
	}
	out := map[string]channelStat{}
	for _, counts := range []map[string]int{subs, users} {
		for ch, n := range counts {
			// Names with ':' are hybridrt's own, not the Pusher app's.
			if n > 0 && !strings.Contains(ch, ":") {
				out[ch] = attrs.stat(ch, nil, users)
			}
		}
	}
	return map[string]any{"channels": out}, nil
}

// channelInfo serves GET /apps/{appId}/channels/{channel}.
func (a *API) channelInfo(c *apiCall) (any, error) {
	name, err := c.channel()
	if err != nil {
		return nil, err
	}
	// cache is accepted and not answered: the attribute is optional.
	attrs, err := parseInfo(c.query.Get("info"), "user_count", "subscription_count", "cache")
	if err != nil {
		return nil, err
	}
	if attrs.userCount && !isPresence(name) {
		return nil, badRequest("info=user_count is only available for presence channels, and %q is not one", name)
	}
	want := attrs
	want.subscriptionCount = true // for occupied
	subs, users, err := a.stats(c.ctx(), c.tenant, []string{name}, want)
	if err != nil {
		return nil, err
	}
	s := attrs.stat(name, subs, users)
	occupied := subs[name] > 0 || users[name] > 0
	s.Occupied = &occupied
	return s, nil
}

// channelUsers serves GET /apps/{appId}/channels/{channel}/users.
func (a *API) channelUsers(c *apiCall) (any, error) {
	name, err := c.channel()
	if err != nil {
		return nil, err
	}
	if !isPresence(name) {
		return nil, badRequest("Users can only be listed for presence channels, and %q is not one", name)
	}
	members, err := a.Presence.Members(c.ctx(), c.tenant, name)
	if err != nil {
		return nil, err
	}
	type user struct {
		ID string `json:"id"`
	}
	users := make([]user, len(members))
	for i, m := range members {
		users[i] = user{m.UserID}
	}
	return map[string]any{"users": users}, nil
}

// terminate serves POST /apps/{appId}/users/{userId}/terminate_connections.
func (a *API) terminate(c *apiCall) (any, error) {
	userID, err := c.param("userId")
	if err != nil {
		return nil, err
	}
	if err := auth.ValidSubject(userID); err != nil {
		return nil, badRequest("Invalid user id %q: a user id is 1 to 200 printable characters without spaces", clipText(userID))
	}
	if err := a.Terminate(c.ctx(), c.tenant, userID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
