package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// sign makes an HS256 token with the given header kid and claims.
func sign(t *testing.T, kid, secret string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestSubscribeAuthMatrix: every bad credential is refused with the same 401
// invalid_token, every channel the token does not cover with 403, and no
// refused subscriber ever receives an event.
func TestSubscribeAuthMatrix(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme, other := in.signup("Acme"), in.signup("Other")
	kid, secret := acme.SigningKey.Kid, acme.SigningKey.Secret
	now := time.Now()
	valid := jwt.MapClaims{"sub": "u1", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "channels": []string{"team:*"}}
	with := func(changes map[string]any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for k, v := range valid {
			c[k] = v
		}
		for k, v := range changes {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	good := sign(t, kid, secret, valid)
	parts := strings.Split(good, ".")

	unauthorized := map[string]string{
		"alg none":              b64(map[string]string{"alg": "none", "typ": "JWT", "kid": kid}) + "." + parts[1] + ".",
		"alg None no signature": b64(map[string]string{"alg": "None", "kid": kid}) + "." + parts[1],
		"alg HS512": func() string {
			tk := jwt.NewWithClaims(jwt.SigningMethodHS512, valid)
			tk.Header["kid"] = kid
			s, _ := tk.SignedString([]byte(secret))
			return s
		}(),
		"wrong key":              sign(t, kid, "hrs_not-the-secret-at-all-0000000000000000000", valid),
		"another tenant's kid":   sign(t, other.SigningKey.Kid, secret, valid),
		"no kid":                 sign(t, "", secret, valid),
		"unknown kid":            sign(t, "sk_0000000000000000", secret, valid),
		"path kid":               sign(t, "../../etc/passwd", secret, valid),
		"sql kid":                sign(t, "' OR 1=1--", secret, valid),
		"long kid":               sign(t, strings.Repeat("k", 10000), secret, valid),
		"expired":                sign(t, kid, secret, with(map[string]any{"exp": now.Add(-time.Hour).Unix()})),
		"missing exp":            sign(t, kid, secret, with(map[string]any{"exp": nil})),
		"exp as string":          sign(t, kid, secret, with(map[string]any{"exp": "tomorrow"})),
		"exp too far":            sign(t, kid, secret, with(map[string]any{"exp": now.Add(48 * time.Hour).Unix()})),
		"exp 1e300":              sign(t, kid, secret, with(map[string]any{"exp": 1e300})),
		"nbf in the future":      sign(t, kid, secret, with(map[string]any{"nbf": now.Add(time.Hour).Unix()})),
		"iat in the future":      sign(t, kid, secret, with(map[string]any{"iat": now.Add(time.Hour).Unix()})),
		"missing sub":            sign(t, kid, secret, with(map[string]any{"sub": nil})),
		"sub with newline":       sign(t, kid, secret, with(map[string]any{"sub": "u1\nadmin"})),
		"bad grant":              sign(t, kid, secret, with(map[string]any{"channels": []string{"a/b"}})),
		"tampered payload":       parts[0] + "." + b64(with(map[string]any{"sub": "admin"})) + "." + parts[2],
		"two segments":           parts[0] + "." + parts[1],
		"four segments":          good + ".x",
		"padding":                parts[0] + "=." + parts[1] + "." + parts[2],
		"garbage":                "not-a-jwt",
		"10,000 dots":            strings.Repeat(".", 7000),
		"api key as token":       acme.APIKey,
		"header is not json":     base64.RawURLEncoding.EncodeToString([]byte("{not json")) + "." + parts[1] + "." + parts[2],
		"header is a json array": b64([]string{"HS256"}) + "." + parts[1] + "." + parts[2],
		"jku header (no fetch)": func() string {
			tk := jwt.NewWithClaims(jwt.SigningMethodHS256, valid)
			tk.Header["kid"] = "sk_x"
			tk.Header["jku"] = "http://127.0.0.1:1/keys"
			s, _ := tk.SignedString([]byte(secret))
			return s
		}(),
		"other tenant's tok, ours": sign(t, other.SigningKey.Kid, other.SigningKey.Secret, valid)[:10] + "x",
	}
	for name, tok := range unauthorized {
		s, res := in.trySubscribe(acme.Tenant.ID, "u1", nil, []string{"broadcast"}, subscribeOpts{token: tok})
		if s != nil {
			t.Errorf("%s: subscribed, want 401", name)
			continue
		}
		if code := checkProblem(t, name, res, http.StatusUnauthorized); code != "invalid_token" {
			t.Errorf("%s: code %q, want invalid_token", name, code)
		}
		if !strings.Contains(res.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate = %q", name, res.header.Get("WWW-Authenticate"))
		}
	}

	// Right token, wrong channels: 403, nothing streamed.
	forbidden := map[string][]string{
		"another user's channel":      {"user:u2"},
		"ungranted channel":           {"secret"},
		"mixed allowed and forbidden": {"broadcast", "user:u2"},
		"grant prefix is not a match": {"teams"},
	}
	for name, chans := range forbidden {
		s, res := in.trySubscribe(acme.Tenant.ID, "u1", valid["channels"].([]string), chans, subscribeOpts{token: good})
		if s != nil {
			t.Errorf("%s: subscribed, want 403", name)
			continue
		}
		if code := checkProblem(t, name, res, http.StatusForbidden); code != "insufficient_scope" {
			t.Errorf("%s: code %q, want insufficient_scope", name, code)
		}
	}

	// Another tenant's valid token sees only its own tenant's events on a
	// same-named channel.
	pa, po := in.publisher(acme), in.publisher(other)
	otherTok := po.token("u1", []string{"team:1"}, 600)
	s := in.subscribe(other.Tenant.ID, "u1", []string{"team:1"}, []string{"team:1", "user:u1", "broadcast"}, subscribeOpts{token: otherTok})
	s.connID()
	pa.events(`{"channel":"team:1","type":"acme-only","data":"acme secret"}`)
	pa.events(`{"channel":"user:u1","type":"acme-only","data":"acme secret"}`)
	pa.events(`{"channel":"broadcast","type":"acme-only","data":"acme secret"}`)
	ids := po.events(`{"channel":"team:1","type":"mine","data":"other's own"}`)
	got := s.collect(1, 5*time.Second)
	if got[0].ID != ids[0] || got[0].Type != "mine" {
		t.Errorf("other tenant's subscriber got %+v, want its own event %s", got[0], ids[0])
	}
	s.quiet(300 * time.Millisecond)

	// A valid token works, in the query too, and the logs hold no token.
	if s, res := in.trySubscribe(acme.Tenant.ID, "u1", valid["channels"].([]string), []string{"team:9", "user:u1", "broadcast"}, subscribeOpts{token: good}); s == nil {
		t.Errorf("valid token refused: %d %s", res.status, res.body)
	}
	if s, res := in.trySubscribe(acme.Tenant.ID, "u1", nil, []string{"broadcast"}, subscribeOpts{query: "token=" + good}); s == nil {
		t.Errorf("valid token in ?token= refused: %d %s", res.status, res.body)
	}
	time.Sleep(50 * time.Millisecond) // let the access log lines land
	if strings.Contains(in.logs.String(), parts[2]) {
		t.Errorf("a token signature appears in the logs")
	}
}
