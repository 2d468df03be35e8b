package pusher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/limit"
	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// apiEnv is the HTTP API on a fresh database: a real publisher, signing
// keys and quotas; fakes for the counts, presence and terminate, which
// the end-to-end tests cover with the real ones.
type apiEnv struct {
	t      *testing.T
	pool   *pgxpool.Pool
	h      http.Handler
	now    time.Time
	tid    tenant.ID
	kid    string
	secret string
	other  tenant.ID // another tenant, with its own key
	oKid   string
	logs   *strings.Builder

	counts     fakeCounts
	presence   fakePresence
	mu         sync.Mutex
	terminated []string
}

type fakeCounts map[string]int

func (f fakeCounts) ChannelCounts(_ context.Context, _ tenant.ID, prefix string) (map[string]int, error) {
	out := map[string]int{}
	for ch, n := range f {
		if strings.HasPrefix(ch, prefix) {
			out[ch] = n
		}
	}
	return out, nil
}

type fakePresence map[string][]presence.Member

func (f fakePresence) Members(_ context.Context, _ tenant.ID, ch string) ([]presence.Member, error) {
	return f[ch], nil
}

func (f fakePresence) UserCounts(_ context.Context, _ tenant.ID, prefix string) (map[string]int, error) {
	out := map[string]int{}
	for ch, ms := range f {
		if strings.HasPrefix(ch, prefix) {
			out[ch] = len(ms)
		}
	}
	return out, nil
}

func newAPIEnv(t *testing.T) *apiEnv {
	t.Helper()
	ctx := t.Context()
	pool := pgtest.NewDB(t)
	sealer, err := auth.NewSealer("a master secret of at least 32 characters")
	if err != nil {
		t.Fatal(err)
	}
	signing := auth.NewSigningKeys(pool, sealer)
	e := &apiEnv{t: t, pool: pool, now: time.Unix(1700000000, 0), logs: &strings.Builder{},
		counts: fakeCounts{}, presence: fakePresence{}}
	for _, p := range []struct {
		id          *tenant.ID
		kid, secret *string
	}{{&e.tid, &e.kid, &e.secret}, {&e.other, &e.oKid, new(string)}} {
		if err := pool.QueryRow(ctx, `INSERT INTO tenants (name) VALUES ('acme') RETURNING id`).Scan(p.id); err != nil {
			t.Fatal(err)
		}
		k, secret, err := signing.Create(ctx, *p.id)
		if err != nil {
			t.Fatal(err)
		}
		*p.kid, *p.secret = k.Kid, secret
	}
	pub := realtime.NewPublisher(pool, nil)
	pctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = pub.Run(pctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	shared := limit.New(pool, realtime.InstanceDead)
	// The log is written by handlers, which run on the test's goroutine.
	api := &API{
		Log:       slog.New(slog.NewTextHandler(e.logs, nil)),
		Keys:      auth.NewVerifier(signing),
		Publisher: pub,
		Limits:    realtime.NewLimits(realtime.DefaultPublishConfig, realtime.DefaultStreamConfig, 100, tenant.NewCache(tenant.NewStore(pool)), shared),
		Counts:    e.counts,
		Presence:  e.presence,
		Terminate: func(_ context.Context, tid tenant.ID, user string) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.terminated = append(e.terminated, fmt.Sprintf("%d/%s", tid, user))
			return nil
		},
		Now: func() time.Time { return e.now },
	}
	r := chi.NewRouter()
	r.Route("/apps/{appId}", api.Routes)
	e.h = r
	return e
}

// request is one API call to path, where {app} stands for the tenant id:
// signed with key and secret at the given time unless query is set, in
// which case it is sent as it is.
type request struct {
	method, path string
	params       url.Values
	body         string
	key, secret  string
	at           time.Time
	sendBody     *string // a body other than the signed one
	query        *string // a raw query instead of a signed one
}

func (e *apiEnv) do(rq request) *httptest.ResponseRecorder {
	e.t.Helper()
	if rq.key == "" {
		rq.key, rq.secret = e.kid, e.secret
	}
	if rq.at.IsZero() {
		rq.at = e.now
	}
	rq.path = strings.ReplaceAll(rq.path, "{app}", fmt.Sprint(e.tid))
	q := SignQuery(rq.key, []byte(rq.secret), rq.method, rq.path, rq.params, []byte(rq.body), rq.at)
	if rq.query != nil {
		q = *rq.query
	}
	body := rq.body
	if rq.sendBody != nil {
		body = *rq.sendBody
	}
	r := httptest.NewRequest(rq.method, rq.path+"?"+q, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func (e *apiEnv) events() int {
	return pgtest.Count(e.t, e.pool, `SELECT count(*) FROM events`)
}

func ptr[T any](v T) *T { return &v }

func triggerBody(channels []string, name, data string) string {
	b, _ := json.Marshal(map[string]any{"name": name, "data": data, "channels": channels})
	return string(b)
}

// TestAPIRefusals (issue 11, "Bad input"): each bad request gets its status
// and a plain-text line, and nothing is stored.
func TestAPIRefusals(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	manyChannels := make([]string, 101)
	for i := range manyChannels {
		manyChannels[i] = fmt.Sprintf("c%d", i)
	}
	var batch11 []map[string]string
	for i := 0; i < 11; i++ {
		batch11 = append(batch11, map[string]string{"channel": "c", "name": "e", "data": "x"})
	}
	batch11JSON, _ := json.Marshal(map[string]any{"batch": batch11})
	good := `{"name":"e","data":"x","channel":"orders"}`
	events := "/apps/{app}/events"
	tests := []struct {
		name string
		rq   request
		want int
		text string // the start of the answer
	}{
		{"wrong secret", request{method: "POST", path: events, body: good, key: e.kid, secret: "not the secret"}, 401, "Invalid signature"},
		{"601 s old", request{method: "POST", path: events, body: good, at: e.now.Add(-601 * time.Second)}, 401, "Timestamp expired"},
		{"601 s ahead", request{method: "POST", path: events, body: good, at: e.now.Add(601 * time.Second)}, 401, "Timestamp expired"},
		{"body_md5 mismatch", request{method: "POST", path: events, body: good, sendBody: ptr(`{"name":"e","data":"y","channel":"orders"}`)}, 401, "Invalid body_md5"},
		{"no signature at all", request{method: "POST", path: events, body: good, query: ptr("")}, 401, "Missing auth_key"},
		{"another tenant's app id", request{method: "POST", path: "/apps/" + fmt.Sprint(e.other) + "/events", body: good}, 401, "Unknown auth_key"},
		{"another tenant's key", request{method: "POST", path: events, body: good, key: e.oKid, secret: "whatever"}, 401, "Unknown auth_key"},
		{"unknown key", request{method: "POST", path: events, body: good, key: "sk_nope", secret: "x"}, 401, "Unknown auth_key"},
		{"app id not a number", request{method: "POST", path: "/apps/acme/events", body: good}, 401, "Unknown auth_key"},
		{"101 channels", request{method: "POST", path: events, body: triggerBody(manyChannels, "e", "x")}, 400, "Too many channels"},
		{"11 batch events", request{method: "POST", path: "/apps/{app}/batch_events", body: string(batch11JSON)}, 400, "Too many events"},
		{"data over 10 KB", request{method: "POST", path: events, body: triggerBody([]string{"c"}, "e", strings.Repeat("x", 10241))}, 413, "Request Entity Too Large"},
		{"pusher: event name", request{method: "POST", path: events, body: triggerBody([]string{"c"}, "pusher:subscribe", "x")}, 400, "Invalid event name"},
		{"pusher_internal: event name", request{method: "POST", path: events, body: triggerBody([]string{"c"}, "pusher_internal:member_added", "x")}, 400, "Invalid event name"},
		{"name over 200", request{method: "POST", path: events, body: triggerBody([]string{"c"}, strings.Repeat("n", 201), "x")}, 400, "Invalid event name"},
		{"no name", request{method: "POST", path: events, body: `{"data":"x","channel":"c"}`}, 400, "Invalid event name"},
		{"channel with ':'", request{method: "POST", path: events, body: triggerBody([]string{"ok", "user:42"}, "e", "x")}, 400, "Invalid channel name"},
		{"channel outside the rule", request{method: "POST", path: events, body: triggerBody([]string{"a b"}, "e", "x")}, 400, "Invalid channel name"},
		{"no channel", request{method: "POST", path: events, body: `{"name":"e","data":"x"}`}, 400, "Missing channel"},
		{"channel and channels", request{method: "POST", path: events, body: `{"name":"e","data":"x","channel":"a","channels":["b"]}`}, 400, "Invalid body"},
		{"no data", request{method: "POST", path: events, body: `{"name":"e","channel":"c"}`}, 400, "Missing data"},
		{"bad socket_id", request{method: "POST", path: events, body: `{"name":"e","data":"x","channel":"c","socket_id":"12.x"}`}, 400, "Invalid socket_id"},
		{"bad info", request{method: "POST", path: events, body: `{"name":"e","data":"x","channel":"c","info":"occupied"}`}, 400, "Invalid info attribute"},
		{"not JSON", request{method: "POST", path: events, body: `{"name":`}, 400, "Invalid body"},
		{"name not a string", request{method: "POST", path: events, body: `{"name":5,"data":"x","channel":"c"}`}, 400, "Invalid body"},
		{"body over 1 MiB", request{method: "POST", path: events, body: `{"name":"e","data":"` + strings.Repeat("x", 1<<20) + `","channel":"c"}`}, 413, "Request Entity Too Large"},
		{"bad event in a batch", request{method: "POST", path: "/apps/{app}/batch_events",
			body: `{"batch":[{"channel":"a","name":"e","data":"x"},{"channel":"private-b","name":"pusher:x","data":"x"}]}`}, 400, "batch[1]: Invalid event name"},
		{"batch event without channel", request{method: "POST", path: "/apps/{app}/batch_events", body: `{"batch":[{"name":"e","data":"x"}]}`}, 400, "batch[0]: Missing channel"},
		{"empty batch", request{method: "POST", path: "/apps/{app}/batch_events", body: `{"batch":[]}`}, 400, "Missing batch"},
		{"user_count without presence prefix", request{method: "GET", path: "/apps/{app}/channels", params: url.Values{"info": {"user_count"}}}, 400, "info=user_count"},
		{"bad prefix", request{method: "GET", path: "/apps/{app}/channels", params: url.Values{"filter_by_prefix": {"a/b"}}}, 400, "Invalid filter_by_prefix"},
		{"user_count of a non-presence channel", request{method: "GET", path: "/apps/{app}/channels/news", params: url.Values{"info": {"user_count"}}}, 400, "info=user_count"},
		{"channel info with ':'", request{method: "GET", path: "/apps/{app}/channels/user:1"}, 400, "Invalid channel name"},
		{"users of a non-presence channel", request{method: "GET", path: "/apps/{app}/channels/private-x/users"}, 400, "Users can only be listed"},
		{"terminate a bad user id", request{method: "POST", path: "/apps/{app}/users/a%20b/terminate_connections", body: `{}`}, 400, "Invalid user id"},
		{"unknown endpoint", request{method: "POST", path: "/apps/{app}/nothing", body: `{}`}, 404, "Not found"},
		{"wrong method", request{method: "GET", path: events}, 405, "Method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.events()
			w := e.do(tt.rq)
			if w.Code != tt.want || !strings.HasPrefix(w.Body.String(), tt.text) {
				t.Errorf("%s %s = %d %q, want %d %q…", tt.rq.method, tt.rq.path, w.Code, w.Body.String(), tt.want, tt.text)
			}
			if ct := w.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type = %q, want text/plain", ct)
			}
			if strings.Count(strings.TrimSuffix(w.Body.String(), "\n"), "\n") > 0 {
				t.Errorf("answer %q is more than one line", w.Body.String())
			}
			if strings.Contains(w.Body.String(), e.secret) {
				t.Errorf("answer %q reveals the secret", w.Body.String())
			}
			if after := e.events(); after != before {
				t.Errorf("events stored: %d before, %d after, want none", before, after)
			}
		})
	}
	if strings.Contains(e.logs.String(), e.secret) || strings.Contains(e.logs.String(), "auth_signature") {
		t.Errorf("logs hold a secret or a signature: %s", e.logs.String())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.terminated) != 0 {
		t.Errorf("terminated %v after refused requests", e.terminated)
	}
}

// TestAPIInvalidSignatureHint: a wrong signature's answer names the string
// to sign, as Pusher's does, and never the signature expected.
func TestAPIInvalidSignatureHint(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	body := `{"name":"e","data":"x","channel":"orders"}`
	w := e.do(request{method: "POST", path: "/apps/{app}/events", body: body, key: e.kid, secret: "wrong"})
	path := fmt.Sprintf("/apps/%d/events", e.tid)
	right, _ := url.ParseQuery(SignQuery(e.kid, []byte(e.secret), "POST", path, nil, []byte(body), e.now))
	wantStart := `Invalid signature: you should have sent HmacSHA256Hex("POST\n` + path + `\nauth_key=` + e.kid + `&auth_timestamp=1700000000&auth_version=1.0&body_md5=`
	if w.Code != 401 || !strings.HasPrefix(w.Body.String(), wantStart) || !strings.Contains(w.Body.String(), `", your_secret)`) {
		t.Errorf("answer = %d %q, want 401 starting %q", w.Code, w.Body.String(), wantStart)
	}
	if strings.Contains(w.Body.String(), right.Get("auth_signature")) {
		t.Errorf("answer %q holds the expected signature", w.Body.String())
	}
}

// storedEvent is an events row; Origin is "NULL" for none.
type storedEvent struct {
	Channel, Type, Data, Origin string
}

func (e *apiEnv) stored() []storedEvent {
	e.t.Helper()
	rows, err := e.pool.Query(e.t.Context(), `SELECT channel, type, data::text, coalesce(origin, 'NULL') FROM events WHERE tenant_id = $1 ORDER BY id`, e.tid)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []storedEvent
	for rows.Next() {
		var s storedEvent
		if err := rows.Scan(&s.Channel, &s.Type, &s.Data, &s.Origin); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func TestAPITrigger(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	tests := []struct {
		name, body, want string
		stored           []storedEvent
	}{
		{"one channel, string data", `{"name":"greet","data":"hello","channel":"orders"}`, `{}`,
			[]storedEvent{{"orders", "greet", `"hello"`, "NULL"}}},
		{"many channels, JSON data", `{"name":"App\\Events\\OrderShipped","data":"{\"id\": 7,\n \"ok\": true}","channels":["a","private-b","presence-c"]}`, `{}`,
			[]storedEvent{
				{"a", `App\Events\OrderShipped`, `{"id":7,"ok":true}`, "NULL"},
				{"private-b", `App\Events\OrderShipped`, `{"id":7,"ok":true}`, "NULL"},
				{"presence-c", `App\Events\OrderShipped`, `{"id":7,"ok":true}`, "NULL"},
			}},
		{"socket_id is the origin", `{"name":"e","data":"42","channel":"a","socket_id":"123.456","ignored":{"x":1}}`, `{}`,
			[]storedEvent{{"a", "e", `42`, "123.456"}}},
		{"a channel named twice is one event", `{"name":"e","data":"\"quoted\"","channels":["a","a"]}`, `{}`,
			[]storedEvent{{"a", "e", `"quoted"`, "NULL"}}},
		{"data as a JSON value", `{"name":"e","data":{"k":[1, 2]},"channel":"a"}`, `{}`,
			[]storedEvent{{"a", "e", `{"k":[1,2]}`, "NULL"}}},
		{"data of exactly 10 KB", `{"name":"e","data":"` + strings.Repeat("y", 10240) + `","channel":"a"}`, `{}`,
			[]storedEvent{{"a", "e", `"` + strings.Repeat("y", 10240) + `"`, "NULL"}}},
	}
	for _, tt := range tests {
		before := len(e.stored())
		w := e.do(request{method: "POST", path: "/apps/{app}/events", body: tt.body})
		if w.Code != 200 || strings.TrimSpace(w.Body.String()) != tt.want || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: POST events = %d %q, want 200 %s", tt.name, w.Code, w.Body.String(), tt.want)
			continue
		}
		got := e.stored()[before:]
		if !reflect.DeepEqual(got, tt.stored) {
			t.Errorf("%s: stored events %+v, want %+v", tt.name, got, tt.stored)
		}
	}
	if n := pgtest.Count(t, e.pool, `SELECT count(*) FROM events WHERE tenant_id = $1`, e.other); n != 0 {
		t.Errorf("the other tenant has %d events, want 0", n)
	}
}

func TestAPITriggerInfo(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	e.counts["presence-room"] = 3
	e.counts["news"] = 5
	e.presence["presence-room"] = []presence.Member{{UserID: "1"}, {UserID: "2"}}

	w := e.do(request{method: "POST", path: "/apps/{app}/events",
		body: `{"name":"e","data":"x","channels":["presence-room","news","empty"],"info":"subscription_count,user_count"}`})
	want := `{"channels":{"empty":{"subscription_count":0},"news":{"subscription_count":5},"presence-room":{"user_count":2,"subscription_count":3}}}`
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != want {
		t.Errorf("POST events with info = %d %s, want 200 %s", w.Code, w.Body.String(), want)
	}
	w = e.do(request{method: "POST", path: "/apps/{app}/events", body: `{"name":"e","data":"x","channel":"presence-room","info":"user_count"}`})
	if want := `{"channels":{"presence-room":{"user_count":2}}}`; w.Code != 200 || strings.TrimSpace(w.Body.String()) != want {
		t.Errorf("POST events with info=user_count = %d %s, want 200 %s", w.Code, w.Body.String(), want)
	}

	w = e.do(request{method: "POST", path: "/apps/{app}/batch_events", body: `{"batch":[
		{"channel":"news","name":"a","data":"1","info":"subscription_count"},
		{"channel":"presence-room","name":"b","data":"2","socket_id":"1.2","info":"user_count,subscription_count"},
		{"channel":"other","name":"c","data":"3"}]}`})
	want = `{"batch":[{"subscription_count":5},{"user_count":2,"subscription_count":3},{}]}`
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != want {
		t.Errorf("POST batch_events with info = %d %s, want 200 %s", w.Code, w.Body.String(), want)
	}
	got := e.stored()[4:]
	wantStored := []storedEvent{{"news", "a", "1", "NULL"}, {"presence-room", "b", "2", "1.2"}, {"other", "c", "3", "NULL"}}
	if !reflect.DeepEqual(got, wantStored) {
		t.Errorf("batch stored %+v, want %+v", got, wantStored)
	}
	w = e.do(request{method: "POST", path: "/apps/{app}/batch_events", body: `{"batch":[{"channel":"news","name":"a","data":"1"}]}`})
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{}` {
		t.Errorf("POST batch_events = %d %s, want 200 {}", w.Code, w.Body.String())
	}
}

func TestAPIQueries(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	e.counts["presence-room"] = 3
	e.counts["presence-lobby"] = 1
	e.counts["news"] = 5
	e.counts["user:42"] = 1      // hybridrt's own: never listed
	e.counts["private-gone"] = 0 // no longer occupied
	e.presence["presence-room"] = []presence.Member{{UserID: "1"}, {UserID: "2", Info: []byte(`{"name":"Ada"}`)}}
	e.presence["presence-lobby"] = []presence.Member{{UserID: "9"}}

	tests := []struct {
		name, path string
		params     url.Values
		want       string
	}{
		{"all channels", "/apps/{app}/channels", nil,
			`{"channels":{"news":{},"presence-lobby":{},"presence-room":{}}}`},
		{"by prefix with user_count", "/apps/{app}/channels", url.Values{"filter_by_prefix": {"presence-"}, "info": {"user_count"}},
			`{"channels":{"presence-lobby":{"user_count":1},"presence-room":{"user_count":2}}}`},
		{"by prefix", "/apps/{app}/channels", url.Values{"filter_by_prefix": {"ne"}}, `{"channels":{"news":{}}}`},
		{"no match", "/apps/{app}/channels", url.Values{"filter_by_prefix": {"zz"}}, `{"channels":{}}`},
		{"one channel", "/apps/{app}/channels/news", nil, `{"occupied":true}`},
		{"one channel with counts", "/apps/{app}/channels/presence-room", url.Values{"info": {"user_count,subscription_count"}},
			`{"occupied":true,"user_count":2,"subscription_count":3}`},
		{"cache is accepted", "/apps/{app}/channels/cache-x", url.Values{"info": {"subscription_count,cache"}},
			`{"occupied":false,"subscription_count":0}`},
		{"unoccupied", "/apps/{app}/channels/private-gone", nil, `{"occupied":false}`},
		{"users", "/apps/{app}/channels/presence-room/users", nil, `{"users":[{"id":"1"},{"id":"2"}]}`},
		{"no users", "/apps/{app}/channels/presence-empty/users", nil, `{"users":[]}`},
	}
	for _, tt := range tests {
		w := e.do(request{method: "GET", path: tt.path, params: tt.params})
		if w.Code != 200 || strings.TrimSpace(w.Body.String()) != tt.want {
			t.Errorf("%s: GET %s?%s = %d %s, want 200 %s", tt.name, tt.path, tt.params.Encode(), w.Code, w.Body.String(), tt.want)
		}
	}
}

func TestAPITerminate(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	w := e.do(request{method: "POST", path: "/apps/{app}/users/user-7/terminate_connections", body: `{}`})
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{}` {
		t.Errorf("terminate_connections = %d %s, want 200 {}", w.Code, w.Body.String())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if want := []string{fmt.Sprintf("%d/user-7", e.tid)}; !reflect.DeepEqual(e.terminated, want) {
		t.Errorf("terminated %v, want %v", e.terminated, want)
	}
}

// TestAPIRate: a tenant over its publish rate gets 429 with Retry-After,
// and nothing of the refused request is stored.
func TestAPIRate(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	if err := tenant.NewStore(e.pool).SetQuotas(t.Context(), e.tid, tenant.Quotas{PublishRate: ptr(1)}); err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	for i := 0; i < 3; i++ {
		w := e.do(request{method: "POST", path: "/apps/{app}/events", body: `{"name":"e","data":"x","channel":"a"}`})
		codes[w.Code]++
		if w.Code == 429 && (w.Header().Get("Retry-After") == "" || !strings.HasPrefix(w.Body.String(), "Too Many Requests: ")) {
			t.Errorf("429 answer %v %q lacks Retry-After or its text", w.Header(), w.Body.String())
		}
	}
	if codes[429] == 0 || codes[200]+codes[429] != 3 {
		t.Errorf("codes %v, want some 429 among 200s", codes)
	}
	if n := e.events(); n != codes[200] {
		t.Errorf("%d events stored, want %d (one per accepted request)", n, codes[200])
	}
}

// TestAPINodeLibraryQuery: a query exactly as pusher-http-node builds it
// (values unescaped, a comma in info) verifies.
func TestAPINodeLibraryQuery(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t)
	e.counts["presence-room"] = 2
	path := fmt.Sprintf("/apps/%d/channels/presence-room", e.tid)
	ts := fmt.Sprint(e.now.Unix())
	// The library's string: sorted keys, raw values, then the signature.
	unsigned := "auth_key=" + e.kid + "&auth_timestamp=" + ts + "&auth_version=1.0&info=user_count,subscription_count"
	sig := hexHMAC(e.secret, "GET\n"+path+"\n"+unsigned)
	w := e.do(request{method: "GET", path: path, query: ptr(unsigned + "&auth_signature=" + sig)})
	if want := `{"occupied":true,"user_count":0,"subscription_count":2}`; w.Code != 200 || strings.TrimSpace(w.Body.String()) != want {
		t.Errorf("GET %s = %d %s, want 200 %s", path, w.Code, w.Body.String(), want)
	}
}

func hexHMAC(secret, s string) string {
	return fmt.Sprintf("%x", hmacSHA256([]byte(secret), s))
}
