package tenant

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

func TestValidPublicChannels(t *testing.T) {
	t.Parallel()
	many := make([]string, MaxPublicChannels)
	for i := range many {
		many[i] = "c" + strings.Repeat("x", i)
	}
	tests := []struct {
		name string
		list []string
		ok   bool
	}{
		{"none", nil, true},
		{"empty list", []string{}, true},
		{"names", []string{"news", "scores.live", "a_b-c@d=e"}, true},
		{"patterns", []string{"news-*", "cache-*", "a*"}, true},
		{"everything", []string{"*"}, true},
		{"longest name", []string{strings.Repeat("n", 200)}, true},
		{"most entries", many, true},
		{"too many entries", append(many, "one-more"), false},
		{"empty name", []string{""}, false},
		{"name too long", []string{strings.Repeat("n", 201)}, false},
		{"space", []string{"my channel"}, false},
		{"slash", []string{"a/b"}, false},
		{"non-ASCII", []string{"café"}, false},
		{"star inside", []string{"a*b"}, false},
		{"two stars", []string{"a**"}, false},
		{"colon in name", []string{"user:42"}, false},
		{"colon in pattern", []string{"team:*"}, false},
		{"private", []string{"private-orders"}, false},
		{"private pattern", []string{"private-*"}, false},
		{"presence", []string{"presence-room"}, false},
		{"private-encrypted", []string{"private-encrypted-x"}, false},
		{"one bad among good", []string{"news", "bad name"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidPublicChannels(tt.list)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidPublicChannels(%q) = %v, want ok %v", tt.list, err, tt.ok)
			}
			if err == nil {
				return
			}
			var se *SettingError
			if !errors.As(err, &se) || se.Field != "publicChannels" || se.Code() != "invalid_public_channels" || !strings.Contains(err.Error(), `"publicChannels"`) {
				t.Errorf("ValidPublicChannels(%q) = %#v, want a *SettingError of publicChannels naming it", tt.list, err)
			}
		})
	}
}

func TestSettingsPatchValidate(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	list := func(s ...string) *[]string { return &s }
	tests := []struct {
		name  string
		patch SettingsPatch
		field string // "" when valid
	}{
		{"nothing", SettingsPatch{}, ""},
		{"all good", SettingsPatch{PublicChannels: list("news"), WebhookURL: str("https://example.com/hook?k=1"), WebhookEvents: list(WebhookEventNames...)}, ""},
		{"no webhook", SettingsPatch{WebhookURL: str(""), WebhookEvents: list()}, ""},
		{"bad channels", SettingsPatch{PublicChannels: list("a b")}, "publicChannels"},
		{"ftp webhook", SettingsPatch{WebhookURL: str("ftp://example.com/hook")}, "webhookUrl"},
		{"relative webhook", SettingsPatch{WebhookURL: str("/hook")}, "webhookUrl"},
		{"no host", SettingsPatch{WebhookURL: str("https:///hook")}, "webhookUrl"},
		{"not a URL", SettingsPatch{WebhookURL: str("https://exa mple.com")}, "webhookUrl"},
		{"user info", SettingsPatch{WebhookURL: str("https://u:p@example.com/")}, "webhookUrl"},
		{"fragment", SettingsPatch{WebhookURL: str("https://example.com/#x")}, "webhookUrl"},
		{"too long", SettingsPatch{WebhookURL: str("https://example.com/" + strings.Repeat("a", 2048))}, "webhookUrl"},
		{"unknown event", SettingsPatch{WebhookEvents: list("channel_occupied", "channel_exploded")}, "webhookEvents"},
		{"event case", SettingsPatch{WebhookEvents: list("Channel_Occupied")}, "webhookEvents"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.patch.Validate()
			var se *SettingError
			switch {
			case tt.field == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.field != "" && (!errors.As(err, &se) || se.Field != tt.field):
				t.Errorf("Validate() = %#v, want a *SettingError of %s", err, tt.field)
			}
		})
	}
}

func TestIsPublic(t *testing.T) {
	t.Parallel()
	s := Settings{PublicChannels: []string{"news", "scores-*", "cache-*", "priv*"}}
	all := Settings{PublicChannels: []string{"*"}}
	tests := []struct {
		s    Settings
		name string
		want bool
	}{
		{s, "news", true},
		{s, "news2", false},
		{s, "new", false},
		{s, "scores-", true},
		{s, "scores-live", true},
		{s, "scores", false},
		{s, "cache-news", true},
		{s, "other", false},
		{s, "privy", true},
		{s, "private-orders", false}, // always needs a signature
		{all, "anything", true},
		{all, "private-orders", false},
		{all, "private-encrypted-x", false},
		{all, "presence-room", false},
		{all, "user:42", false}, // ':' is never reachable over Pusher
		{Settings{}, "news", false},
	}
	for _, tt := range tests {
		if got := tt.s.IsPublic(tt.name); got != tt.want {
			t.Errorf("%q.IsPublic(%q) = %v, want %v", tt.s.PublicChannels, tt.name, got, tt.want)
		}
	}
}

func TestSettingsJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(Settings{})
	if want := `{"publicChannels":[],"clientEvents":false,"webhookUrl":"","webhookEvents":[]}`; err != nil || string(b) != want {
		t.Errorf("json.Marshal(Settings{}) = %s, %v; want %s", b, err, want)
	}
	tru := true
	b, err = json.Marshal(SettingsPatch{ClientEvents: &tru, PublicChannels: &[]string{}})
	if want := `{"publicChannels":[],"clientEvents":true}`; err != nil || string(b) != want {
		t.Errorf("json.Marshal(patch) = %s, %v; want %s: only the fields set", b, err, want)
	}
}

// TestCache: settings and quotas come from one cached read; a change made
// through a Cache is seen by it at once and by another Cache (another
// instance) only after the TTL; a patch keeps the quotas and the fields it
// leaves out; another tenant is untouched.
func TestCache(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	ctx := t.Context()
	var a, b ID
	for _, id := range []*ID{&a, &b} {
		if err := pool.QueryRow(ctx, `INSERT INTO tenants (name) VALUES ('t') RETURNING id`).Scan(id); err != nil {
			t.Fatal(err)
		}
	}
	store := NewStore(pool)
	one := 1
	if err := store.SetQuotas(ctx, a, Quotas{MaxBatch: &one}); err != nil {
		t.Fatal(err)
	}
	here, there := NewCache(store), NewCache(store)
	if s, err := there.Settings(ctx, a); err != nil || s.ClientEvents || len(s.PublicChannels) != 0 {
		t.Fatalf("Settings before any change = %+v, %v; want the defaults", s, err)
	}

	tru := true
	if _, err := here.UpdateSettings(ctx, a, SettingsPatch{PublicChannels: &[]string{"news", "live-*"}}); err != nil {
		t.Fatal(err)
	}
	s, err := here.UpdateSettings(ctx, a, SettingsPatch{ClientEvents: &tru})
	if err != nil || !s.ClientEvents || len(s.PublicChannels) != 2 {
		t.Fatalf("UpdateSettings(clientEvents) = %+v, %v; want publicChannels kept", s, err)
	}
	if s, err := here.Settings(ctx, a); err != nil || !s.ClientEvents || !s.IsPublic("live-1") {
		t.Errorf("Settings on the instance that changed them = %+v, %v; want the change at once", s, err)
	}
	if q, err := here.Quotas(ctx, a); err != nil || q.MaxBatch == nil || *q.MaxBatch != 1 {
		t.Errorf("Quotas after settings changed = %+v, %v; want maxBatch 1 kept", q, err)
	}
	if s, err := there.Settings(ctx, a); err != nil || s.ClientEvents {
		t.Errorf("Settings on another instance within the TTL = %+v, %v; want the cached defaults", s, err)
	}
	if s, err := here.Settings(ctx, b); err != nil || s.ClientEvents || len(s.PublicChannels) != 0 {
		t.Errorf("another tenant's settings = %+v, %v; want the defaults", s, err)
	}

	// A refused patch changes nothing.
	_, err = here.UpdateSettings(ctx, a, SettingsPatch{ClientEvents: new(bool), PublicChannels: &[]string{"user:1"}})
	if _, ok := errors.AsType[*SettingError](err); !ok {
		t.Errorf("UpdateSettings(user:1) = %v, want a *SettingError", err)
	}
	if s, err := store.Settings(ctx, a); err != nil || !s.ClientEvents || len(s.PublicChannels) != 2 {
		t.Errorf("Settings after a refused patch = %+v, %v; want unchanged", s, err)
	}
	if _, err := store.UpdateSettings(ctx, 999_999, SettingsPatch{ClientEvents: &tru}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateSettings of no tenant = %v, want ErrNotFound", err)
	}

	there.mu.Lock()
	for id, e := range there.entries {
		e.expires = time.Now() // as if CacheTTL had passed
		there.entries[id] = e
	}
	there.mu.Unlock()
	if s, err := there.Settings(ctx, a); err != nil || !s.ClientEvents {
		t.Errorf("Settings on another instance after the TTL = %+v, %v; want the change", s, err)
	}
}
