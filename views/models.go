// Package views renders the console's pages and fragments with templ. Its
// components take view models shaped like the screens and touch nothing
// else: no database, no request, no context values.
package views

// Page is what every full page needs: its title, which nav item is
// current, and who is logged in.
type Page struct {
	Title      string
	Nav        string // "overview", "usage", "clients", "events", "keys", "signing-keys", "tokens", "pusher", "webhooks", "operator"
	CSRF       string // the session's CSRF token; empty when logged out
	TenantName string
	Operator   bool
	Flash      string
	FlashError bool
}

// LoggedIn reports whether the page is shown to a session.
func (p Page) LoggedIn() bool { return p.CSRF != "" }

// Form holds a form's values and its errors, by field name.
type Form struct {
	Values map[string]string
	Errors map[string]string
}

// Get returns a field's value.
func (f Form) Get(name string) string { return f.Values[name] }

// Err returns a field's error, or "".
func (f Form) Err(name string) string { return f.Errors[name] }

// SignupResult is shown once, right after sign-up.
type SignupResult struct {
	TenantName    string
	APIKey        string
	Kid           string
	SigningSecret string
}

// Overview is the tenant's front page.
type Overview struct {
	Connections string
	EventsToday string
	EventsTotal string
	APIKeys     string
	SigningKeys string
	Head        string
	Charts      UsageCharts // usage over the last hour, day or 30 days
}

// ClientRow is one connected client.
type ClientRow struct {
	ID, User, Channels, Transport, Instance, Address, Agent, Since string
}

// transportBadge is the class of a client's transport badge: each transport
// the service speaks has its own colour, and anything else a plain badge.
func transportBadge(transport string) string {
	switch transport {
	case "sse", "polling", "websocket", "ws":
		return "badge " + transport
	}
	return "badge"
}

// LogEntry is one event in the live log.
type LogEntry struct {
	ID, Time, Channel, Type, Data string
}

// KeyRow is one API key.
type KeyRow struct {
	ID, Name, Prefix, Created, LastUsed string
}

// SigningKeyRow is one signing key.
type SigningKeyRow struct {
	Kid, Created string
}

// Created is a secret shown once after creation.
type Created struct {
	Label, Value, Note string
}

// TokenResult is a minted subscriber token with snippets that use it.
type TokenResult struct {
	Token, ExpiresAt, Curl, JS string
}

// TenantRow is one tenant in the operator view.
type TenantRow struct {
	ID, Name, Created, Connections, EventsStored, EventsTotal string
	SuspendedAt                                               string // empty while active
}

// InstanceRow is one instance in the operator view: its connections, in
// all and by transport, and its lag, the time since its last heartbeat.
type InstanceRow struct {
	ID, Started, HeartbeatAge, Connections string
	SSE, WS, Pusher, Polling               string
	Stale                                  bool
}

// PusherInfo is the Pusher compatibility page: the credentials a Pusher app
// needs and ready-to-paste snippets that use them.
type PusherInfo struct {
	AppID                  string // the tenant's id
	Host, Port, Scheme     string // from PUBLIC_URL
	PathIgnored            string // PUBLIC_URL's path, which Pusher clients do not use; "" when none
	Keys                   []SigningKeyRow
	JS, Laravel, Env, Node string // snippets
}
