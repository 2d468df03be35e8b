package auth

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/web"
)

// TestTokenPublishAndInfo: the publish and info claims go from minting
// through verification, and through a ticket, unchanged.
func TestTokenPublishAndInfo(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewDB(t)
	sealer, _ := NewSealer("a master secret of at least 32 characters")
	signing := NewSigningKeys(pool, sealer)
	acme := newTenant(t, pool, "acme")
	if _, _, err := signing.Create(ctx, acme); err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(signing)
	claims := TokenClaims{Subject: "ada", Channels: []string{"presence-room", "chat:*"}, Publish: []string{"chat:*"}, Info: json.RawMessage(`{"name":"Ada"}`)}
	token, _, err := signing.Mint(ctx, acme, claims, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "ada" || !slices.Equal(got.Publish, claims.Publish) || string(got.Info) != `{"name":"Ada"}` {
		t.Fatalf("verified %+v, want the minted publish and info", got)
	}
	tickets := NewTickets(pool)
	ticket, err := tickets.Issue(ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	redeemed, err := tickets.Redeem(ctx, ticket)
	if err != nil || !slices.Equal(redeemed.Publish, got.Publish) || string(redeemed.Info) != string(got.Info) {
		t.Fatalf("ticket gave %+v, %v; want the token's publish and info", redeemed, err)
	}

	// Without the claims: nothing to publish to, no info, through a ticket too.
	plain, _, _ := signing.Mint(ctx, acme, TokenClaims{Subject: "bob"}, time.Hour, time.Now())
	bob, err := v.Verify(ctx, plain)
	if err != nil || bob.Publish != nil || bob.Info != nil || bob.MayPublish("chat:1") {
		t.Fatalf("a token without publish or info = %+v, %v", bob, err)
	}
	ticket, _ = tickets.Issue(ctx, bob)
	if r, err := tickets.Redeem(ctx, ticket); err != nil || len(r.Publish) != 0 || r.Info != nil {
		t.Fatalf("ticket of a plain token = %+v, %v", r, err)
	}
}

func TestMayPublish(t *testing.T) {
	s := Subscriber{Subject: "42", Grants: []string{"room"}, Publish: []string{"chat:*", "presence-room", "user:*"}}
	for name, want := range map[string]bool{
		"chat:1":        true,
		"presence-room": true,
		"user:42":       true,
		"user:43":       false, // another user's channel, whatever the pattern
		"room":          false, // may subscribe, not publish
		"broadcast":     false, // open to subscribe, not to publish
		"chat":          false,
	} {
		if got := s.MayPublish(name); got != want {
			t.Errorf("MayPublish(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestTokenClaimsCheck(t *testing.T) {
	for _, tc := range []struct {
		claims TokenClaims
		code   string
	}{
		{TokenClaims{Subject: ""}, "invalid_sub"},
		{TokenClaims{Subject: "a", Publish: []string{"bad name"}}, "invalid_channel"},
		{TokenClaims{Subject: "a", Publish: make([]string, MaxGrants+1)}, "too_many_channels"},
		{TokenClaims{Subject: "a", Info: json.RawMessage(`"Ada"`)}, "invalid_info"},
		{TokenClaims{Subject: "a", Info: json.RawMessage(`[1]`)}, "invalid_info"},
		{TokenClaims{Subject: "a", Info: json.RawMessage(`null`)}, "invalid_info"},
		{TokenClaims{Subject: "a", Info: json.RawMessage(`{"n":"` + strings.Repeat("x", MaxInfo) + `"}`)}, "invalid_info"},
		{TokenClaims{Subject: "a", Publish: []string{"chat:*"}, Info: json.RawMessage(`{"n":1}`)}, ""},
	} {
		err := tc.claims.Check()
		p, _ := errors.AsType[*web.Problem](err)
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("Check(%+v) = %v, want nil", tc.claims, err)
		case tc.code != "" && (p == nil || !strings.HasSuffix(p.Type, ":"+tc.code) || p.Status != 400):
			t.Errorf("Check(%+v) = %v, want a 400 %s", tc.claims, err, tc.code)
		}
	}
}
