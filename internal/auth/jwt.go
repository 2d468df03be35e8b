package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

const (
	// Leeway is the clock skew tolerated between the token's issuer and this
	// server on exp, nbf and iat (TESTPLAN F25: up to a minute). A live
	// stream still ends at the exact exp.
	Leeway = 60 * time.Second
	// MaxTokenTTL is the longest a subscriber token may live.
	MaxTokenTTL = 24 * time.Hour
	// MaxGrants caps the channels claim.
	MaxGrants = 100
	// secretCacheTTL bounds how long a revoked signing key keeps verifying.
	secretCacheTTL = 5 * time.Second
	// keyCheckWait bounds KeyActive's wait for the database.
	keyCheckWait = 250 * time.Millisecond
)

// ErrInvalidToken is every reason a subscriber token is refused. Callers
// answer all of them alike, with no hint of which check failed.
var ErrInvalidToken = errors.New("auth: invalid token")

// Subscriber is a verified subscriber token (or a ticket made from one).
type Subscriber struct {
	TenantID tenant.ID
	Subject  string
	Grants   []string        // the channels claim: names and prefix* patterns
	Publish  []string        // the publish claim: where it may send client events
	Info     json.RawMessage // the info claim: what presence shows besides Subject
	Expires  time.Time
	Kid      string
}

// Allows reports whether s may subscribe to the channel name.
func (s Subscriber) Allows(name string) bool { return channel.Allowed(s.Subject, s.Grants, name) }

// MayPublish reports whether s may send client events to the channel name:
// only where its publish claim names the channel, and never to another
// user's user:<id>, whatever a pattern says. Whether the tenant takes
// client events at all is the tenant's setting, not the token's.
func (s Subscriber) MayPublish(name string) bool {
	if id, ok := strings.CutPrefix(name, "user:"); ok && id != s.Subject {
		return false
	}
	return channel.Granted(s.Publish, name)
}

// MaxInfo caps the info claim, as Pusher caps a presence member's user_info.
const MaxInfo = 1 << 10

// TokenClaims is what a minted subscriber token says besides its times.
type TokenClaims struct {
	Subject  string
	Channels []string        // may subscribe to: names and prefix* patterns
	Publish  []string        // may send client events to: names and prefix* patterns
	Info     json.RawMessage // a JSON object presence shows beside Subject, at most MaxInfo bytes
}

// Check reports what is wrong with c as a 400 problem (invalid_sub,
// too_many_channels, invalid_channel or invalid_info), in words for the
// one who asked for the token.
func (c TokenClaims) Check() error {
	if err := ValidSubject(c.Subject); err != nil {
		return web.NewProblem(http.StatusBadRequest, "invalid_sub", err.Error())
	}
	for _, claim := range []struct {
		name   string
		grants []string
	}{{"channels", c.Channels}, {"publish", c.Publish}} {
		if len(claim.grants) > MaxGrants {
			return web.NewProblem(http.StatusBadRequest, "too_many_channels", fmt.Sprintf(`%q lists more than %d grants`, claim.name, MaxGrants))
		}
		for _, g := range claim.grants {
			if err := channel.ValidPattern(g); err != nil {
				return web.NewProblem(http.StatusBadRequest, "invalid_channel", fmt.Sprintf("%q: %v", claim.name, err))
			}
		}
	}
	if len(c.Info) == 0 {
		return nil
	}
	if len(c.Info) > MaxInfo {
		return web.NewProblem(http.StatusBadRequest, "invalid_info", fmt.Sprintf(`"info" is %d bytes; at most %d are allowed`, len(c.Info), MaxInfo))
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(c.Info, &obj) != nil || obj == nil {
		return web.NewProblem(http.StatusBadRequest, "invalid_info", `"info" must be a JSON object, such as {"name":"Ada"}`)
	}
	return nil
}

type claims struct {
	jwt.RegisteredClaims
	Channels []string        `json:"channels,omitempty"`
	Publish  []string        `json:"publish,omitempty"`
	Info     json.RawMessage `json:"info,omitempty"`
}

// UnmarshalJSON refuses exp, nbf and iat given as strings. golang-jwt reads
// NumericDate through json.Number, which also takes "1700000000" in quotes;
// RFC 7519 says a NumericDate is a JSON number, and a token that disagrees
// with itself about types is not one we issued.
func (c *claims) UnmarshalJSON(b []byte) error {
	var times struct {
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := json.Unmarshal(b, &times); err != nil {
		return err
	}
	for _, raw := range []json.RawMessage{times.Exp, times.Nbf, times.Iat} {
		if len(raw) > 0 && raw[0] == '"' {
			return errors.New("auth: a time claim is a string, not a NumericDate")
		}
	}
	type plain claims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// Verifier checks subscriber JWTs against tenants' signing keys.
type Verifier struct {
	signing *SigningKeys
	now     func() time.Time

	mu    sync.Mutex
	cache map[string]cachedSecret // by kid
}

type cachedSecret struct {
	tenantID tenant.ID
	secret   []byte // nil: no such active key
	expires  time.Time
}

// NewVerifier returns a verifier that finds keys in signing.
func NewVerifier(signing *SigningKeys) *Verifier {
	return &Verifier{signing: signing, now: time.Now, cache: map[string]cachedSecret{}}
}

// validKid is the shape of the kids we issue; anything else is refused
// before any lookup.
func validKid(kid string) bool {
	return len(kid) == 19 && kid[:3] == "sk_" && isBase62(kid[3:])
}

// secret returns kid's tenant and secret, from a cache of at most
// secretCacheTTL, or ErrNotFound.
func (v *Verifier) secret(ctx context.Context, kid string) (tenant.ID, []byte, error) {
	now := v.now()
	v.mu.Lock()
	c, ok := v.cache[kid]
	v.mu.Unlock()
	if ok && now.Before(c.expires) {
		if c.secret == nil {
			return 0, nil, ErrNotFound
		}
		return c.tenantID, c.secret, nil
	}
	tenantID, secret, err := v.signing.Secret(ctx, kid)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return 0, nil, err
	}
	v.mu.Lock()
	if len(v.cache) > 10000 { // bound the cache against floods of made-up kids
		clear(v.cache)
	}
	v.cache[kid] = cachedSecret{tenantID: tenantID, secret: secret, expires: now.Add(secretCacheTTL)}
	v.mu.Unlock()
	if err != nil {
		return 0, nil, err
	}
	return tenantID, secret, nil
}

// KeySecret returns the tenant and the secret of signing key kid, at most
// secretCacheTTL old, or ErrNotFound. A signing key is also the tenant's
// Pusher key/secret pair (DESIGN, "WebSocket: the Pusher Channels protocol").
func (v *Verifier) KeySecret(ctx context.Context, kid string) (tenant.ID, []byte, error) {
	if !validKid(kid) {
		return 0, nil, ErrNotFound
	}
	return v.secret(ctx, kid)
}

// KeyActive reports whether kid still verifies tokens, as a stream checks
// now and then so that revoking a signing key ends its streams. It waits at
// most keyCheckWait for the database: the caller is a stream's heartbeat,
// which must not stall behind a starved pool (TESTPLAN F7). An error means
// "not known now"; the stream checks again at its next heartbeat.
func (v *Verifier) KeyActive(ctx context.Context, kid string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, keyCheckWait)
	defer cancel()
	_, _, err := v.secret(ctx, kid)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Verify checks token: HS256 only, a kid naming an active signing key (which
// also names the tenant), a valid signature, exp present and at most 24 h
// after iat, nbf and iat honoured with Leeway, a sub, channels and publish
// claims of valid names and patterns, and an info claim that is a small
// JSON object (TokenClaims.Check). Every failure is ErrInvalidToken; an
// error reaching the database is returned as it is.
func (v *Verifier) Verify(ctx context.Context, token string) (Subscriber, error) {
	if len(token) > 8<<10 {
		return Subscriber{}, ErrInvalidToken
	}
	var (
		sub   Subscriber
		dbErr error
	)
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"HS256"}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(v.now),
		jwt.WithStrictDecoding(),
	)
	var c claims
	_, err := parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if !validKid(kid) {
			return nil, ErrInvalidToken
		}
		tenantID, secret, err := v.secret(ctx, kid)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				dbErr = err
			}
			return nil, ErrInvalidToken
		}
		sub.TenantID, sub.Kid = tenantID, kid
		return secret, nil
	})
	if dbErr != nil {
		return Subscriber{}, fmt.Errorf("auth: verify token: %w", dbErr)
	}
	if err != nil {
		return Subscriber{}, ErrInvalidToken
	}
	if err := (TokenClaims{c.Subject, c.Channels, c.Publish, c.Info}).Check(); err != nil {
		return Subscriber{}, ErrInvalidToken
	}
	// A token may live at most MaxTokenTTL: from its iat, or from now when it has none.
	from := v.now()
	if c.IssuedAt != nil {
		from = c.IssuedAt.Time
	}
	if c.ExpiresAt.Time.Sub(from) > MaxTokenTTL+Leeway {
		return Subscriber{}, ErrInvalidToken
	}
	sub.Subject, sub.Grants, sub.Publish, sub.Expires = c.Subject, c.Channels, c.Publish, c.ExpiresAt.Time
	if len(c.Info) > 0 {
		sub.Info = c.Info
	}
	return sub, nil
}

// ValidSubject checks an end-user id: 1–200 printable characters.
func ValidSubject(s string) error {
	if s == "" || len(s) > 200 || !utf8.ValidString(s) {
		return errors.New(`"sub" must be 1 to 200 characters`)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || r == ' ' {
			return fmt.Errorf(`"sub" contains the character %U; use letters, digits and punctuation`, r)
		}
	}
	return nil
}

// Mint signs a token for tenantID's subject with its newest active signing key.
// c must have passed Check.
func (s *SigningKeys) Mint(ctx context.Context, tenantID tenant.ID, c TokenClaims, ttl time.Duration, now time.Time) (string, time.Time, error) {
	var (
		kid    string
		sealed []byte
	)
	err := s.pool.QueryRow(ctx,
		`SELECT kid, secret_seal FROM signing_keys WHERE tenant_id = $1 AND revoked_at IS NULL
		  ORDER BY created_at DESC, kid LIMIT 1`, tenantID).Scan(&kid, &sealed)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return "", time.Time{}, ErrNoSigningKey
		}
		return "", time.Time{}, fmt.Errorf("auth: newest signing key: %w", err)
	}
	secret, err := s.sealer.Open(sealed, []byte(kid))
	if err != nil {
		return "", time.Time{}, err
	}
	exp := now.Add(ttl).Truncate(time.Second)
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   c.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		Channels: c.Channels,
		Publish:  c.Publish,
		Info:     c.Info,
	})
	t.Header["kid"] = kid
	signed, err := t.SignedString(secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign token: %w", err)
	}
	return signed, exp, nil
}

// ErrNoSigningKey is minting for a tenant with no active signing key.
var ErrNoSigningKey = errors.New("auth: the tenant has no active signing key")
