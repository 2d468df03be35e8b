package main

// Bad inputs per endpoint (TESTPLAN section 2, parts A–E): the rows that the
// older tables in api_test.go, publish_test.go, subscribe_auth_test.go and
// console_test.go do not cover. Every row expects a 4xx problem with a
// stable code, nothing stored or delivered, no secret in the logs, and a
// server that keeps serving.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// send is a request with full control over its headers: no Content-Type or
// Authorization is added. A text/event-stream answer is closed after its
// headers, so a stream that should not have opened cannot hang the test.
func (in *instance) send(method, path, body string, header http.Header) response {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, in.url+path, strings.NewReader(body))
	if err != nil {
		in.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = append([]string(nil), vs...)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return response{status: res.StatusCode, header: res.Header}
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		in.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// problemCode returns res's problem code, or "" when res is not a problem.
func problemCode(res response) string {
	var p struct{ Code string }
	_ = json.Unmarshal(res.body, &p)
	return p.Code
}

// world counts what a bad request must not change: tenants, keys, signing
// keys, tickets and events.
func world(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	return state(t, pool) + " " + fmt.Sprint(
		pgtest.Count(t, pool, `SELECT count(*) FROM events`),
		pgtest.Count(t, pool, `SELECT count(*) FROM tickets`),
	)
}

// endpoint is one authenticated route, with a request that passes every
// check but the credentials.
type endpoint struct {
	method, path, body string
	cred               string // "key", "operator" or "subscriber"
}

// TestCredentialsEveryEndpoint (TESTPLAN 2A): every authenticated endpoint
// answers each malformed credential the same way — 401 with a bare
// WWW-Authenticate: Bearer when there is none, 400 invalid_request for a
// malformed header, 400 credentials_in_url for a key or token in the URL —
// changes nothing, and logs no secret. A lower-case "bearer" scheme works.
func TestCredentialsEveryEndpoint(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.OperatorToken = "operator-token-0123456789abcdef"
	in := newInstance(t, pool, cfg)
	acme := in.signup("Acme")
	p := in.publisher(acme)
	p.events(`{"channel":"broadcast","type":"seed"}`)
	tok := p.token("u1", nil, 600)
	var spare struct{ ID, APIKey string }
	in.do("POST", "/v1/keys", acme.APIKey, `{"name":"spare"}`).json(t, &spare)

	quotas := "/v1/operator/tenants/" + acme.Tenant.ID + "/quotas"
	endpoints := []endpoint{
		{"GET", "/v1/tenant", "", "key"},
		{"GET", "/v1/keys", "", "key"},
		{"POST", "/v1/keys", `{"name":"x"}`, "key"},
		{"DELETE", "/v1/keys/" + spare.ID, "", "key"},
		{"GET", "/v1/signing-keys", "", "key"},
		{"POST", "/v1/signing-keys", `{}`, "key"},
		{"DELETE", "/v1/signing-keys/" + acme.SigningKey.Kid, "", "key"},
		{"POST", "/v1/tokens", `{"sub":"u1"}`, "key"},
		{"POST", "/v1/events", `{"channel":"broadcast","type":"t"}`, "key"},
		{"GET", "/v1/events?channel=broadcast", "", "key"},
		{"POST", "/v1/notifications", `{"title":"t","userIds":["u1"]}`, "key"},
		{"POST", "/v1/dashboard", `{"type":"STATS"}`, "key"},
		{"GET", "/v1/head", "", "key"},
		{"GET", "/v1/connections", "", "key"},
		{"POST", "/api/realtime/test", `{}`, "key"},
		{"GET", quotas, "", "operator"},
		{"PUT", quotas, `{}`, "operator"},
		{"POST", "/api/realtime/tickets", "", "subscriber"},
		{"POST", "/api/realtime/connections/c_nope/token", "", "subscriber"},
		{"GET", "/api/realtime/sse?channels=broadcast", "", "subscriber"},
		{"GET", "/api/realtime/polling?channels=broadcast&timeout=0", "", "subscriber"},
	}
	secret := func(e endpoint) string {
		switch e.cred {
		case "key":
			return acme.APIKey
		case "operator":
			return cfg.OperatorToken
		}
		return tok
	}
	type variant struct {
		name   string
		auth   func(secret string) []string // Authorization values
		query  func(secret string) string   // added to the URL
		status int
		code   string // "" for any code
	}
	variants := []variant{
		{"no header", func(string) []string { return nil }, nil, 401, ""},
		{"Basic scheme", func(string) []string { return []string{"Basic dXNlcjpwYXNz"} }, nil, 400, "invalid_request"},
		{"empty Bearer", func(string) []string { return []string{"Bearer "} }, nil, 400, "invalid_request"},
		{"scheme only", func(string) []string { return []string{"Bearer"} }, nil, 400, "invalid_request"},
		{"two spaces", func(s string) []string { return []string{"Bearer  " + s} }, nil, 400, "invalid_request"},
		{"tab", func(s string) []string { return []string{"Bearer\t" + s} }, nil, 400, "invalid_request"},
		{"trailing garbage", func(s string) []string { return []string{"Bearer " + s + " x"} }, nil, 400, "invalid_request"},
		{"two headers", func(s string) []string { return []string{"Bearer " + s, "Bearer " + s} }, nil, 400, "invalid_request"},
		{"api_key in query", func(string) []string { return nil }, func(s string) string { return "api_key=" + url.QueryEscape(s) }, 400, "credentials_in_url"},
		{"access_token in query", func(string) []string { return nil }, func(s string) string { return "access_token=" + url.QueryEscape(s) }, 400, "credentials_in_url"},
		{"access_token in query beside a header", func(s string) []string { return []string{"Bearer " + s} }, func(s string) string { return "access_token=" + url.QueryEscape(s) }, 400, "credentials_in_url"},
	}

	before := world(t, pool)
	for _, e := range endpoints {
		for _, v := range variants {
			name := v.name + ": " + e.method + " " + e.path
			h := http.Header{}
			if e.body != "" {
				h.Set("Content-Type", "application/json")
			}
			s := secret(e)
			if a := v.auth(s); a != nil {
				h["Authorization"] = a
			}
			path := e.path
			if v.query != nil {
				sep := "?"
				if strings.Contains(path, "?") {
					sep = "&"
				}
				path += sep + v.query(s)
			}
			res := in.send(e.method, path, e.body, h)
			code := checkProblem(t, name, res, v.status)
			if v.code != "" && code != v.code {
				t.Errorf("%s: code %q, want %q", name, code, v.code)
			}
			wa := res.header.Get("WWW-Authenticate")
			switch {
			case !strings.HasPrefix(wa, "Bearer"):
				t.Errorf("%s: WWW-Authenticate = %q, want Bearer", name, wa)
			case v.status == 401 && strings.Contains(wa, "error="):
				// RFC 6750 §3.1: a request with no credentials gets no error code.
				t.Errorf("%s: WWW-Authenticate = %q, want no error= for a request without credentials", name, wa)
			case v.status == 400 && !strings.Contains(wa, `error="invalid_request"`):
				t.Errorf("%s: WWW-Authenticate = %q, want error=\"invalid_request\"", name, wa)
			}
			if v.code == "credentials_in_url" && !strings.Contains(string(res.body), "Authorization") {
				t.Errorf("%s: detail %s does not say to use the Authorization header", name, res.body)
			}
		}
	}
	if after := world(t, pool); after != before {
		t.Errorf("refused requests changed the database: %s, want %s", after, before)
	}

	// The scheme is case-insensitive (RFC 9110 §11.1): "bearer" gets past
	// authentication on every endpoint.
	for _, e := range endpoints {
		for _, scheme := range []string{"bearer", "BEARER"} {
			h := http.Header{"Authorization": {scheme + " " + secret(e)}}
			if e.body != "" {
				h.Set("Content-Type", "application/json")
			}
			path := e.path
			if e.method == "DELETE" && strings.HasPrefix(path, "/v1/signing-keys/") {
				path = "/v1/signing-keys/sk_0000000000000000" // a 404 past authentication, not a revoke
			}
			res := in.send(e.method, path, e.body, h)
			switch code := problemCode(res); {
			case res.status == 401, code == "invalid_request", code == "credentials_in_url":
				t.Errorf("%s %s with scheme %q = %d %s, want it accepted", e.method, path, scheme, res.status, res.body)
			case res.status >= 500:
				t.Errorf("%s %s with scheme %q = %d", e.method, path, scheme, res.status)
			}
		}
	}

	time.Sleep(50 * time.Millisecond) // let the last access-log lines land
	logs := in.logs.String()
	for _, s := range []string{acme.APIKey, acme.APIKey[17:], spare.APIKey[17:], cfg.OperatorToken, strings.Split(tok, ".")[2]} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain a secret %.12s…", s)
		}
	}
	if res := in.do("GET", "/v1/head", acme.APIKey, ""); res.status != http.StatusOK {
		t.Errorf("the server stopped serving: GET /v1/head = %d", res.status)
	}
}

// TestHeaderLimits (TESTPLAN 2A): the real server, as run() builds it,
// answers a header block well over its 8 KiB limit with 431 before any
// handler runs, refuses a 10,000-dot token with 401, and goes on serving.
func TestHeaderLimits(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL": pgtest.NewURL(t, false),
		"ADDR":         "127.0.0.1:0",
		"SECRET_KEY":   strings.Repeat("k", 32),
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, logs) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	base := "http://" + waitForListening(t, logs, done)

	get := func(path string, header ...string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	// MaxHeaderBytes is 8 KiB, and Go's server reads 4 KiB more before it
	// gives up (net/http's initialReadLimitSize), so a 10,000-dot token is
	// still read, and refused by the credential checks without parsing;
	// a 16 KiB header block never reaches a handler.
	cases := []struct {
		name   string
		path   string
		header []string
		want   int
	}{
		{"16 KiB token as API key", "/v1/head", []string{"Authorization", "Bearer " + strings.Repeat(".", 16<<10)}, 431},
		{"16 KiB token as subscriber token", "/api/realtime/polling?channels=broadcast", []string{"Authorization", "Bearer " + strings.Repeat("a", 16<<10)}, 431},
		{"16 KiB cookie", "/v1/head", []string{"Cookie", "c=" + strings.Repeat("x", 16<<10)}, 431},
		{"many small headers", "/v1/head", manyHeaders(500), 431},
		{"10,000 dots as API key", "/v1/head", []string{"Authorization", "Bearer " + strings.Repeat(".", 10000)}, 401},
		{"10,000 dots as subscriber token", "/api/realtime/polling?channels=broadcast", []string{"Authorization", "Bearer " + strings.Repeat(".", 10000)}, 401},
	}
	for _, c := range cases {
		if got := get(c.path, c.header...); got != c.want {
			t.Errorf("%s = %d, want %d", c.name, got, c.want)
		}
	}
	if got := get("/healthz"); got != http.StatusOK {
		t.Errorf("GET /healthz after oversized headers = %d, want 200", got)
	}
}

func manyHeaders(n int) []string {
	var h []string
	for i := range n {
		h = append(h, fmt.Sprintf("X-Filler-%d", i), "0123456789abcdef0123456789")
	}
	return h
}

// queryCounter is a pgx tracer that counts the statements touching tables
// whose names it was given, so a test can tell that a refusal cost no query.
type queryCounter struct {
	tables []string
	n      sync.Map // table → *atomic.Int64
}

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	for _, tbl := range q.tables {
		if strings.Contains(data.SQL, tbl) {
			c, _ := q.n.LoadOrStore(tbl, new(atomic.Int64))
			c.(*atomic.Int64).Add(1)
		}
	}
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (q *queryCounter) count(table string) int64 {
	c, ok := q.n.Load(table)
	if !ok {
		return 0
	}
	return c.(*atomic.Int64).Load()
}

// tracedDB returns a fresh database's pool whose statements q sees.
func tracedDB(t *testing.T, q *queryCounter) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.NewURL(t, true))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = q
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// withSecret returns API key key with its secret replaced and a checksum
// that matches again: a well-formed key for an existing lookup prefix.
func withSecret(key, secret string) string {
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	body := key[:len("hrt_")+12+1] + secret
	c := uint64(crc32.ChecksumIEEE([]byte(body)))
	var check [6]byte
	for i := 5; i >= 0; i-- {
		check[i] = base62[c%62]
		c /= 62
	}
	return body + string(check[:])
}

// TestCredentialsRefusedWithoutQueries (TESTPLAN 2A, API key and key
// selection rows): a key whose checksum fails, or a token whose kid is not
// of our shape, is refused without a database query; a well-formed key with
// a wrong secret costs one lookup and is refused the same way.
func TestCredentialsRefusedWithoutQueries(t *testing.T) {
	t.Parallel()
	q := &queryCounter{tables: []string{"api_keys", "signing_keys"}}
	pool := tracedDB(t, q)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	key := acme.APIKey
	good := sign(t, acme.SigningKey.Kid, acme.SigningKey.Secret, validClaims("u1"))

	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	noQuery := map[string]string{
		"checksum changed":     flip(key, len(key)-1),
		"secret changed":       flip(key, 30),
		"lookup changed":       flip(key, 8),
		"short":                key[:len(key)-1],
		"long":                 key + "A",
		"wrong scheme":         "hrx_" + key[4:],
		"10,000 dots":          strings.Repeat(".", 10000),
		"subscriber token":     good,
		"unicode in the body":  key[:20] + "é" + key[22:],
		"separator missing":    key[:16] + "A" + key[17:],
		"all zeros, shaped ok": "hrt_000000000000_" + strings.Repeat("0", 43) + "000000",
	}
	for name, bad := range noQuery {
		before := q.count("api_keys")
		res := in.do("GET", "/v1/head", bad, "")
		if code := checkProblem(t, name, res, 401); code != "invalid_api_key" {
			t.Errorf("%s: code %q, want invalid_api_key", name, code)
		}
		if n := q.count("api_keys") - before; n != 0 {
			t.Errorf("%s: %d queries on api_keys, want none (the checksum fails first)", name, n)
		}
	}
	// Well-formed: the lookup prefix exists (or not) and the secret is wrong.
	// One query at most, and the same answer as any other bad key.
	for name, bad := range map[string]string{
		"wrong secret, right lookup":    withSecret(key, strings.Repeat("Z", 43)),
		"unknown lookup, good checksum": withSecret("hrt_ZZZZZZZZZZZZ_"+key[17:], key[17:17+43]),
	} {
		before := q.count("api_keys")
		res := in.do("GET", "/v1/head", bad, "")
		if code := checkProblem(t, name, res, 401); code != "invalid_api_key" {
			t.Errorf("%s: code %q, want invalid_api_key", name, code)
		}
		if n := q.count("api_keys") - before; n > 1 {
			t.Errorf("%s: %d queries on api_keys, want at most one lookup", name, n)
		}
	}

	// Subscriber tokens: a kid not of our shape is refused before any lookup.
	for name, kid := range map[string]string{
		"no kid": "", "path kid": "../../etc/passwd", "sql kid": "' OR 1=1--", "10 KB kid": strings.Repeat("k", 10<<10),
		"kid with NUL": "sk_000000000000000\x00", "kid of a key": key,
	} {
		tok := sign(t, kid, acme.SigningKey.Secret, validClaims("u1"))
		before := q.count("signing_keys")
		res := in.do("GET", "/api/realtime/polling?channels=broadcast&timeout=0", tok, "")
		if code := checkProblem(t, name, res, 401); code != "invalid_token" {
			t.Errorf("%s: code %q, want invalid_token", name, code)
		}
		if n := q.count("signing_keys") - before; n != 0 {
			t.Errorf("%s: %d queries on signing_keys, want none", name, n)
		}
	}
	if res := in.do("GET", "/v1/head", key, ""); res.status != http.StatusOK {
		t.Errorf("the right key after the bad ones = %d, want 200", res.status)
	}
}

func validClaims(sub string) map[string]any {
	now := time.Now()
	return map[string]any{"sub": sub, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
}

// rawHTTP sends a request over a fresh TCP connection exactly as given,
// writing the body in the background, and returns the response. It does
// not care if the server closes before taking the whole body, as it should
// for a body over the limit.
func rawHTTP(t *testing.T, base, head string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	u, _ := url.Parse(base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	go io.Copy(conn, body) // errors once the server has hung up: expected
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	return res, b
}

var _ = strconv.Itoa
