package pusher

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/wsconn"
)

// Close codes and pusher:error codes of the Channels protocol. pusher-js
// acts on the range: 4000–4099 it does not reconnect, 4100–4199 it
// reconnects after a back-off, 4200–4299 at once.
const (
	codeAppNotFound      = 4001 // no such key
	codeAppDisabled      = 4003 // the tenant is suspended
	codeNoProtocol       = 4008 // no protocol= in the URL
	codeBadProtocol      = 4007 // a protocol version other than 5–7
	codeUnauthorized     = 4009 // sign-in failed, the key was revoked, the user was terminated
	codeOverCapacity     = 4100 // shutting down, or the tenant's connection limit: come back after a back-off
	codeReconnect        = 4200 // generic: reconnect at once
	codePongTimeout      = 4201 // the client stopped answering
	codeClientEventLimit = 4301 // client event rejected: over the rate
)

// message is a protocol message in either direction. Data is a string in
// messages the server sends (see ToPusher), and any JSON in those it reads:
// pusher-js sends objects for its own events and whatever the app gave for
// client events.
type message struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// frame encodes a message the server sends, its data as a string.
func frame(event, channel string, data string) []byte {
	b := make([]byte, 0, len(data)+len(event)+len(channel)+48)
	b = append(b, `{"event":`...)
	b = strconv.AppendQuote(b, event)
	if channel != "" {
		b = append(b, `,"channel":`...)
		b = appendJSONString(b, channel)
	}
	b = append(b, `,"data":`...)
	b = appendJSONString(b, data)
	return append(b, '}')
}

// jsonFrame encodes a message whose data string is v's JSON.
func jsonFrame(event, channel string, v any) []byte {
	d, _ := json.Marshal(v)
	return frame(event, channel, string(d))
}

// errorFrame is pusher:error with a code (0 for none) and a message.
func errorFrame(code int, msg string) []byte {
	type body struct {
		Code    *int   `json:"code"`
		Message string `json:"message"`
	}
	b := body{Message: msg}
	if code != 0 {
		b.Code = &code
	}
	d, _ := json.Marshal(map[string]any{"event": "pusher:error", "data": b})
	return d
}

// subscriptionError is pusher:subscription_error as pusher-js reads it:
// type, error and status, the status an HTTP one.
func subscriptionError(channel string, status int, reason string) []byte {
	return jsonFrame("pusher:subscription_error", channel, map[string]any{
		"type": "AuthError", "error": reason, "status": status,
	})
}

// appendJSONString appends s as a JSON string, escaping as encoding/json
// does but leaving <, > and & alone.
func appendJSONString(b []byte, s string) []byte {
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return append(b, strings.TrimSuffix(sb.String(), "\n")...)
}

// eventMemo keys an event's Pusher frame in realtime.Event.Memo.
type eventMemo struct{}

// eventFrame is e as a Pusher message, framed once for every connection:
// its id rides along as an extra field, which Pusher clients ignore, and a
// client event on a presence channel carries its sender's user_id.
func eventFrame(e *realtime.Event) []byte {
	return e.Memo(eventMemo{}, func(e *realtime.Event) any {
		b := make([]byte, 0, len(e.Data)+len(e.Type)+len(e.Channel)+64)
		b = append(b, `{"event":`...)
		b = appendJSONString(b, e.Type)
		b = append(b, `,"channel":`...)
		b = appendJSONString(b, e.Channel)
		b = append(b, `,"data":`...)
		b = appendJSONString(b, ToPusher(e.Data))
		if e.Sender != "" { // a client event on a presence channel
			b = append(b, `,"user_id":`...)
			b = appendJSONString(b, e.Sender)
		}
		b = append(b, `,"id":"`...)
		b = strconv.AppendInt(b, e.ID, 10)
		b = append(b, `"}`...)
		return wsconn.Text(b)
	}).([]byte)
}

// Channel kinds by prefix, as Pusher names them.
const (
	prefixPrivate   = "private-"
	prefixEncrypted = "private-encrypted-"
	prefixPresence  = "presence-"
	prefixCache     = "cache-"
)

// kind describes a channel name: whether it needs an auth signature, is a
// presence channel, keeps its last event.
type kind struct {
	private, encrypted, presence, cache bool
}

func kindOf(name string) kind {
	has := func(p string) bool { return strings.HasPrefix(name, p) }
	return kind{
		private:   has(prefixPrivate),
		encrypted: has(prefixEncrypted),
		presence:  has(prefixPresence),
		cache: has(prefixCache) || has(prefixPrivate+prefixCache) ||
			has(prefixEncrypted+prefixCache) || has(prefixPresence+prefixCache),
	}
}

// authorized reports whether the channel needs a signature from the
// tenant's backend.
func (k kind) authorized() bool { return k.private || k.presence }

// label names the kind in metrics.
func (k kind) label() string {
	switch {
	case k.presence:
		return "presence"
	case k.encrypted:
		return "private-encrypted"
	case k.private:
		return "private"
	}
	return "public"
}
