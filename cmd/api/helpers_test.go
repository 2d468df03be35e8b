package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/hybridrt/hybridrt/internal/hybridws"
	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/pusher"
	"github.com/hybridrt/hybridrt/internal/realtime"
)

// syncBuffer is a log sink that servers and the test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig() Config {
	return Config{
		Addr:                   "127.0.0.1:0",
		PublicURL:              "http://hybridrt.test",
		SecretKey:              "test-secret-key-of-at-least-32-characters",
		LogLevel:               slog.LevelDebug,
		SignupOpen:             true,
		EventRetention:         24 * time.Hour,
		Stream:                 realtime.DefaultStreamConfig,
		Publish:                realtime.DefaultPublishConfig,
		MaxConnectionsByTenant: 10000,
		PublishRate:            5000,
		Pusher:                 pusher.DefaultConfig,
		WS:                     hybridws.DefaultConfig,
		PresenceMaxMembers:     presence.DefaultMaxMembers,
	}
}

// instance is one hybridrt server on a real TCP listener, with its logs.
type instance struct {
	t    *testing.T
	db   string // where the database is (host:port/name): tenant ids repeat across databases
	url  string
	logs *syncBuffer
	svc  *services
	srv  *httptest.Server

	mu       sync.Mutex
	hijacked []net.Conn // SSE streams' connections, which the server no longer tracks
}

// dropConnections closes every client connection to the instance, as a
// crash or a load balancer restart would: SSE streams (whose connections the
// server hijacks, so httptest's CloseClientConnections does not see them),
// long-polls and idle keep-alives.
func (in *instance) dropConnections() {
	in.srv.CloseClientConnections()
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, c := range in.hijacked {
		c.Close()
	}
	in.hijacked = nil
}

// newInstance starts a server on pool and waits until it is ready. Several
// instances on one pool are several api processes sharing one database.
func newInstance(t *testing.T, pool *pgxpool.Pool, cfg Config) *instance {
	t.Helper()
	in := startInstance(t, pool, cfg)
	in.waitReady()
	return in
}

// startInstance starts a server on pool without waiting for it to be ready.
func startInstance(t *testing.T, pool *pgxpool.Pool, cfg Config) *instance {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.DatabaseURL == "" {
		c := pool.Config().ConnConfig
		cfg.DatabaseURL = fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", c.User, c.Host, c.Port, c.Database)
	}
	svc, err := newServices(cfg, pool, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var g errgroup.Group
	svc.start(ctx, &g, log, cfg)
	srv := httptest.NewUnstartedServer(NewServer(log, cfg, svc))
	// The database's place names the ledger's tenants: tenant ids repeat
	// across databases, and a test's private cluster reuses database names.
	c := pool.Config().ConnConfig
	db := fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
	oraclesOf(t).forgetLedger(db)
	in := &instance{t: t, db: db, logs: logs, svc: svc, srv: srv}
	srv.Config.RegisterOnShutdown(svc.hub.Close)
	srv.Config.ConnState = func(c net.Conn, state http.ConnState) {
		if state == http.StateHijacked {
			in.mu.Lock()
			in.hijacked = append(in.hijacked, c)
			in.mu.Unlock()
		}
	}
	srv.Start()
	in.url = srv.URL
	oraclesOf(t).watchLogs(logs) // before the cleanup below, so O6 runs after it
	t.Cleanup(func() {
		svc.hub.Close() // end streams, or Close waits on them
		srv.Close()     // waits for every handler to return
		wctx, wcancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer wcancel()
		if err := svc.hub.WaitStreams(wctx); err != nil {
			t.Errorf("SSE streams still running 15 s after the hub closed: %v", err)
		} else if n := svc.registry.Count(); n != 0 {
			t.Errorf("O4: %d connections still registered after the instance shut down", n)
		} else if n := presenceLeft(pool, svc.registry.InstanceID()); n > 0 {
			t.Errorf("O4: %d presence members of this instance left behind after it shut down", n)
		}
		cancel()
		if err := g.Wait(); err != nil {
			t.Errorf("background services: %v", err)
		}
	})
	return in
}

// presenceLeft counts the presence members of connections an instance left
// in the database, or -1 when the database cannot say (a fault test stopped
// it). A long-poller's row (expires_at set) is not its instance's to remove:
// the poller's next poll may go to another instance and keep it, so it lives
// until its expiry whatever becomes of the instance that wrote it last.
func presenceLeft(pool *pgxpool.Pool, instanceID string) int {
	var n int
	err := pool.QueryRow(context.Background(), `SELECT count(*) FROM presence_members WHERE instance_id = $1 AND expires_at IS NULL`, instanceID).Scan(&n)
	if err != nil {
		return -1
	}
	return n
}

// loopbackClient returns an HTTP client whose connections come from the
// loopback address ip (Linux routes all of 127.0.0.0/8 to lo), so a test
// can be several clients at once.
func loopbackClient(ip string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)},
	}).DialContext}}
}

// logLines returns the instance's JSON log lines whose message is msg.
func (in *instance) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(in.logs.String(), "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) == nil && entry["msg"] == msg {
			out = append(out, entry)
		}
	}
	return out
}

// waitReady waits until the instance's listener is live, as a load balancer
// would before sending traffic.
func (in *instance) waitReady() {
	in.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !in.svc.hub.Listening() {
		if time.Now().After(deadline) {
			in.t.Fatalf("instance not ready after 10 s:\n%s", in.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the response body into v, failing the test when it cannot.
func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response %d %s is not JSON: %v", r.status, r.body, err)
	}
}

// do sends a request. bearer, when not empty, goes in Authorization; a
// non-empty body is sent as application/json unless header says otherwise.
// The response goes through the oracles: O5 for errors, and the credentials
// it hands out are registered for O6.
func (in *instance) do(method, path, bearer, body string, header ...string) response {
	in.t.Helper()
	res, err := in.tryDo(method, path, bearer, body, header...)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, path, err)
	}
	return res
}

// tryDo is do for callers that expect the network to fail (a killed
// instance): it returns the error instead of failing the test.
func (in *instance) tryDo(method, path, bearer, body string, header ...string) (response, error) {
	in.t.Helper()
	return in.tryDoVia(http.DefaultClient, method, path, bearer, body, header...)
}

// doVia is do through client c: from another source address, say.
func (in *instance) doVia(c *http.Client, method, path, bearer, body string, header ...string) response {
	in.t.Helper()
	res, err := in.tryDoVia(c, method, path, bearer, body, header...)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, path, err)
	}
	return res
}

func (in *instance) tryDoVia(c *http.Client, method, path, bearer, body string, header ...string) (response, error) {
	in.t.Helper()
	req, err := newRequest(context.Background(), method, in.url+path, bearer, body, header...)
	if err != nil {
		return response{}, err
	}
	res, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	return readChecked(oraclesOf(in.t), method+" "+path, res)
}

// newRequest builds a request as every test client sends them: bearer, when
// not empty, in Authorization; a non-empty body as application/json unless
// header says otherwise; header as name, value pairs in order: a name's
// first pair replaces what was there (an empty value removes it), and more
// pairs of that name add values (two Authorization headers, say).
func newRequest(ctx context.Context, method, url, bearer, body string, header ...string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(header); i += 2 {
		name, value := http.CanonicalHeaderKey(header[i]), header[i+1]
		switch {
		case seen[name]:
			req.Header.Add(name, value)
		case value == "":
			req.Header.Del(name)
		default:
			req.Header.Set(name, value)
		}
		seen[name] = true
	}
	return req, nil
}

// readChecked reads and closes res's body and passes the answer to the
// oracles: O5 for errors, and O6 learns the credentials it hands out.
func readChecked(o *oracleSet, what string, res *http.Response) (response, error) {
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s: reading the answer: %w", what, err)
	}
	out := response{status: res.StatusCode, header: res.Header, body: b}
	o.checkResponse(what, out)
	if res.StatusCode < 400 { // a login's 303 sets the session cookie
		o.noteSecrets(res.Header, b)
	}
	return out, nil
}

type signedUp struct {
	Tenant struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"tenant"`
	APIKey     string `json:"apiKey"`
	SigningKey struct {
		Kid    string `json:"kid"`
		Secret string `json:"secret"`
	} `json:"signingKey"`
}

func (in *instance) signup(name string) signedUp {
	in.t.Helper()
	res := in.do("POST", "/v1/tenants", "", `{"name":"`+name+`"}`)
	if res.status != http.StatusCreated {
		in.t.Fatalf("sign-up = %d %s, want 201", res.status, res.body)
	}
	var s signedUp
	res.json(in.t, &s)
	pusherTenants.Store(s.SigningKey.Kid, in.db+"/"+s.Tenant.ID)
	return s
}

// checkProblem asserts that res is an RFC 9457 problem with status want and a
// stable code, and returns the code.
func checkProblem(t *testing.T, what string, res response, want int) string {
	t.Helper()
	if res.status != want {
		t.Errorf("%s = %d %s, want %d", what, res.status, res.body, want)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s Content-Type = %q, want application/problem+json", what, ct)
	}
	var p struct {
		Type, Title, Detail, Code string
		Status                    int
	}
	if err := json.Unmarshal(res.body, &p); err != nil {
		t.Errorf("%s body %q is not JSON: %v", what, res.body, err)
		return ""
	}
	if p.Code == "" || p.Status != res.status || p.Type != "urn:hybridrt:problem:"+p.Code || p.Title == "" {
		t.Errorf("%s problem = %+v, want type, title, status %d and code", what, p, res.status)
	}
	if res.status < 500 && p.Detail == "" {
		t.Errorf("%s problem has no detail", what)
	}
	return p.Code
}
