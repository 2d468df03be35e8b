package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

func TestSignupAndTenant(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())

	s := in.signup("Acme <Corp>")
	if s.Tenant.ID == "" || s.Tenant.Name != "Acme <Corp>" || !strings.HasPrefix(s.APIKey, "hrt_") ||
		!strings.HasPrefix(s.SigningKey.Kid, "sk_") || !strings.HasPrefix(s.SigningKey.Secret, "hrs_") {
		t.Fatalf("sign-up response = %+v", s)
	}

	res := in.do("GET", "/v1/tenant", s.APIKey, "")
	var got struct {
		ID, Name  string
		CreatedAt time.Time
		Settings  map[string]any
	}
	res.json(t, &got)
	if res.status != 200 || got.ID != s.Tenant.ID || got.Name != s.Tenant.Name || got.CreatedAt.IsZero() || got.Settings == nil {
		t.Errorf("GET /v1/tenant = %d %s, want tenant %s", res.status, res.body, s.Tenant.ID)
	}

	// The scheme is case-insensitive (RFC 9110).
	res = in.do("GET", "/v1/tenant", "", "", "Authorization", "bearer "+s.APIKey)
	if res.status != 200 {
		t.Errorf("lower-case bearer scheme = %d, want 200", res.status)
	}

	// Each tenant sees only itself.
	other := in.signup("Other")
	res = in.do("GET", "/v1/tenant", other.APIKey, "")
	res.json(t, &got)
	if got.ID != other.Tenant.ID {
		t.Errorf("other tenant's GET /v1/tenant returned tenant %s", got.ID)
	}

	// Secrets are never logged.
	for _, secret := range []string{s.APIKey, s.SigningKey.Secret, other.APIKey, other.SigningKey.Secret} {
		if strings.Contains(in.logs.String(), secret) {
			t.Errorf("logs contain a secret %.12s…", secret)
		}
	}
}

func TestClosedSignup(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.SignupOpen = false
	cfg.OperatorToken = "operator-token-0123456789abcdef"
	in := newInstance(t, pool, cfg)

	body := `{"name":"Acme"}`
	checkProblem(t, "closed sign-up without token", in.do("POST", "/v1/tenants", "", body), 401)
	checkProblem(t, "closed sign-up with a wrong token", in.do("POST", "/v1/tenants", "operator-token-0123456789abcdeX", body), 401)
	checkProblem(t, "closed sign-up with an API-key-shaped token", in.do("POST", "/v1/tenants", "hrt_x", body), 401)
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM tenants`); n != 0 {
		t.Fatalf("refused sign-ups created %d tenants", n)
	}
	res := in.do("POST", "/v1/tenants", cfg.OperatorToken, body)
	if res.status != 201 {
		t.Fatalf("closed sign-up with the operator token = %d %s, want 201", res.status, res.body)
	}
	if strings.Contains(in.logs.String(), cfg.OperatorToken) {
		t.Errorf("logs contain the operator token")
	}
}

func TestAPIKeyLifecycle(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	s := in.signup("Acme")
	other := in.signup("Other")

	res := in.do("POST", "/v1/keys", s.APIKey, `{"name":"ci"}`)
	var created struct {
		ID, Name, Prefix, APIKey string
		CreatedAt                time.Time
		LastUsedAt               *time.Time
	}
	res.json(t, &created)
	if res.status != 201 || created.Name != "ci" || !strings.HasPrefix(created.APIKey, created.Prefix+"_") || created.CreatedAt.IsZero() {
		t.Fatalf("POST /v1/keys = %d %s", res.status, res.body)
	}
	if res := in.do("GET", "/v1/tenant", created.APIKey, ""); res.status != 200 {
		t.Fatalf("new key refused: %d", res.status)
	}

	res = in.do("GET", "/v1/keys", s.APIKey, "")
	var list struct {
		Keys []map[string]any `json:"keys"`
	}
	res.json(t, &list)
	if res.status != 200 || len(list.Keys) != 2 {
		t.Fatalf("GET /v1/keys = %d %s, want 2 keys", res.status, res.body)
	}
	for _, k := range list.Keys {
		for field := range k {
			switch field {
			case "id", "name", "prefix", "createdAt", "lastUsedAt":
			default:
				t.Errorf("GET /v1/keys shows field %q; it may show only id, name, prefix and dates", field)
			}
		}
	}
	if strings.Contains(string(res.body), created.APIKey[17:]) || strings.Contains(string(res.body), s.APIKey[17:]) {
		t.Errorf("GET /v1/keys reveals a secret")
	}

	// Revoke: another tenant's id is 404, so its existence is not revealed.
	checkProblem(t, "revoke another tenant's key", in.do("DELETE", "/v1/keys/"+created.ID, other.APIKey, ""), 404)
	checkProblem(t, "revoke a non-numeric id", in.do("DELETE", "/v1/keys/abc", s.APIKey, ""), 404)
	if res := in.do("DELETE", "/v1/keys/"+created.ID, s.APIKey, ""); res.status != 204 {
		t.Fatalf("revoke = %d %s, want 204", res.status, res.body)
	}
	if res := in.do("DELETE", "/v1/keys/"+created.ID, s.APIKey, ""); res.status != 204 {
		t.Errorf("revoke twice = %d, want 204", res.status)
	}
	checkProblem(t, "revoked key", in.do("GET", "/v1/tenant", created.APIKey, ""), 401)

	// The last active key cannot be revoked.
	var firstID string
	in.do("GET", "/v1/keys", s.APIKey, "").json(t, &list)
	firstID = list.Keys[0]["id"].(string)
	if code := checkProblem(t, "revoke the last key", in.do("DELETE", "/v1/keys/"+firstID, s.APIKey, ""), 409); code != "last_key" {
		t.Errorf("revoke the last key code = %q, want last_key", code)
	}
	if strings.Contains(in.logs.String(), created.APIKey) {
		t.Errorf("logs contain the created key")
	}
}

// TestRevokedKeyRefusedByAnotherInstance: two servers share a database; a key
// revoked through one is refused by the other within DESIGN's 5 s.
func TestRevokedKeyRefusedByAnotherInstance(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	a, b := newInstance(t, pool, testConfig()), newInstance(t, pool, testConfig())
	s := a.signup("Acme")
	var k struct{ ID, APIKey string }
	a.do("POST", "/v1/keys", s.APIKey, `{"name":"doomed"}`).json(t, &k)
	if res := b.do("GET", "/v1/tenant", k.APIKey, ""); res.status != 200 { // now cached on b
		t.Fatalf("b refused a fresh key: %d", res.status)
	}
	if res := a.do("DELETE", "/v1/keys/"+k.ID, s.APIKey, ""); res.status != 204 {
		t.Fatalf("revoke through a = %d", res.status)
	}
	revoked := time.Now()
	deadline := revoked.Add(5 * time.Second)
	for {
		res := b.do("GET", "/v1/tenant", k.APIKey, "")
		if res.status == 401 {
			t.Logf("instance b refused the key %v after revocation", time.Since(revoked).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance b still accepts a key revoked 5 s ago: %d", res.status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSigningKeyLifecycle(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	s := in.signup("Acme")
	other := in.signup("Other")

	for _, body := range []string{"", "{}"} {
		res := in.do("POST", "/v1/signing-keys", s.APIKey, body)
		var k struct{ Kid, Secret string }
		res.json(t, &k)
		if res.status != 201 || !strings.HasPrefix(k.Kid, "sk_") || !strings.HasPrefix(k.Secret, "hrs_") {
			t.Fatalf("POST /v1/signing-keys %q = %d %s", body, res.status, res.body)
		}
		if strings.Contains(in.logs.String(), k.Secret) {
			t.Errorf("logs contain a signing secret")
		}
	}
	res := in.do("GET", "/v1/signing-keys", s.APIKey, "")
	var list struct {
		SigningKeys []map[string]any `json:"signingKeys"`
	}
	res.json(t, &list)
	if len(list.SigningKeys) != 3 {
		t.Fatalf("GET /v1/signing-keys = %s, want 3 keys", res.body)
	}
	if strings.Contains(string(res.body), "secret") || strings.Contains(string(res.body), s.SigningKey.Secret) {
		t.Errorf("GET /v1/signing-keys reveals secrets: %s", res.body)
	}
	checkProblem(t, "revoke another tenant's signing key", in.do("DELETE", "/v1/signing-keys/"+s.SigningKey.Kid, other.APIKey, ""), 404)
	if res := in.do("DELETE", "/v1/signing-keys/"+s.SigningKey.Kid, s.APIKey, ""); res.status != 204 {
		t.Fatalf("revoke signing key = %d %s", res.status, res.body)
	}
	in.do("GET", "/v1/signing-keys", s.APIKey, "").json(t, &list)
	if len(list.SigningKeys) != 2 {
		t.Errorf("after revoke, %d signing keys listed, want 2", len(list.SigningKeys))
	}
	for _, k := range list.SigningKeys {
		if k["kid"] == s.SigningKey.Kid {
			t.Errorf("revoked kid still listed")
		}
	}
}

func TestUnknownRoutesAreProblems(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	checkProblem(t, "GET /nope", in.do("GET", "/nope", "", ""), 404)
	checkProblem(t, "GET /v1/nope", in.do("GET", "/v1/nope", "", ""), 404)
	res := in.do("PUT", "/v1/keys", "", "")
	checkProblem(t, "PUT /v1/keys", res, 405)
	if allow := res.header.Get("Allow"); allow != "GET, POST" {
		t.Errorf("PUT /v1/keys Allow = %q, want \"GET, POST\"", allow)
	}
	res = in.do("GET", "/v1/tenants", "", "")
	checkProblem(t, "GET /v1/tenants", res, 405)
	if allow := res.header.Get("Allow"); allow != "POST" {
		t.Errorf("GET /v1/tenants Allow = %q, want POST", allow)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	for _, path := range []string{"/healthz", "/readyz"} {
		if res := in.do("GET", path, "", ""); res.status != 200 {
			t.Errorf("GET %s = %d %s, want 200", path, res.status, res.body)
		}
	}

	// A database that does not answer: alive, but not ready.
	dead, err := pgxpool.New(t.Context(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dead.Close)
	down := startInstance(t, dead, testConfig())
	if res := down.do("GET", "/healthz", "", ""); res.status != 200 {
		t.Errorf("GET /healthz with the database down = %d, want 200", res.status)
	}
	res := down.do("GET", "/readyz", "", "")
	checkProblem(t, "GET /readyz with the database down", res, 503)
	if res.header.Get("Retry-After") == "" {
		t.Errorf("503 from /readyz has no Retry-After")
	}
}

// TestRedactedAccessLog: secrets in query strings never reach the access log.
func TestRedactedAccessLog(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	in.do("GET", "/healthz?token=eyJ.secret.jwt&ticket=tk_secret", "", "")
	logs := in.logs.String()
	if strings.Contains(logs, "eyJ.secret.jwt") || strings.Contains(logs, "tk_secret") {
		t.Errorf("access log contains query secrets: %s", logs)
	}
	if !strings.Contains(logs, "token=REDACTED") {
		t.Errorf("access log lacks the redacted URL: %s", logs)
	}
}

// state counts what the bad-input tests must not change.
func state(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	return fmt.Sprint(
		pgtest.Count(t, pool, `SELECT count(*) FROM tenants`),
		pgtest.Count(t, pool, `SELECT count(*) FROM api_keys`),
		pgtest.Count(t, pool, `SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL`),
		pgtest.Count(t, pool, `SELECT count(*) FROM signing_keys`),
		pgtest.Count(t, pool, `SELECT count(*) FROM signing_keys WHERE revoked_at IS NOT NULL`),
	)
}

// TestBadInput sends every endpoint malformed bodies and bad credentials:
// each gets a 4xx problem and changes nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	s := in.signup("Acme")
	var spare struct{ ID, APIKey string }
	in.do("POST", "/v1/keys", s.APIKey, `{"name":"spare"}`).json(t, &spare)
	var revoked struct{ ID, APIKey string }
	in.do("POST", "/v1/keys", s.APIKey, `{"name":"revoked"}`).json(t, &revoked)
	if res := in.do("DELETE", "/v1/keys/"+revoked.ID, s.APIKey, ""); res.status != 204 {
		t.Fatal("setup: revoke failed")
	}
	key := s.APIKey
	tampered := key[:len(key)-1] + string(key[len(key)-1]^1)

	type call struct {
		name         string
		method, path string
		bearer, body string
		header       []string
		want         int
	}
	var calls []call

	// Bodies, on every endpoint that reads one.
	bodies := []struct {
		name, body string
		header     []string
		want       int
	}{
		{"malformed JSON", `{"name":`, nil, 400},
		{"not JSON", `name=x`, nil, 400},
		{"empty object body", ``, []string{"Content-Type", "application/json"}, 400},
		{"null", `null`, nil, 400},
		{"array", `[{"name":"x"}]`, nil, 400},
		{"trailing data", `{"name":"x"}{"name":"y"}`, nil, 400},
		{"wrong type", `{"name":42}`, nil, 400},
		{"unknown field", `{"name":"x","tenantId":"1"}`, nil, 400},
		{"invalid UTF-8", "{\"name\":\"\xff\xfe\"}", nil, 400},
		{"oversized", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, nil, 413},
		{"form content type", `{"name":"x"}`, []string{"Content-Type", "", "Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"no content type", `{"name":"x"}`, []string{"Content-Type", ""}, 415},
		{"empty name", `{"name":"  "}`, nil, 400},
		{"long name", `{"name":"` + strings.Repeat("x", 101) + `"}`, nil, 400},
		{"control character in name", `{"name":"a\u0000b"}`, nil, 400},
	}
	for _, b := range bodies {
		calls = append(calls,
			call{"sign-up: " + b.name, "POST", "/v1/tenants", "", b.body, b.header, b.want},
			call{"create key: " + b.name, "POST", "/v1/keys", key, b.body, b.header, b.want})
	}
	calls = append(calls,
		call{"create signing key: unknown field", "POST", "/v1/signing-keys", key, `{"kid":"mine"}`, nil, 400},
		call{"create signing key: malformed", "POST", "/v1/signing-keys", key, `{`, nil, 400},
		call{"create signing key: wrong content type", "POST", "/v1/signing-keys", key, `{}`, []string{"Content-Type", "", "Content-Type", "text/plain"}, 415},
		call{"revoke key: unknown id", "DELETE", "/v1/keys/999999", key, "", nil, 404},
		call{"revoke key: huge id", "DELETE", "/v1/keys/99999999999999999999999", key, "", nil, 404},
		call{"revoke signing key: unknown kid", "DELETE", "/v1/signing-keys/sk_nope", key, "", nil, 404},
		call{"revoke signing key: injection", "DELETE", "/v1/signing-keys/'%20OR%201=1--", key, "", nil, 404},
	)

	// Credentials, on every endpoint that needs an API key.
	authed := []struct{ method, path, body string }{
		{"GET", "/v1/tenant", ""},
		{"GET", "/v1/keys", ""},
		{"POST", "/v1/keys", `{"name":"x"}`},
		{"DELETE", "/v1/keys/" + spare.ID, ""},
		{"GET", "/v1/signing-keys", ""},
		{"POST", "/v1/signing-keys", `{}`},
		{"DELETE", "/v1/signing-keys/" + s.SigningKey.Kid, ""},
	}
	creds := []struct {
		name   string
		bearer string
		header []string
		want   int
	}{
		{"no credentials", "", nil, 401},
		{"garbage bearer", "garbage", nil, 401},
		{"tampered key", tampered, nil, 401},
		{"revoked key", revoked.APIKey, nil, 401},
		{"10,000 dots", strings.Repeat(".", 7000), nil, 401},
		{"basic scheme", "", []string{"Authorization", "Basic dXNlcjpwYXNz"}, 400},
		{"empty bearer", "", []string{"Authorization", "Bearer "}, 400},
		{"two spaces", "", []string{"Authorization", "Bearer  " + key}, 400},
		{"two headers", "", []string{"Authorization", "Bearer " + key, "Authorization", "Bearer " + key}, 400},
		{"key in query", "", nil, 400},
	}
	for _, e := range authed {
		for _, c := range creds {
			path := e.path
			if c.name == "key in query" {
				path += "?api_key=" + key
			}
			calls = append(calls, call{c.name + ": " + e.method + " " + e.path, e.method, path, c.bearer, e.body, c.header, c.want})
		}
	}

	before := state(t, pool)
	for _, c := range calls {
		res := in.do(c.method, c.path, c.bearer, c.body, c.header...)
		checkProblem(t, c.name, res, c.want)
		if res.status == 401 && !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: 401 without WWW-Authenticate: Bearer", c.name)
		}
		if after := state(t, pool); after != before {
			t.Fatalf("%s changed the database: %s, want %s", c.name, after, before)
		}
	}
	if strings.Contains(in.logs.String(), key) || strings.Contains(in.logs.String(), key[17:]) {
		t.Errorf("logs contain the API key")
	}
	if res := in.do("GET", "/v1/tenant", key, ""); res.status != http.StatusOK {
		t.Errorf("the server stopped serving after bad input: %d", res.status)
	}
}
