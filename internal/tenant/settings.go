package tenant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/hybridrt/hybridrt/internal/channel"
)

// Settings are what a tenant chooses for itself (DESIGN, "Tenant settings"),
// as opposed to the quotas the operator sets. They are stored as top-level
// keys of the tenants.settings column, beside the operator's "quotas" key,
// which they never read or touch:
//
//	{"quotas": {...}, "publicChannels": ["news", "scores-*"], "clientEvents": true}
//
// A key that is absent means its default: no public channel, no client
// events, no webhook.
type Settings struct {
	// PublicChannels are the channel names, or "prefix*" patterns, that a
	// Pusher client may subscribe to without an auth signature. "*" alone
	// makes every name public that the Pusher protocol does not reserve.
	PublicChannels []string `json:"publicChannels"`
	// ClientEvents lets clients trigger client-… events on private and
	// presence channels.
	ClientEvents bool `json:"clientEvents"`
	// WebhookURL is where the tenant's webhooks go, WebhookEvents which
	// ones it takes (internal/webhook). Only their shape is checked here:
	// Cache.CheckWebhookURL says where a URL may point.
	WebhookURL    string   `json:"webhookUrl"`
	WebhookEvents []string `json:"webhookEvents"`
}

// WebhookWantsSQL is the SQL condition under which the tenants row aliased
// t takes webhook events of one of names (a SQL text[] expression): it has
// a webhookUrl, and its webhookEvents holds one of them. Whatever writes
// the webhook outbox checks it in its own transaction, against the
// settings as committed, so a changed setting counts at once everywhere.
func WebhookWantsSQL(t, names string) string {
	return `(coalesce(` + t + `.settings->>'webhookUrl', '') <> '' AND coalesce(` + t + `.settings->'webhookEvents', '[]') ?| ` + names + `)`
}

// MarshalJSON writes s with empty lists as [], never null.
func (s Settings) MarshalJSON() ([]byte, error) {
	type plain Settings // without this method
	p := plain(s)
	if p.PublicChannels == nil {
		p.PublicChannels = []string{}
	}
	if p.WebhookEvents == nil {
		p.WebhookEvents = []string{}
	}
	return json.Marshal(p)
}

// IsPublic reports whether a Pusher client may subscribe to name without an
// auth signature: name matches one of PublicChannels exactly, or starts
// with the prefix of one of its "prefix*" patterns. Whatever the list
// says, names the Pusher protocol reserves for authorized channels
// (private-…, presence-…) and names with ':' are never public.
func (s Settings) IsPublic(name string) bool {
	if reservedForAuth(name) || strings.Contains(name, ":") {
		return false
	}
	return slices.ContainsFunc(s.PublicChannels, func(p string) bool {
		prefix, pattern := strings.CutSuffix(p, "*")
		return p == name || pattern && strings.HasPrefix(name, prefix)
	})
}

// reservedForAuth reports whether name is a Pusher private or presence
// channel (private-encrypted-… included), which always needs a signature.
func reservedForAuth(name string) bool {
	return strings.HasPrefix(name, "private-") || strings.HasPrefix(name, "presence-")
}

// MaxPublicChannels is the most entries PublicChannels may hold.
const MaxPublicChannels = 100

// WebhookEventNames are the events a webhook may be sent for, as Pusher names them.
var WebhookEventNames = []string{"channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "cache_miss"}

// SettingsPatch is a change to some settings: a nil field is left as it is.
// JSON null counts as leaving the field out; send [], false or "" to clear one.
type SettingsPatch struct {
	PublicChannels *[]string `json:"publicChannels,omitempty"`
	ClientEvents   *bool     `json:"clientEvents,omitempty"`
	WebhookURL     *string   `json:"webhookUrl,omitempty"`
	WebhookEvents  *[]string `json:"webhookEvents,omitempty"`
}

// SettingError is a setting the server refuses. Its message names the field
// and says what to send instead.
type SettingError struct {
	Field  string // "publicChannels", "webhookUrl" or "webhookEvents"
	Reason string
}

func (e *SettingError) Error() string { return e.Reason }

// Code is the stable problem code for e: invalid_public_channels,
// invalid_webhook_url or invalid_webhook_events.
func (e *SettingError) Code() string {
	var b strings.Builder
	b.WriteString("invalid_")
	for _, r := range e.Field {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Validate reports the first field of p the server refuses, as a
// *SettingError, or nil.
func (p SettingsPatch) Validate() error {
	if p.PublicChannels != nil {
		if err := ValidPublicChannels(*p.PublicChannels); err != nil {
			return err
		}
	}
	if p.WebhookURL != nil {
		if err := validWebhookURL(*p.WebhookURL); err != nil {
			return err
		}
	}
	if p.WebhookEvents != nil {
		if err := validWebhookEvents(*p.WebhookEvents); err != nil {
			return err
		}
	}
	return nil
}

// ValidPublicChannels reports, as a *SettingError, why list cannot be a
// tenant's public channels: at most MaxPublicChannels entries, each a
// channel name or a "prefix*" pattern ("*" alone: everything), without ':'
// (such names are never reachable over the Pusher protocol) and not
// private-… or presence-… (those always need an auth signature).
func ValidPublicChannels(list []string) error {
	bad := func(format string, a ...any) error {
		return &SettingError{Field: "publicChannels", Reason: `"publicChannels": ` + fmt.Sprintf(format, a...)}
	}
	if len(list) > MaxPublicChannels {
		return bad("at most %d entries, not %d; use prefix* patterns to cover many channels", MaxPublicChannels, len(list))
	}
	for _, e := range list {
		if e != "*" {
			if err := channel.ValidPattern(e); err != nil {
				return bad("%v", err)
			}
		}
		switch {
		case strings.Contains(e, ":"):
			return bad("%q contains ':'; such channels are never reachable over the Pusher protocol", e)
		case reservedForAuth(e):
			return bad("%q: private- and presence- channels always need an auth signature and cannot be public", e)
		}
	}
	return nil
}

func validWebhookURL(s string) error {
	if s == "" {
		return nil
	}
	bad := func(reason string) error {
		return &SettingError{Field: "webhookUrl", Reason: `"webhookUrl" ` + reason}
	}
	u, err := url.Parse(s)
	switch {
	case len(s) > 2048:
		return bad("is longer than 2048 characters")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "":
		return bad(`must be an https:// URL such as "https://example.com/pusher/webhook", or "" for none`)
	case u.User != nil:
		return bad("must not carry a user name or password; put a secret in the path or query instead")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return bad("must not have a #fragment")
	}
	return nil
}

func validWebhookEvents(list []string) error {
	for _, e := range list {
		if !slices.Contains(WebhookEventNames, e) {
			return &SettingError{Field: "webhookEvents", Reason: fmt.Sprintf(`"webhookEvents": %q is not one of %s`, e, strings.Join(WebhookEventNames, ", "))}
		}
	}
	return nil
}

// decodeSettings reads the tenants.settings column: the operator's quotas
// and the tenant's own settings beside them.
func decodeSettings(raw []byte) (Quotas, Settings, error) {
	var q struct {
		Quotas Quotas `json:"quotas"`
	}
	var s Settings
	if err := errors.Join(json.Unmarshal(raw, &q), json.Unmarshal(raw, &s)); err != nil {
		return Quotas{}, Settings{}, err
	}
	return q.Quotas, s, nil
}

// config returns tenant id's quotas and settings, read in one query.
func (s *Store) config(ctx context.Context, id ID) (Quotas, Settings, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx, `SELECT settings FROM tenants WHERE id = $1`, id).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return Quotas{}, Settings{}, ErrNotFound
	}
	if err != nil {
		return Quotas{}, Settings{}, fmt.Errorf("tenant: read settings of %d: %w", id, err)
	}
	q, st, err := decodeSettings(raw)
	if err != nil {
		return Quotas{}, Settings{}, fmt.Errorf("tenant: settings of %d: %w", id, err)
	}
	return q, st, nil
}

// Settings returns tenant id's settings.
func (s *Store) Settings(ctx context.Context, id ID) (Settings, error) {
	_, st, err := s.config(ctx, id)
	return st, err
}

// UpdateSettings changes the fields that p sets, after checking them (a
// *SettingError when one is refused, and nothing changes), and returns the
// tenant's settings as they now are. The change is one statement, so two
// patches of different fields at once both take effect. Callers that
// cache settings should use Cache.UpdateSettings instead.
func (s *Store) UpdateSettings(ctx context.Context, id ID, p SettingsPatch) (Settings, error) {
	if err := p.Validate(); err != nil {
		return Settings{}, err
	}
	patch, err := json.Marshal(p) // only the fields p sets: they are omitempty pointers
	if err != nil {
		return Settings{}, err
	}
	var raw []byte
	err = s.pool.QueryRow(ctx,
		`UPDATE tenants SET settings = settings || $2::jsonb WHERE id = $1 RETURNING settings`,
		id, patch).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return Settings{}, ErrNotFound
	}
	if err != nil {
		return Settings{}, fmt.Errorf("tenant: update settings of %d: %w", id, err)
	}
	_, st, err := decodeSettings(raw)
	if err != nil {
		return Settings{}, fmt.Errorf("tenant: settings of %d: %w", id, err)
	}
	return st, nil
}
