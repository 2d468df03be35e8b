package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestMalformedCredentialsAllocateLittle (TESTPLAN 2A, the CVE-2025-30204
// shape): a token of thousands of dots costs the API-key and subscriber
// middlewares a bounded number of allocations and bytes, whatever its
// length. Not parallel: the allocation counters are process-wide.
func TestMalformedCredentialsAllocateLittle(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sealer, err := NewSealer("a master secret of at least 32 characters")
	if err != nil {
		t.Fatal(err)
	}
	// No database: a query would panic, so every refusal below is also
	// proof that it needed none.
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("a malformed credential was admitted") })
	handlers := map[string]http.Handler{
		"API key":    RequireAPIKey(log, NewKeys(nil))(next),
		"subscriber": RequireSubscriber(log, NewVerifier(NewSigningKeys(nil, sealer)), NewTickets(nil), true)(next),
	}
	for name, h := range handlers {
		measure := func(dots int) (allocs float64, bytesPerRun uint64) {
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Authorization", "Bearer "+strings.Repeat(".", dots))
			run := func() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusUnauthorized {
					t.Fatalf("%s with %d dots = %d, want 401", name, dots, w.Code)
				}
			}
			allocs = testing.AllocsPerRun(100, run)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range 100 {
				run()
			}
			runtime.ReadMemStats(&after)
			return allocs, (after.TotalAlloc - before.TotalAlloc) / 100
		}
		baseAllocs, baseBytes := measure(2)
		for _, dots := range []int{7000, 10000, 100000} {
			allocs, b := measure(dots)
			t.Logf("%s, %d dots: %.0f allocations, %d bytes a request (2 dots: %.0f, %d)", name, dots, allocs, b, baseAllocs, baseBytes)
			if allocs > baseAllocs+5 {
				t.Errorf("%s, %d dots: %.0f allocations a request, want at most %.0f as for 2 dots", name, dots, allocs, baseAllocs+5)
			}
			if b > baseBytes+16<<10 {
				t.Errorf("%s, %d dots: %d bytes a request, want at most 16 KiB more than for 2 dots (%d)", name, dots, b, baseBytes)
			}
		}
	}
}

// fuzzNow is the fixed clock of FuzzJWTVerify, so that its committed seeds
// stay valid (or not) forever.
var fuzzNow = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

const (
	fuzzKid    = "sk_FuzzKid00000001"
	fuzzSecret = "hrs_fuzz-secret-0123456789abcdefghijklmnopqrst"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// hs256 signs header and payload, given as JSON text, with secret.
func hs256(header, payload, secret string) string {
	signing := b64([]byte(header)) + "." + b64([]byte(payload))
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(signing))
	return signing + "." + b64(m.Sum(nil))
}

// jwtSeeds are TESTPLAN section 2 A's subscriber-token rows, signed with
// the fuzz key at fuzzNow. The first is valid.
func jwtSeeds() []string {
	hdr := `{"alg":"HS256","typ":"JWT","kid":"` + fuzzKid + `"}`
	iat, exp := fuzzNow.Unix(), fuzzNow.Add(time.Hour).Unix()
	claims := func(extra string) string {
		return `{"sub":"u1","iat":` + itoa(iat) + `,"exp":` + itoa(exp) + `,"channels":["team:*"]` + extra + `}`
	}
	valid := hs256(hdr, claims(""), fuzzSecret)
	parts := strings.Split(valid, ".")
	seeds := []string{
		valid,
		b64([]byte(`{"alg":"none","kid":"`+fuzzKid+`"}`)) + "." + parts[1] + ".",
		b64([]byte(`{"alg":"None","kid":"`+fuzzKid+`"}`)) + "." + parts[1] + ".",
		b64([]byte(`{"alg":"NONE","kid":"`+fuzzKid+`"}`)) + "." + parts[1],
		hs256(`{"alg":"HS512","kid":"`+fuzzKid+`"}`, claims(""), fuzzSecret),
		hs256(`{"alg":"RS256","kid":"`+fuzzKid+`"}`, claims(""), fuzzSecret),
		parts[0] + "." + b64([]byte(`{"sub":"admin","exp":`+itoa(exp)+`}`)) + "." + parts[2],
		parts[0] + "." + parts[1],
		valid + ".x",
		parts[0] + "=." + parts[1] + "." + parts[2],
		parts[0] + "." + parts[1] + "+/." + parts[2],
		b64([]byte("{not json")) + "." + parts[1] + "." + parts[2],
		b64([]byte(`["HS256"]`)) + "." + parts[1] + "." + parts[2],
		hs256(hdr, `{"sub":"u1","iat":`+itoa(iat)+`}`, fuzzSecret),
		hs256(hdr, `{"sub":"u1","exp":`+itoa(iat-3600)+`}`, fuzzSecret),
		hs256(hdr, `{"sub":"u1","exp":"`+itoa(exp)+`"}`, fuzzSecret),
		hs256(hdr, `{"sub":"u1","exp":`+itoa(exp)+`.5}`, fuzzSecret),
		hs256(hdr, `{"sub":"u1","exp":1e300}`, fuzzSecret),
		hs256(hdr, `{"sub":"u1","exp":-1}`, fuzzSecret),
		hs256(hdr, claims(`,"nbf":`+itoa(exp)), fuzzSecret),
		hs256(hdr, `{"sub":"u1","iat":`+itoa(exp)+`,"exp":`+itoa(exp+60)+`}`, fuzzSecret),
		hs256(hdr, claims(`,"aud":"","iss":"evil"`), fuzzSecret),
		hs256(`{"alg":"HS256","kid":"sk_0000000000000000"}`, claims(""), fuzzSecret),
		hs256(`{"alg":"HS256","kid":"../../etc/passwd"}`, claims(""), fuzzSecret),
		hs256(`{"alg":"HS256","kid":"' OR 1=1--"}`, claims(""), fuzzSecret),
		hs256(`{"alg":"HS256","kid":"`+strings.Repeat("k", 10<<10)+`"}`, claims(""), fuzzSecret),
		hs256(`{"alg":"HS256","kid":"`+fuzzKid+`","jku":"http://127.0.0.1:1/keys","x5u":"http://127.0.0.1:1/x5u"}`, claims(""), fuzzSecret),
		hs256(`{"alg":"HS256","kid":"`+fuzzKid+`","jwk":{"kty":"oct","k":"AAAA"}}`, claims(""), fuzzSecret),
		hs256(hdr, `{"sub":"u1","sub":"u2","iat":`+itoa(iat)+`,"exp":`+itoa(exp)+`}`, fuzzSecret),
		hs256(hdr, claims(`,"channels":["user:*","*"]`), fuzzSecret),
		strings.Repeat(".", 10000),
		"",
	}
	return seeds
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// fuzzVerifier is a verifier at fuzzNow that knows one signing key: the
// fuzz key, stored in a real database so that other kids are looked up
// there as in production.
func fuzzVerifier(f *testing.F) (*Verifier, func() int64) {
	pool := pgtest.NewDB(f)
	sealer, err := NewSealer("a master secret of at least 32 characters")
	if err != nil {
		f.Fatal(err)
	}
	var tid int64
	if err := pool.QueryRow(context.Background(), `INSERT INTO tenants (name) VALUES ('fuzz') RETURNING id`).Scan(&tid); err != nil {
		f.Fatal(err)
	}
	if _, err := pool.Exec(context.Background(), `INSERT INTO signing_keys (kid, tenant_id, secret_seal) VALUES ($1, $2, $3)`,
		fuzzKid, tid, sealer.Seal([]byte(fuzzSecret), []byte(fuzzKid))); err != nil {
		f.Fatal(err)
	}
	v := NewVerifier(NewSigningKeys(pool, sealer))
	v.now = func() time.Time { return fuzzNow }
	return v, func() int64 { return tid }
}

// FuzzJWTVerify (TESTPLAN section 3): Verify never panics, and a token it
// accepts was signed with HS256 by the one key in the set, for that key's
// tenant, and passes every claim check when checked again independently.
func FuzzJWTVerify(f *testing.F) {
	for _, s := range jwtSeeds() {
		f.Add(s)
	}
	v, tenantID := fuzzVerifier(f)
	f.Fuzz(func(t *testing.T, token string) {
		sub, err := v.Verify(context.Background(), token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify(%q) = %v, want ErrInvalidToken", token, err)
			}
			return
		}
		if int64(sub.TenantID) != tenantID() || sub.Kid != fuzzKid {
			t.Fatalf("accepted for tenant %d kid %q", sub.TenantID, sub.Kid)
		}
		checkAccepted(t, token, sub)
	})
}

// checkAccepted re-checks an accepted token without golang-jwt.
func checkAccepted(t *testing.T, token string, sub Subscriber) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("accepted %q with %d segments", token, len(parts))
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	m := hmac.New(sha256.New, []byte(fuzzSecret))
	m.Write([]byte(parts[0] + "." + parts[1]))
	if err != nil || !hmac.Equal(sig, m.Sum(nil)) {
		t.Fatalf("accepted %q whose signature is not the fuzz key's HS256", token)
	}
	var header struct{ Alg, Kid string }
	if err := json.Unmarshal(must(base64.RawURLEncoding.DecodeString(parts[0])), &header); err != nil || header.Alg != "HS256" || header.Kid != fuzzKid {
		t.Fatalf("accepted header %+v (%v)", header, err)
	}
	dec := json.NewDecoder(bytes.NewReader(must(base64.RawURLEncoding.DecodeString(parts[1]))))
	dec.UseNumber()
	var c map[string]any
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("accepted a payload that is not a JSON object: %v", err)
	}
	num := func(name string) (float64, bool) {
		n, ok := c[name].(json.Number)
		if !ok {
			if _, present := c[name]; present {
				t.Fatalf("accepted %s of type %T", name, c[name])
			}
			return 0, false
		}
		f, err := n.Float64()
		if err != nil {
			t.Fatalf("accepted %s = %s", name, n)
		}
		return f, true
	}
	now := float64(fuzzNow.Unix())
	leeway := Leeway.Seconds()
	exp, ok := num("exp")
	if !ok || exp <= now-leeway {
		t.Fatalf("accepted exp %v (present %v) at %v", exp, ok, now)
	}
	from := now
	if iat, ok := num("iat"); ok {
		if iat > now+leeway {
			t.Fatalf("accepted iat %v in the future", iat)
		}
		from = iat
	}
	if exp-from > (MaxTokenTTL+Leeway).Seconds()+1 {
		t.Fatalf("accepted a token living %v s", exp-from)
	}
	if nbf, ok := num("nbf"); ok && nbf > now+leeway {
		t.Fatalf("accepted nbf %v in the future", nbf)
	}
	if s, _ := c["sub"].(string); s != sub.Subject || ValidSubject(s) != nil {
		t.Fatalf("accepted sub %q as %q", c["sub"], sub.Subject)
	}
	if len(sub.Grants) > MaxGrants {
		t.Fatalf("accepted %d grants", len(sub.Grants))
	}
	for _, g := range sub.Grants {
		if channel.ValidPattern(g) != nil {
			t.Fatalf("accepted grant %q", g)
		}
	}
	if len(sub.Publish) > MaxGrants {
		t.Fatalf("accepted %d publish grants", len(sub.Publish))
	}
	for _, g := range sub.Publish {
		if channel.ValidPattern(g) != nil {
			t.Fatalf("accepted publish grant %q", g)
		}
	}
	if len(sub.Info) > 0 {
		var obj map[string]any
		if len(sub.Info) > MaxInfo || json.Unmarshal(sub.Info, &obj) != nil || obj == nil {
			t.Fatalf("accepted info %q", sub.Info)
		}
	}
}

// TestVerifyTimeClaimTypes: a NumericDate must be a JSON number (RFC 7519
// §2); a quoted one is refused even when its value would pass. Fractions
// are numbers and pass.
func TestVerifyTimeClaimTypes(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	sealer, _ := NewSealer("a master secret of at least 32 characters")
	signing := NewSigningKeys(pool, sealer)
	k, secret, err := signing.Create(t.Context(), newTenant(t, pool, "acme"))
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(signing)
	now := time.Now()
	hdr := `{"alg":"HS256","kid":"` + k.Kid + `"}`
	iat, exp := itoa(now.Unix()), itoa(now.Add(time.Hour).Unix())
	for _, tt := range []struct {
		payload string
		ok      bool
	}{
		{`{"sub":"u","iat":` + iat + `,"exp":` + exp + `}`, true},
		{`{"sub":"u","iat":` + iat + `,"exp":` + exp + `.25}`, true},
		{`{"sub":"u","iat":` + iat + `,"exp":"` + exp + `"}`, false},
		{`{"sub":"u","iat":"` + iat + `","exp":` + exp + `}`, false},
		{`{"sub":"u","nbf":"` + iat + `","exp":` + exp + `}`, false},
		{`{"sub":"u","exp":` + exp + `,"exp":"` + exp + `"}`, false}, // the last duplicate counts, as everywhere
		{`{"sub":"u","exp":null}`, false},
		{`{"sub":"u","exp":true}`, false},
		{`{"sub":"u","exp":[` + exp + `]}`, false},
		{`{"sub":"u","exp":-1}`, false},
		{`{"sub":"u","exp":1e300}`, false},
	} {
		_, err := v.Verify(t.Context(), hs256(hdr, tt.payload, secret))
		if tt.ok && err != nil {
			t.Errorf("payload %s: %v, want accepted", tt.payload, err)
		}
		if !tt.ok && !errors.Is(err, ErrInvalidToken) {
			t.Errorf("payload %s: %v, want ErrInvalidToken", tt.payload, err)
		}
	}
}
