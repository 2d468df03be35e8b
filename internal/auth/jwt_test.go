package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestVerifyClockSkew (TESTPLAN F25): an issuer whose clock is off by up to
// the leeway is accepted; by five minutes, refused with ErrInvalidToken.
func TestVerifyClockSkew(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewDB(t)
	sealer, _ := NewSealer("a master secret of at least 32 characters")
	signing := NewSigningKeys(pool, sealer)
	acme := newTenant(t, pool, "acme")
	k, secret, err := signing.Create(ctx, acme)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(iat time.Time, ttl time.Duration) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u", "iat": iat.Unix(), "exp": iat.Add(ttl).Unix()})
		tok.Header["kid"] = k.Kid
		s, _ := tok.SignedString([]byte(secret))
		return s
	}
	now := time.Now()
	v := NewVerifier(signing)
	tests := []struct {
		name   string
		issuer time.Time // the issuer's clock
		ttl    time.Duration
		ok     bool
	}{
		{"issuer 50 s ahead", now.Add(50 * time.Second), time.Minute, true},
		{"issuer 50 s behind, token just expired by our clock", now.Add(-110 * time.Second), time.Minute, true},
		{"issuer 5 min ahead", now.Add(5 * time.Minute), time.Hour, false},
		{"issuer 5 min behind, short token", now.Add(-5 * time.Minute), time.Minute, false},
	}
	for _, tt := range tests {
		_, err := v.Verify(ctx, sign(tt.issuer, tt.ttl))
		if tt.ok && err != nil {
			t.Errorf("%s: %v, want accepted", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", tt.name, err)
		}
	}
}
