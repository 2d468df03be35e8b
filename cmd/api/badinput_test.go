package main

// Bad inputs per endpoint (TESTPLAN section 2, parts A–E): the rows that the
// older tables in api_test.go, publish_test.go, subscribe_auth_test.go and
// console_test.go do not cover. Every row expects a 4xx problem with a
// stable code, nothing stored or delivered, no secret in the logs, and a
// server that keeps serving.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
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

func base64RawURL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rawHS256 signs header and payload, given as exact JSON text, with HS256.
func rawHS256(header, payload, secret string) string {
	return rawHMAC(sha256.New, header, payload, secret)
}

func rawHMAC(h func() hash.Hash, header, payload, secret string) string {
	signing := b64raw(header) + "." + b64raw(payload)
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(signing))
	return signing + "." + base64RawURL(m.Sum(nil))
}

// rawHS signs with another HMAC algorithm, naming it in the header.
func rawHS(t *testing.T, alg, kid, payload, secret string) string {
	t.Helper()
	switch alg {
	case "HS384":
		return rawHMAC(sha512.New384, `{"alg":"HS384","kid":"`+kid+`"}`, payload, secret)
	case "HS512":
		return rawHMAC(sha512.New, `{"alg":"HS512","kid":"`+kid+`"}`, payload, secret)
	}
	t.Fatalf("rawHS: %s", alg)
	return ""
}

func testRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func publicKeyPEM(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// signRS256 signs payload with k as RS256, under our kid.
func signRS256(t *testing.T, k *rsa.PrivateKey, kid, payload string) string {
	t.Helper()
	var claims jwt.MapClaims
	if err := json.Unmarshal([]byte(payload), &claims); err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// httptestServer starts h on a local listener for the test and returns its URL.
func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	z.Write([]byte(s))
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestJWTRowsOnEveryTransport (TESTPLAN 2A, subscriber JWTs): the token
// rows that TestSubscribeAuthMatrix does not have, each refused with the
// same 401 invalid_token on SSE, polling and tickets; key-fetching headers
// fetch nothing; duplicate claims are read one way (the last, as
// encoding/json and RFC 7519 §4 allow) for both the decision and the
// connection list.
func TestJWTRowsOnEveryTransport(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	kid, secret := acme.SigningKey.Kid, acme.SigningKey.Secret
	now := time.Now()
	iat, exp := strconv.FormatInt(now.Unix(), 10), strconv.FormatInt(now.Add(time.Hour).Unix(), 10)
	hdr := `{"alg":"HS256","typ":"JWT","kid":"` + kid + `"}`
	payload := `{"sub":"u1","iat":` + iat + `,"exp":` + exp + `}`
	good := rawHS256(hdr, payload, secret)
	parts := strings.Split(good, ".")

	// A server that records any request: a jku or x5u header must not make
	// the service fetch keys.
	var fetched atomic.Int64
	keySrv := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		w.Write([]byte(`{"keys":[]}`))
	}))

	rsaKey := testRSAKey(t)
	pubPEM := publicKeyPEM(t, rsaKey)
	bad := map[string]string{
		"alg NONE":                 b64raw(`{"alg":"NONE","kid":"`+kid+`"}`) + "." + parts[1] + ".",
		"alg none, no dot":         b64raw(`{"alg":"none","kid":"`+kid+`"}`) + "." + parts[1],
		"alg none with signature":  b64raw(`{"alg":"none","kid":"`+kid+`"}`) + "." + parts[1] + "." + parts[2],
		"RS256 by another key":     signRS256(t, rsaKey, kid, payload),
		"HS256 keyed with our PEM": rawHS256(hdr, payload, pubPEM),
		"HS384":                    rawHS(t, "HS384", kid, payload, secret),
		"no alg":                   rawHS256(`{"kid":"`+kid+`"}`, payload, secret),
		"non-base64url characters": parts[0] + "." + parts[1] + "+/=" + "." + parts[2],
		"empty segments":           "..",
		"empty signature":          parts[0] + "." + parts[1] + ".",
		"truncated signature":      parts[0] + "." + parts[1] + "." + parts[2][:20],
		"header null":              b64raw(`null`) + "." + parts[1] + "." + parts[2],
		"payload array":            rawHS256(hdr, `["u1"]`, secret),
		"payload not JSON":         rawHS256(hdr, `sub=u1`, secret),
		"exp negative":             rawHS256(hdr, `{"sub":"u1","exp":-1}`, secret),
		"exp as a numeric string":  rawHS256(hdr, `{"sub":"u1","exp":"`+exp+`"}`, secret),
		"nbf as a numeric string":  rawHS256(hdr, `{"sub":"u1","exp":`+exp+`,"nbf":"`+iat+`"}`, secret),
		"iat as a numeric string":  rawHS256(hdr, `{"sub":"u1","exp":`+exp+`,"iat":"`+iat+`"}`, secret),
		"exp past, as a float":     rawHS256(hdr, `{"sub":"u1","exp":`+strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)+`.5}`, secret),
		"exp as an object":         rawHS256(hdr, `{"sub":"u1","exp":{"t":1}}`, secret),
		"sub as a number":          rawHS256(hdr, `{"sub":1,"exp":`+exp+`}`, secret),
		"sub with U+202E":          rawHS256(hdr, `{"sub":"u1\u202e","exp":`+exp+`}`, secret),
		"channels as a string":     rawHS256(hdr, `{"sub":"u1","exp":`+exp+`,"channels":"team:*"}`, secret),
		"101 grants":               rawHS256(hdr, `{"sub":"u1","exp":`+exp+`,"channels":[`+strings.TrimSuffix(strings.Repeat(`"a",`, 101), ",")+`]}`, secret),
		"duplicate exp, last past": rawHS256(hdr, `{"sub":"u1","exp":`+exp+`,"exp":1}`, secret),
		"kid as a number":          rawHS256(`{"alg":"HS256","kid":5}`, payload, secret),
		"jku with an unknown kid":  rawHS256(`{"alg":"HS256","kid":"sk_0000000000000001","jku":"`+keySrv+`/jwks"}`, payload, secret),
		"x5u with an unknown kid":  rawHS256(`{"alg":"HS256","kid":"sk_0000000000000002","x5u":"`+keySrv+`/x5u"}`, payload, secret),
		"jwk with our PEM":         rawHS256(`{"alg":"HS256","jwk":{"kty":"oct","k":"`+b64raw(pubPEM)+`"}}`, payload, pubPEM),
	}
	paths := []struct{ method, path string }{
		{"GET", "/api/realtime/sse?channels=broadcast"},
		{"GET", "/api/realtime/polling?channels=broadcast&timeout=0"},
		{"POST", "/api/realtime/tickets"},
	}
	before := world(t, pool)
	for name, tok := range bad {
		for _, p := range paths {
			res := in.send(p.method, p.path, "", http.Header{"Authorization": {"Bearer " + tok}})
			what := name + ": " + p.method + " " + p.path
			if code := checkProblem(t, what, res, 401); code != "invalid_token" {
				t.Errorf("%s: code %q, want invalid_token", what, code)
			}
			if wa := res.header.Get("WWW-Authenticate"); !strings.Contains(wa, `error="invalid_token"`) {
				t.Errorf("%s: WWW-Authenticate = %q", what, wa)
			}
		}
	}
	if after := world(t, pool); after != before {
		t.Errorf("refused tokens changed the database: %s, want %s", after, before)
	}

	// jku, x5u and jwk are ignored, never fetched: with our kid and
	// signature the token is ours whatever they say.
	for _, h := range []string{`"jku":"` + keySrv + `/jwks"`, `"x5u":"` + keySrv + `/x5u"`, `"jwk":{"kty":"oct","k":"AAAA"}`} {
		tok := rawHS256(`{"alg":"HS256","kid":"`+kid+`",`+h+`}`, payload, secret)
		if res := in.do("GET", "/api/realtime/polling?channels=broadcast&timeout=0", tok, ""); res.status != 200 {
			t.Errorf("our token with %s = %d %s, want 200 (the header ignored)", h, res.status, res.body)
		}
	}
	// aud, iss and typ are not checked: the signing key alone says whose token it is.
	for _, extra := range []string{`"aud":"someone-else"`, `"aud":""`, `"aud":["a","b"]`, `"iss":"evil"`, `"typ":"id_token"`} {
		tok := rawHS256(hdr, `{"sub":"u1","iat":`+iat+`,"exp":`+exp+`,`+extra+`}`, secret)
		if res := in.do("GET", "/api/realtime/polling?channels=broadcast&timeout=0", tok, ""); res.status != 200 {
			t.Errorf("token with %s = %d %s, want 200", extra, res.status, res.body)
		}
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("the service made %d requests to the URLs in jku/x5u headers, want none", n)
	}

	// Duplicate claims: the last "sub" is the subject, for the decision and
	// for the connection list alike.
	dup := rawHS256(hdr, `{"sub":"u1","sub":"u2","iat":`+iat+`,"exp":`+exp+`}`, secret)
	if _, res := in.trySubscribe(acme.Tenant.ID, "u2", nil, []string{"user:u1"}, subscribeOpts{token: dup}); res.status != 403 || problemCode(res) != "insufficient_scope" {
		t.Errorf("duplicate sub u1,u2 on user:u1 = %d %s, want 403 insufficient_scope", res.status, res.body)
	}
	s := in.subscribe(acme.Tenant.ID, "u2", nil, []string{"user:u2"}, subscribeOpts{token: dup})
	s.connID()
	var conns struct{ Connections []struct{ User string } }
	for deadline := time.Now().Add(10 * time.Second); len(conns.Connections) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		in.do("GET", "/v1/connections", acme.APIKey, "").json(t, &conns)
	}
	if len(conns.Connections) != 1 || conns.Connections[0].User != "u2" {
		t.Errorf("connections of the duplicate-sub token = %+v, want one of user u2", conns.Connections)
	}

	// Right token, another user's channel: 403 insufficient_scope on every
	// transport, and u2's events never reach u1.
	u1 := rawHS256(hdr, payload, secret)
	for _, p := range []string{"/api/realtime/sse?channels=user:u2", "/api/realtime/polling?channels=user:u2&timeout=0", "/api/realtime/polling?channels=broadcast,user:u2&timeout=0"} {
		res := in.send("GET", p, "", http.Header{"Authorization": {"Bearer " + u1}})
		if code := checkProblem(t, "u1 on "+p, res, 403); code != "insufficient_scope" {
			t.Errorf("u1 on %s: code %q, want insufficient_scope", p, code)
		}
	}
	mine := in.subscribe(acme.Tenant.ID, "u1", nil, []string{"user:u1", "broadcast"}, subscribeOpts{token: u1})
	mine.connID()
	pub := in.publisher(acme)
	pub.events(`{"channel":"user:u2","type":"private","data":"for u2 only"}`)
	ids := pub.events(`{"channel":"user:u1","type":"mine"}`)
	if got := mine.collect(1, 5*time.Second); got[0].ID != ids[0] {
		t.Errorf("u1 got %+v, want its own event %s", got[0], ids[0])
	}
	mine.quiet(200 * time.Millisecond)
}

func b64raw(s string) string { return base64RawURL([]byte(s)) }

// TestPublishBodies (TESTPLAN 2B): publish bodies that are not one clean
// JSON object of the right shape get a 4xx problem quickly and store
// nothing; a body far over the limit is cut off with 413 and the
// connection closed.
func TestPublishBodies(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	key := acme.APIKey
	p.events(`{"channel":"broadcast","type":"seed"}`)

	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	json1 := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + key}}
	with := func(kv ...string) http.Header {
		h := json1.Clone()
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = []string{kv[i+1]}
		}
		return h
	}
	ok := `{"channel":"a","type":"t"}`
	cases := []struct {
		name   string
		body   string
		header http.Header
		status int
		code   string
	}{
		{"malformed", `{"channel":`, json1, 400, "invalid_json"},
		{"truncated", `{"channel":"a","type":"t"`, json1, 400, "invalid_json"},
		{"empty", ``, json1, 400, "invalid_json"},
		{"white space only", " \n\t ", json1, 400, "invalid_json"},
		{"null", `null`, json1, 400, "invalid_json"},
		{"an array", `[` + ok + `]`, json1, 400, "invalid_json"},
		{"a string", `"` + ok + `"`, json1, 400, "invalid_json"},
		{"two objects", ok + ok, json1, 400, "invalid_json"},
		{"trailing garbage", ok + ` garbage`, json1, 400, "invalid_json"},
		{"trailing comma", `{"channel":"a","type":"t",}`, json1, 400, "invalid_json"},
		{"channel a number", `{"channel":1,"type":"t"}`, json1, 400, "invalid_json"},
		{"channels a string", `{"channels":"a","type":"t"}`, json1, 400, "invalid_json"},
		{"events an object", `{"events":{"channel":"a","type":"t"}}`, json1, 400, "invalid_json"},
		{"tenant_id in body", `{"channel":"a","type":"t","tenant_id":"2"}`, json1, 400, "invalid_json"},
		{"tenant in body", `{"channel":"a","type":"t","tenant":"2"}`, json1, 400, "invalid_json"},
		{"id in body", `{"channel":"a","type":"t","id":"999999"}`, json1, 400, "invalid_json"},
		{"retry in body", `{"channel":"a","type":"t","retry":"1"}`, json1, 400, "invalid_json"},
		{"time in body", `{"channel":"a","type":"t","time":"2000-01-01T00:00:00Z"}`, json1, 400, "invalid_json"},
		{"tenant in a batch event", `{"events":[{"channel":"a","type":"t","tenantId":"2"}]}`, json1, 400, "invalid_json"},
		{"invalid UTF-8 in channel", "{\"channel\":\"a\xff\",\"type\":\"t\"}", json1, 400, "invalid_json"},
		{"invalid UTF-8 in data", "{\"channel\":\"a\",\"type\":\"t\",\"data\":\"\xc3\x28\"}", json1, 400, "invalid_json"},
		{"overlong UTF-8 slash", "{\"channel\":\"a\xc0\xaf\",\"type\":\"t\"}", json1, 400, "invalid_json"},
		{"data nested 10,000 deep", `{"channel":"a","type":"t","data":` + deep(10000) + `}`, json1, 400, "invalid_json"},
		{"body nested 10,000 deep", deep(10000), json1, 400, "invalid_json"},
		{"data nested 100,000 deep", `{"channel":"a","type":"t","data":` + deep(100000) + `}`, json1, 400, "invalid_json"},
		{"number of a million digits", `{"channel":"a","type":"t","data":1` + strings.Repeat("0", 1e6) + `}`, json1, 413, "event_too_large"},
		{"data of a million-digit number in a string", `{"channel":"a","type":"t","data":"` + strings.Repeat("9", 1e6) + `"}`, json1, 413, "event_too_large"},
		{"no content type", ok, http.Header{"Authorization": {"Bearer " + key}}, 415, "unsupported_media_type"},
		{"text/plain", ok, with("Content-Type", "text/plain"), 415, "unsupported_media_type"},
		{"form", ok, with("Content-Type", "application/x-www-form-urlencoded"), 415, "unsupported_media_type"},
		{"malformed content type", ok, with("Content-Type", "application/json; charset"), 415, "unsupported_media_type"},
		{"gzip content encoding", gzipped(t, ok), with("Content-Encoding", "gzip"), 415, "unsupported_content_encoding"},
		{"deflate content encoding", ok, with("Content-Encoding", "deflate"), 415, "unsupported_content_encoding"},
		{"empty idempotency key", ok, with("Idempotency-Key", ""), 400, "invalid_idempotency_key"},
		{"space idempotency key", ok, with("Idempotency-Key", "a b"), 400, "invalid_idempotency_key"},
		{"idempotency key of 256", ok, with("Idempotency-Key", strings.Repeat("k", 256)), 400, "invalid_idempotency_key"},
		{"idempotency key with é", ok, with("Idempotency-Key", "cl\u00e9"), 400, "invalid_idempotency_key"},
	}
	head := p.head()
	for _, c := range cases {
		start := time.Now()
		res := in.send("POST", "/v1/events", c.body, c.header)
		if code := checkProblem(t, c.name, res, c.status); code != c.code {
			t.Errorf("%s: code %q, want %q", c.name, code, c.code)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s took %v, want well under 10 s", c.name, d)
		}
		if h := p.head(); h != head {
			t.Fatalf("%s published something: head %d, want %d", c.name, h, head)
		}
	}

	// Accepted variants: the charset parameter, identity coding, a 255-byte
	// idempotency key, and a duplicate key, where the last value wins as in
	// every JSON decoder of encoding/json's family (documented in the API).
	for _, c := range []struct {
		name   string
		body   string
		header http.Header
	}{
		{"charset", ok, with("Content-Type", "application/json; charset=utf-8")},
		{"identity coding", ok, with("Content-Encoding", "identity")},
		{"255-byte idempotency key", ok, with("Idempotency-Key", strings.Repeat("k", 255))},
		{"duplicate channel", `{"channel":"first","channel":"last","type":"dup"}`, json1},
	} {
		if res := in.send("POST", "/v1/events", c.body, c.header); res.status != 201 {
			t.Errorf("%s = %d %s, want 201", c.name, res.status, res.body)
		}
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events WHERE type = 'dup' AND channel = 'last'`); n != 1 {
		t.Errorf("duplicate channel keys stored %d events on the last channel, want 1", n)
	}

	// 10 MB: 413 once the limit is read, and the server hangs up rather
	// than read the rest.
	head = p.head()
	const size = 10 << 20
	body := io.MultiReader(strings.NewReader(`{"channel":"a","type":"t","data":"`), io.LimitReader(neverEnding('x'), size), strings.NewReader(`"}`))
	res, b := rawHTTP(t, in.url, "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+key+
		"\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(size+36)+"\r\n\r\n", body)
	if res.StatusCode != 413 || !strings.Contains(string(b), "body_too_large") {
		t.Errorf("10 MB body = %d %s, want 413 body_too_large", res.StatusCode, b)
	}
	if !res.Close {
		t.Errorf("10 MB body: the server keeps the connection, want Connection: close")
	}
	if h := p.head(); h != head {
		t.Errorf("the 10 MB body published something")
	}
	if res := in.do("GET", "/v1/head", key, ""); res.status != 200 {
		t.Errorf("the server stopped serving: %d", res.status)
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// hostileChannels are TESTPLAN 2B's channel-name rows: each must be refused
// as it is, never normalised into another name.
var hostileChannels = map[string]string{
	"empty": "", "leading space": " a", "trailing space": "a ", "201 characters": strings.Repeat("c", 201),
	"encoded slash": "a%2Fb", "slash": "t/B/x", "star": "*", "hash": "#", "dollar": "$sys", "question": "?",
	"backslash": `a\b`, "NUL": "a\x00", "CR": "a\r", "LF": "a\nb", "TAB": "a\tb", "Cyrillic a": "\u0430dmin",
	"NFC é": "caf\u00e9", "NFD é": "cafe\u0301", "U+202E": "a\u202eb", "U+200B": "a\u200bb", "U+FEFF": "\ufeffa",
	"emoji": "a\U0001F600", "pattern": "team:*", "quote": `a"b`, "angle": "<script>",
}

// TestChannelNamesEverywhere (TESTPLAN 2B, channel names): every hostile
// name is a 400 invalid_channel on publish, subscribe, poll and history,
// and names differ by case: nothing is normalised.
func TestChannelNamesEverywhere(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	p.events(`{"channel":"broadcast","type":"seed"}`)
	tok := p.token("u1", []string{"orders"}, 600)
	head := p.head()
	jsonName := func(name string) string {
		b, _ := json.Marshal(name)
		return string(b)
	}
	check := func(what string, res response, codes ...string) {
		t.Helper()
		checkProblem(t, what, res, 400)
		code := problemCode(res)
		for _, c := range codes {
			if code == c {
				return
			}
		}
		t.Errorf("%s: code %q, want one of %v", what, code, codes)
	}
	for name, ch := range hostileChannels {
		check("publish "+name, in.do("POST", "/v1/events", acme.APIKey, `{"channel":`+jsonName(ch)+`,"type":"t"}`), "invalid_channel", "invalid_event")
		check("publish channels "+name, in.do("POST", "/v1/events", acme.APIKey, `{"channels":["ok",`+jsonName(ch)+`],"type":"t"}`), "invalid_channel")
		check("notify "+name, in.do("POST", "/v1/notifications", acme.APIKey, `{"title":"x","userIds":[`+jsonName(ch)+`]}`), "invalid_user_id", "invalid_channel")
		q := url.QueryEscape(ch)
		if ch != "" {
			check("history "+name, in.do("GET", "/v1/events?channel="+q, acme.APIKey, ""), "invalid_channel")
		}
		check("sse "+name, in.send("GET", "/api/realtime/sse?channels="+q, "", http.Header{"Authorization": {"Bearer " + tok}}), "invalid_channel", "missing_channels")
		check("poll "+name, in.do("GET", "/api/realtime/polling?timeout=0&channels="+q, tok, ""), "invalid_channel", "missing_channels")
		if name != "pattern" { // a prefix pattern is a valid grant
			check("token grant "+name, in.do("POST", "/v1/tokens", acme.APIKey, `{"sub":"u1","channels":[`+jsonName(ch)+`]}`), "invalid_channel")
		}
	}
	// A lone surrogate: in JSON as an escape (decoded to U+FFFD), in a URL
	// as its CESU-8 bytes.
	check("publish \\ud800", in.do("POST", "/v1/events", acme.APIKey, `{"channel":"a\ud800","type":"t"}`), "invalid_channel")
	check("sse \\ud800", in.send("GET", "/api/realtime/sse?channels=a%ED%A0%80", "", http.Header{"Authorization": {"Bearer " + tok}}), "invalid_channel")
	check("poll \\ud800", in.do("GET", "/api/realtime/polling?timeout=0&channels=a%ED%A0%80", tok, ""), "invalid_channel")
	if h := p.head(); h != head {
		t.Fatalf("hostile channel names published something: head %d, want %d", h, head)
	}

	// Case matters: Orders is not orders, and user:U1 is not u1's.
	s := in.subscribe(acme.Tenant.ID, "u1", []string{"orders"}, []string{"orders"}, subscribeOpts{token: tok})
	s.connID()
	p.events(`{"channel":"Orders","type":"other-case"}`)
	ids := p.events(`{"channel":"orders","type":"same-case"}`)
	if got := s.collect(1, 5*time.Second); got[0].ID != ids[0] {
		t.Errorf("subscriber of orders got %+v, want %s", got[0], ids[0])
	}
	s.quiet(200 * time.Millisecond)
	if res := in.do("GET", "/api/realtime/polling?timeout=0&channels=user:U1", tok, ""); res.status != 403 {
		t.Errorf("u1 on user:U1 = %d, want 403", res.status)
	}
}

// TestSubscribeParams (TESTPLAN 2C): the channel list, the resume position
// and the request shape of SSE and polling.
func TestSubscribeParams(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	ids := p.events(`{"channel":"broadcast","type":"seed"}`)
	tok := p.token("u1", []string{"team:*"}, 600)
	auth := http.Header{"Authorization": {"Bearer " + tok}}
	with := func(kv ...string) http.Header {
		h := auth.Clone()
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	var distinct, repeated strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&distinct, "&channels=team:%d", i)
		repeated.WriteString("&channels=broadcast")
	}
	kib := strings.Repeat("1", 1024)
	type call struct {
		name, method, path string
		header             http.Header
		status             int
		code               string
	}
	var calls []call
	for _, ep := range []struct{ name, path string }{{"sse", "/api/realtime/sse?x=1"}, {"poll", "/api/realtime/polling?timeout=0"}} {
		calls = append(calls,
			call{ep.name + " without channels", "GET", ep.path, auth, 400, "missing_channels"},
			call{ep.name + " with empty channels", "GET", ep.path + "&channels=", auth, 400, "invalid_channel"},
			call{ep.name + " with 1,000 channels", "GET", ep.path + distinct.String(), auth, 400, "too_many_channels"},
			call{ep.name + " with 101 channels in one parameter", "GET", ep.path + "&channels=" + manyChannels(101), auth, 400, "too_many_channels"},
			call{ep.name + " Last-Event-ID of 1 KiB", "GET", ep.path + "&channels=broadcast", with("Last-Event-ID", kib), 400, "invalid_cursor"},
			call{ep.name + " Last-Event-ID negative", "GET", ep.path + "&channels=broadcast", with("Last-Event-ID", "-5"), 400, "invalid_cursor"},
			call{ep.name + " Last-Event-ID 1e30", "GET", ep.path + "&channels=broadcast", with("Last-Event-ID", "1e30"), 400, "invalid_cursor"},
			call{ep.name + " Last-Event-ID in hex", "GET", ep.path + "&channels=broadcast", with("Last-Event-ID", "0x1"), 400, "invalid_cursor"},
			call{ep.name + " Last-Event-ID in Arabic digits", "GET", ep.path + "&channels=broadcast", with("Last-Event-ID", "\u0661"), 400, "invalid_cursor"},
			call{ep.name + " Last-Event-ID past 2^63", "GET", ep.path + "&channels=broadcast", with("Last-Event-ID", "9223372036854775808"), 400, "invalid_cursor"},
			call{ep.name + " Last-Event-ID past the head", "GET", ep.path + "&channels=broadcast", with("Last-Event-ID", "9223372036854775807"), 400, "cursor_ahead"},
			call{ep.name + " lastEventId garbage", "GET", ep.path + "&channels=broadcast&lastEventId=garbage", auth, 400, "invalid_cursor"},
			call{ep.name + " lastEventId negative", "GET", ep.path + "&channels=broadcast&lastEventId=-1", auth, 400, "invalid_cursor"},
			call{ep.name + " lastEventId 1 KiB", "GET", ep.path + "&channels=broadcast&lastEventId=" + kib, auth, 400, "invalid_cursor"},
		)
		for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
			calls = append(calls, call{ep.name + " " + m, m, ep.path + "&channels=broadcast", auth, 405, "method_not_allowed"})
		}
	}
	calls = append(calls,
		call{"poll cursor negative", "GET", "/api/realtime/polling?timeout=0&channels=broadcast&cursor=-1", auth, 400, "invalid_cursor"},
		call{"poll cursor 1e30", "GET", "/api/realtime/polling?timeout=0&channels=broadcast&cursor=1e30", auth, 400, "invalid_cursor"},
		call{"poll cursor of 1 KiB", "GET", "/api/realtime/polling?timeout=0&channels=broadcast&cursor=" + kib, auth, 400, "invalid_cursor"},
		call{"poll timeout negative", "GET", "/api/realtime/polling?timeout=-1&channels=broadcast", auth, 400, "invalid_timeout"},
		call{"poll timeout fractional", "GET", "/api/realtime/polling?timeout=1.5&channels=broadcast", auth, 400, "invalid_timeout"},
	)
	before := world(t, pool)
	for _, c := range calls {
		res := in.send(c.method, c.path, "", c.header)
		if code := checkProblem(t, c.name, res, c.status); code != c.code {
			t.Errorf("%s: code %q, want %q", c.name, code, c.code)
		}
		if c.status == 405 && res.header.Get("Allow") != "GET" {
			t.Errorf("%s: Allow = %q, want GET", c.name, res.header.Get("Allow"))
		}
	}
	if after := world(t, pool); after != before {
		t.Errorf("refused subscriptions changed the database: %s, want %s", after, before)
	}

	// The same channel named 1,000 times is one channel, not a refusal.
	if res := in.send("GET", "/api/realtime/polling?timeout=0"+repeated.String(), "", auth); res.status != 200 {
		t.Errorf("broadcast named 1,000 times = %d %s, want 200", res.status, res.body)
	}
	// The Last-Event-ID header wins over the query, even a malformed one.
	if res := in.send("GET", "/api/realtime/polling?timeout=0&channels=broadcast&cursor=garbage", "", with("Last-Event-ID", ids[0])); res.status != 200 {
		t.Errorf("poll with a good header and a bad cursor = %d %s, want 200 (the header wins)", res.status, res.body)
	}
	// Accept: application/json on the SSE route still gets the stream (the
	// route's only representation); polling answers JSON whatever Accept says.
	if res := in.send("GET", "/api/realtime/sse?channels=broadcast", "", with("Accept", "application/json")); res.status != 200 || res.header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("SSE with Accept: application/json = %d %q, want 200 text/event-stream", res.status, res.header.Get("Content-Type"))
	}
	if res := in.send("GET", "/api/realtime/polling?timeout=0&channels=broadcast", "", with("Accept", "text/event-stream")); res.status != 200 || res.header.Get("Content-Type") != "application/json" {
		t.Errorf("poll with Accept: text/event-stream = %d %q, want 200 application/json", res.status, res.header.Get("Content-Type"))
	}
}

// TestPollLimits (TESTPLAN 2C, long-poll rows): polls count against the
// tenant's connection cap, so concurrent polls past it get 429 at once;
// and a huge timeout is held for at most the 30 s maximum.
func TestPollLimits(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxConnectionsByTenant = 5
	in := newInstance(t, pgtest.NewDB(t), cfg)
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("u1", nil, 600)

	// 10 concurrent polls with one token: 5 held, 5 refused.
	results := make(chan response, 10)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { results <- in.do("GET", "/api/realtime/polling?channels=broadcast&timeout=5", tok, "") })
	}
	wg.Wait()
	close(results)
	counts := map[int]int{}
	for res := range results {
		counts[res.status]++
		if res.status == 429 {
			if code := checkProblem(t, "poll over the cap", res, 429); code != "too_many_connections" || res.header.Get("Retry-After") == "" {
				t.Errorf("poll over the cap: code %q, Retry-After %q", code, res.header.Get("Retry-After"))
			}
		}
	}
	if counts[200] != 5 || counts[429] != 5 {
		t.Errorf("10 concurrent polls at a cap of 5: %v, want 5 × 200 and 5 × 429", counts)
	}

	// timeout=999999 is clamped to 30 s: an empty answer after 30 s, not never.
	start := time.Now()
	res := in.do("GET", "/api/realtime/polling?channels=broadcast&timeout=999999", tok, "")
	held := time.Since(start)
	var out pollResult
	res.json(t, &out)
	if res.status != 200 || len(out.Events) != 0 || held < 29*time.Second || held > 45*time.Second {
		t.Errorf("poll with timeout=999999 = %d %s after %v, want an empty 200 after about 30 s", res.status, res.body, held)
	}
}

// TestSignupAbuse (TESTPLAN 2D): tenant names are not unique, so
// concurrent sign-ups with one name make distinct tenants, none failing;
// a flood of sign-ups from one address is cut off with 429.
func TestSignupAbuse(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	var wg sync.WaitGroup
	results := make(chan response, 5)
	for range 5 {
		wg.Go(func() { results <- in.do("POST", "/v1/tenants", "", `{"name":"Same Name"}`) })
	}
	wg.Wait()
	close(results)
	ids, keys := map[string]bool{}, map[string]bool{}
	for res := range results {
		var s signedUp
		if res.status != 201 {
			t.Errorf("concurrent sign-up with one name = %d %s, want 201", res.status, res.body)
			continue
		}
		res.json(t, &s)
		ids[s.Tenant.ID], keys[s.APIKey] = true, true
	}
	if len(ids) != 5 || len(keys) != 5 {
		t.Errorf("5 sign-ups made %d tenants with %d keys, want 5 and 5", len(ids), len(keys))
	}

	limited := 0
	for range 60 {
		res := in.do("POST", "/v1/tenants", "", `{"name":"Flood"}`)
		if res.status == 429 {
			limited++
			if code := checkProblem(t, "sign-up flood", res, 429); code != "signup_rate_limited" || res.header.Get("Retry-After") == "" {
				t.Errorf("sign-up flood: code %q, Retry-After %q", code, res.header.Get("Retry-After"))
			}
		}
	}
	if limited == 0 {
		t.Fatalf("60 sign-ups in a row from one address were never refused")
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM tenants WHERE name = 'Flood'`); n+limited != 60 || n > 30 {
		t.Errorf("flood: %d tenants made, %d refused; want at most 30 made and the rest refused", n, limited)
	}
}

// TestMintTokenInput (TESTPLAN 2D, POST /v1/tokens): subjects with control
// or format characters are refused, a TTL above the maximum is clamped to
// 24 h (even one that would overflow), and non-integer TTLs are refused.
func TestMintTokenInput(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	for name, body := range map[string]string{
		"sub with LF":         `{"sub":"u1\nadmin"}`,
		"sub with CR":         `{"sub":"u1\r"}`,
		"sub with TAB":        `{"sub":"u\t1"}`,
		"sub with NUL":        `{"sub":"u1\u0000"}`,
		"sub with U+202E":     `{"sub":"u1\u202e"}`,
		"sub with U+200B":     `{"sub":"u\u200b1"}`,
		"sub with U+FEFF":     `{"sub":"\ufeffu1"}`,
		"sub with a space":    `{"sub":"u 1"}`,
		"sub of 201":          `{"sub":"` + strings.Repeat("u", 201) + `"}`,
		"sub a number":        `{"sub":1}`,
		"sub invalid UTF-8":   "{\"sub\":\"u\xff\"}",
		"ttl fractional":      `{"sub":"u1","ttl":1.5}`,
		"ttl a string":        `{"sub":"u1","ttl":"3600"}`,
		"ttl 1e300":           `{"sub":"u1","ttl":1e300}`,
		"ttl negative":        `{"sub":"u1","ttl":-1}`,
		"101 grants":          `{"sub":"u1","channels":[` + strings.TrimSuffix(strings.Repeat(`"a",`, 101), ",") + `]}`,
		"grant of all":        `{"sub":"u1","channels":["*"]}`,
		"tenant in body":      `{"sub":"u1","tenantId":"1"}`,
		"expiresAt in body":   `{"sub":"u1","expiresAt":"2999-01-01T00:00:00Z"}`,
		"channels not a list": `{"sub":"u1","channels":"team:*"}`,
	} {
		res := in.do("POST", "/v1/tokens", acme.APIKey, body)
		checkProblem(t, name, res, 400)
	}
	for _, ttl := range []string{"86401", "1000000000", "10000000000", "9223372036854775807"} {
		start := time.Now()
		res := in.do("POST", "/v1/tokens", acme.APIKey, `{"sub":"u1","ttl":`+ttl+`}`)
		var out struct {
			Token     string
			ExpiresAt time.Time
		}
		res.json(t, &out)
		if res.status != 201 || out.ExpiresAt.Before(start.Add(24*time.Hour-time.Minute)) || out.ExpiresAt.After(time.Now().Add(24*time.Hour)) {
			t.Errorf("ttl %s = %d, expires %v; want 201 and 24 h from now", ttl, res.status, out.ExpiresAt)
			continue
		}
		if res := in.do("GET", "/api/realtime/polling?channels=broadcast&timeout=0", out.Token, ""); res.status != 200 {
			t.Errorf("token minted with ttl %s does not work: %d", ttl, res.status)
		}
	}
}

// TestConsoleBadInput (TESTPLAN 2E, the rows console_test.go lacks): key
// names, user agents and event data that are XSS or htmx probes render
// escaped; HEAD and GET on every route change nothing.
func TestConsoleBadInput(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	b := in.browser()
	b.login(acme.APIKey)

	probes := []string{
		`<script>alert(1)</script>`,
		`"><img src=x onerror=alert(1)>`,
		`<div hx-post="/console/keys/1/revoke" hx-trigger="load">x</div>`,
		`{{ .Secret }}`,
	}
	for _, probe := range probes {
		if code, body, _ := b.post("/console/keys", url.Values{"name": {probe}}); code != 200 || !strings.Contains(body, "secret-new-key") {
			t.Fatalf("create key named %q = %d", probe, code)
		}
		d, _ := json.Marshal(map[string]any{"channel": "broadcast", "type": "probe", "data": map[string]string{"html": probe}})
		p.events(string(d))
	}
	// A subscriber whose user agent is a probe, shown on the clients table.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", in.url+"/api/realtime/sse?channels=broadcast", nil)
	req.Header.Set("Authorization", "Bearer "+p.token("ua-prober", nil, 600))
	req.Header.Set("User-Agent", strings.Join(probes, " "))
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("probe subscriber: %v %v", res, err)
	}
	defer res.Body.Close()

	var pages map[string]string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		pages = map[string]string{}
		for _, path := range []string{"/console/keys", "/console/events", "/console/clients", "/console/clients/table", "/console/overview"} {
			_, body, _ := b.get(path)
			pages[path] = body
		}
		if strings.Contains(pages["/console/clients/table"], "ua-prober") || time.Now().After(deadline) {
			break
		}
	}
	if !strings.Contains(pages["/console/clients/table"], "ua-prober") {
		t.Fatalf("the probe subscriber never showed on the clients table")
	}
	for path, body := range pages {
		for _, probe := range probes[:3] {
			if strings.Contains(body, probe) {
				t.Errorf("GET %s renders %q unescaped", path, probe)
			}
		}
	}
	for _, want := range []string{"&lt;div hx-post=", "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;", "{{ .Secret }}"} {
		if !strings.Contains(pages["/console/keys"], want) {
			t.Errorf("the keys page lacks the escaped name %q", want)
		}
	}
	if !strings.Contains(pages["/console/clients/table"], "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the clients table does not show the probe user agent escaped")
	}

	// HEAD and GET on every route, logged in and out, change nothing but
	// the tickets that the test-subscriber page issues for itself.
	snapshot := func() string {
		return fmt.Sprint(state(t, pool), " ", pgtest.Count(t, pool, `SELECT count(*) FROM events`), " ",
			pgtest.Count(t, pool, `SELECT count(*) FROM console_sessions`))
	}
	s0 := snapshot()
	routes := []string{"/console", "/console/overview", "/console/clients", "/console/clients/table", "/console/events",
		"/console/keys", "/console/signing-keys", "/console/tokens", "/console/subscriber", "/console/login", "/console/signup",
		"/console/logout", "/console/keys/1/revoke", "/console/signing-keys/" + acme.SigningKey.Kid + "/revoke",
		"/console/events/test", "/console/operator", "/console/operator/login"}
	anon := in.browser()
	for _, path := range routes {
		for _, c := range []*browser{b, anon} {
			for _, m := range []string{"HEAD", "GET"} {
				req, _ := http.NewRequestWithContext(t.Context(), m, in.url+path, nil)
				res, err := c.c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode >= 500 {
					t.Errorf("%s %s = %d", m, path, res.StatusCode)
				}
			}
		}
	}
	if s := snapshot(); s != s0 {
		t.Errorf("HEAD and GET requests changed the database: %s → %s", s0, s)
	}
}

// TestInvalidKeyFlood (TESTPLAN 2A): an address that sends invalid API keys
// by the hundred — well formed, so each costs a lookup — has its failures
// answered with 429, while a valid key, from another address or from the
// same one, works as usual.
func TestInvalidKeyFlood(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	secretLen := len(acme.APIKey) - len("hrt_") - 12 - 1 - 6
	guess := withSecret(acme.APIKey, strings.Repeat("x", secretLen))

	var got map[int]int
	for range 150 {
		res := in.do("GET", "/v1/tenant", guess, "")
		if got == nil {
			got = map[int]int{}
		}
		got[res.status]++
		if res.status == http.StatusTooManyRequests {
			if code := checkProblem(t, "a flood of invalid keys", res, 429); code != "too_many_failed_attempts" || res.header.Get("Retry-After") == "" {
				t.Fatalf("code %q, Retry-After %q", code, res.header.Get("Retry-After"))
			}
		}
	}
	if got[401] < 100 || got[401] > 110 || got[429] < 40 {
		t.Fatalf("150 invalid keys from one address: %v; want about 100 × 401, then 429", got)
	}
	// A malformed key costs no lookup, so it is refused as ever, not counted.
	if res := in.do("GET", "/v1/tenant", "hrt_nonsense", ""); res.status != 401 {
		t.Errorf("a malformed key during the flood = %d, want 401", res.status)
	}
	// Nor is a valid key from the flooding address: only failures are refused.
	if res := in.do("POST", "/v1/events", acme.APIKey, `{"channel":"news","type":"t","data":{}}`); res.status != http.StatusCreated {
		t.Errorf("a valid key from the flooding address = %d %s, want 201", res.status, res.body)
	}

	// Another address is not locked out.
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")},
	}).DialContext}}
	req, _ := http.NewRequest("POST", in.url+"/v1/events", strings.NewReader(`{"channel":"news","type":"t","data":{}}`))
	req.Header.Set("Authorization", "Bearer "+acme.APIKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := other.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("a valid key from another address during the flood: %d, want 201", res.StatusCode)
	}
}
