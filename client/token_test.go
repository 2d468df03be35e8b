package client

import (
	"encoding/base64"
	"testing"
	"time"
)

// jwtWith returns an unsigned JWT-shaped string with payload claims.
func jwtWith(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256"}`)) + "." + enc([]byte(claims)) + ".sig"
}

func TestNewToken(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	sec := func(s float64) time.Time { return now.Add(time.Duration(s * float64(time.Second))) }
	tests := []struct {
		name             string
		token            string
		renewAt, expires time.Time // zero: never renewed ahead
	}{
		{"an hour: 30 s before exp", jwtWith(`{"iat":1000000,"exp":1003600}`), sec(3570), sec(3600)},
		{"3 s: a third before exp", jwtWith(`{"iat":1000000,"exp":1000003}`), sec(2), sec(3)},
		{"no iat", jwtWith(`{"exp":1000060}`), sec(40), sec(60)},
		{"fractional exp", jwtWith(`{"exp":1000060.5}`), sec(60.5).Add(-time.Duration(60.5*float64(time.Second)) / 3), sec(60.5)},
		// The local clock is an hour behind iat: the lifetime counts from now.
		{"clock behind", jwtWith(`{"iat":1003600,"exp":1007200}`), sec(3570), sec(3600)},
		{"minted a while ago", jwtWith(`{"iat":999000,"exp":1000600}`), sec(570), sec(600)},
		// Older than its lifetime by the local clock: taken as clock skew,
		// as the browser client does; the service says 401 if it is expired.
		{"older than its lifetime", jwtWith(`{"iat":990000,"exp":999000}`), sec(8970), sec(9000)},
		{"expired, no iat", jwtWith(`{"exp":999000}`), now, now},
		{"exp before iat", jwtWith(`{"iat":1000000,"exp":999000}`), now, now},
		{"not a JWT", "opaque-token", time.Time{}, time.Time{}},
		{"no exp", jwtWith(`{"iat":1000000}`), time.Time{}, time.Time{}},
		{"exp as a string", jwtWith(`{"exp":"1000060"}`), time.Time{}, time.Time{}},
		{"bad base64", "a.!!!.c", time.Time{}, time.Time{}},
	}
	for _, tt := range tests {
		got := newToken(tt.token, now)
		if !got.renewAt.Equal(tt.renewAt) || !got.expires.Equal(tt.expires) {
			t.Errorf("%s: renewAt %v, expires %v; want %v, %v", tt.name,
				got.renewAt.Sub(now), got.expires.Sub(now), tt.renewAt.Sub(now), tt.expires.Sub(now))
		}
	}
}

func TestTokenDue(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	tok := newToken(jwtWith(`{"iat":1000000,"exp":1000090}`), now) // renew at +60 s
	for _, c := range []struct {
		at           time.Duration
		due, expired bool
	}{
		{0, false, false},
		{59 * time.Second, false, false},
		{60 * time.Second, true, false},
		{90 * time.Second, true, true},
	} {
		if got := tok.due(now.Add(c.at)); got != c.due {
			t.Errorf("due at +%v = %v, want %v", c.at, got, c.due)
		}
		if got := tok.expired(now.Add(c.at)); got != c.expired {
			t.Errorf("expired at +%v = %v, want %v", c.at, got, c.expired)
		}
	}
	if opaque := newToken("opaque", now); opaque.due(now.Add(24*time.Hour)) || opaque.expired(now.Add(24*time.Hour)) {
		t.Error("a token without exp is due or expired; want it used until refused")
	}
	if (token{}).due(now) != true {
		t.Error("no token yet is not due")
	}
}
