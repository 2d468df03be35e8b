package hybridws

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/wsconn"
)

// Subprotocol is the WebSocket subprotocol a client must offer.
const Subprotocol = "hybridrt.v1"

// Close codes (docs/protocol.md). 1000–1015 are RFC 6455's; the 4000s are
// the protocol's own, and say whether reconnecting can help.
const (
	CodeUnauthorized   = 4001 // no valid token, the token expired, its key was revoked: reconnect with a new token
	CodeForbidden      = 4003 // the tenant is suspended: do not reconnect until it is not
	CodePingTimeout    = 4008 // the client was silent too long: reconnect
	CodeTooMany        = 4029 // the tenant's connection limit: reconnect later
	CodeServiceRestart = 1012 // the instance is shutting down: reconnect (elsewhere)
	CodeUnavailable    = 1011 // the database cannot answer: reconnect after a back-off
)

// message is what a client sends: one JSON object with an op.
type message struct {
	Op       string          `json:"op"`
	Ref      json.RawMessage `json:"ref,omitempty"` // the client's own tag, echoed in the answer
	Token    string          `json:"token,omitempty"`
	Channels []string        `json:"channels,omitempty"`
	Cursor   string          `json:"cursor,omitempty"`
	Channel  string          `json:"channel,omitempty"`
	Type     string          `json:"type,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// reply is a text frame of op with fields, and the request's ref.
func reply(op string, ref json.RawMessage, fields map[string]any) []byte {
	m := make(map[string]any, len(fields)+2)
	for k, v := range fields {
		m[k] = v
	}
	m["op"] = op
	if len(ref) > 0 {
		m["ref"] = ref
	}
	b, _ := json.Marshal(m)
	return wsconn.Text(b)
}

// errorReply is a non-fatal error: the connection goes on.
func errorReply(ref json.RawMessage, code, message string) []byte {
	return reply("error", ref, map[string]any{"code": code, "message": message})
}

// eventKey is this door's key for its frame of an event (Event.Memo).
type eventKey struct{}

// eventFrame is e as this door sends it: {"op":"event","event":<envelope>},
// encoded once for every connection.
func eventFrame(e *realtime.Event) []byte {
	return e.Memo(eventKey{}, func(e *realtime.Event) any {
		b := make([]byte, 0, len(e.Envelope)+24)
		b = append(b, `{"op":"event","event":`...)
		b = append(b, e.Envelope...)
		b = append(b, '}')
		return wsconn.Text(b)
	}).([]byte)
}

// id is an event id as the protocol writes it, a decimal string.
func id(n int64) string { return strconv.FormatInt(n, 10) }

// validRef accepts a ref of at most 64 bytes of JSON: a string or a number.
func validRef(ref json.RawMessage) bool {
	if len(ref) == 0 {
		return true
	}
	if len(ref) > 64 {
		return false
	}
	var v any
	if json.Unmarshal(ref, &v) != nil {
		return false
	}
	switch v.(type) {
	case string, float64:
		return true
	}
	return false
}

// utc is t in UTC, as the protocol writes times.
func utc(t time.Time) time.Time { return t.UTC() }
