package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// MaxTypeLen is the longest event type.
const MaxTypeLen = 200

// systemTypes are event types the server sends itself; publishers may not use them.
var systemTypes = map[string]bool{"ready": true, "resync": true, "token_expired": true}

// systemPrefixes begin the Pusher protocol's own event names.
var systemPrefixes = []string{"pusher:", "pusher_internal:"}

// ErrInvalid wraps every validation failure of a channel, type or event.
var ErrInvalid = errors.New("invalid")

// Event is a stored event. Frame and Envelope are encoded once, when the
// event enters the hub, and written as they are to every subscriber.
type Event struct {
	TenantID tenant.ID
	ID       int64
	Channel  string
	Type     string
	Data     json.RawMessage
	Time     time.Time
	// Origin is the connection that sent a client event (or the socket a
	// Pusher trigger excluded): live delivery skips it. Not in the envelope.
	Origin string
	// Sender is the user who sent a client event: the token's sub over
	// hybridrt's own transports, the signed-in user_id on a Pusher presence
	// channel. In the envelope as "user", and Pusher clients get it as user_id.
	Sender string

	Envelope []byte // the JSON envelope, on one line
	Frame    []byte // "id: …\nevent: …\ndata: <envelope>\n\n"

	memo atomic.Pointer[[]memoEntry] // doors' own encodings, see Memo
}

type memoEntry struct{ key, val any }

// Memo returns what make returned for e and key the first time it was
// asked: a door that speaks another protocol (a WebSocket's frames) encodes
// each event once for all its connections, as the SSE frame is. key is a
// value of a type of the door's own.
func (e *Event) Memo(key any, make func(*Event) any) any {
	for {
		cur := e.memo.Load()
		if cur != nil {
			for _, m := range *cur {
				if m.key == key {
					return m.val
				}
			}
		}
		v := make(e)
		var next []memoEntry
		if cur != nil {
			next = append(next, *cur...)
		}
		next = append(next, memoEntry{key, v})
		if e.memo.CompareAndSwap(cur, &next) {
			return v
		}
	}
}

// Draft is an event not yet published: it has no id or time.
type Draft struct {
	Channel string          `json:"channel"`
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data"`
	Origin  string          `json:"-"` // the connection that must not receive it live; see Event.Origin
	Sender  string          `json:"-"` // see Event.Sender
	Door    string          `json:"-"` // who published it, for usage: DoorAPI (""), DoorPusher or DoorClient
	// Webhook is a webhook event (JSON) that storing this event sends: a
	// client event's client_event. It goes into the webhook outbox in the
	// event's own transaction, so the two commit together. nil for none.
	Webhook json.RawMessage `json:"-"`
}

// WebhookFunc returns the webhook event a client event d sends, given its
// tenant's settings, or nil when the tenant takes none (ClientEvents.Webhook).
type WebhookFunc func(s tenant.Settings, d Draft) json.RawMessage

// One returns the draft as a publish request of one event.
func (d Draft) One() []Draft { return []Draft{d} }

// ValidType reports why typ is not a publishable event type, or nil.
func ValidType(typ string) error {
	if typ == "" || len(typ) > MaxTypeLen {
		return fmt.Errorf("%w type %q: an event type is 1 to %d characters", ErrInvalid, clip(typ), MaxTypeLen)
	}
	// Printable ASCII without spaces, so that Laravel's App\Events\OrderShipped
	// and Pusher's client-typing work, and an SSE "event:" line stays one line.
	for i := 0; i < len(typ); i++ {
		if c := typ[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w type %q: only printable ASCII characters without spaces are allowed", ErrInvalid, clip(typ))
		}
	}
	if systemTypes[typ] {
		return fmt.Errorf("%w type %q: ready, resync and token_expired are sent by the server and cannot be published", ErrInvalid, typ)
	}
	for _, p := range systemPrefixes {
		if strings.HasPrefix(typ, p) {
			return fmt.Errorf("%w type %q: types starting with %q belong to the Pusher protocol and cannot be published", ErrInvalid, clip(typ), p)
		}
	}
	return nil
}

// clip shortens a bad value for an error message.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	if !utf8.ValidString(s) {
		s = strconv.QuoteToASCII(s)
	}
	return s
}

// compactData checks that data is one JSON value of at most max bytes and
// returns it without insignificant white space, which also puts it on one
// line, as an SSE data field needs. Missing data is JSON null.
func compactData(data json.RawMessage, max int) (json.RawMessage, error) {
	if len(data) == 0 {
		return json.RawMessage("null"), nil
	}
	if !utf8.Valid(data) {
		// json.Compact passes invalid UTF-8 through; a browser would turn it into U+FFFD.
		return nil, fmt.Errorf("%w data: not valid UTF-8", ErrInvalid)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, fmt.Errorf("%w data: not valid JSON", ErrInvalid)
	}
	if buf.Len() > max {
		return nil, fmt.Errorf("%w data: %d bytes encoded, more than the limit of %d", ErrTooLarge, buf.Len(), max)
	}
	return buf.Bytes(), nil
}

// ErrTooLarge is a size limit exceeded; it maps to 413.
var ErrTooLarge = errors.New("too large")

// timeLayout is RFC 3339 in UTC with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// encode fills in the SSE frame of e. The envelope and the data are slices
// of the frame, so an event in the ring costs one buffer, not three.
func (e *Event) encode() {
	id := strconv.FormatInt(e.ID, 10)
	var b bytes.Buffer
	b.Grow(len(e.Data) + len(e.Channel) + 2*len(e.Type) + 2*len(id) + 100)
	b.WriteString("id: " + id + "\nevent: " + e.Type + "\ndata: ")
	start := b.Len()
	b.WriteString(`{"id":"` + id + `","channel":`)
	writeJSONString(&b, e.Channel)
	b.WriteString(`,"type":`)
	writeJSONString(&b, e.Type)
	b.WriteString(`,"data":`)
	dataStart := b.Len()
	b.Write(e.Data)
	dataEnd := b.Len()
	b.WriteString(`,"time":"` + e.Time.UTC().Format(timeLayout) + `"`)
	if e.Sender != "" {
		// A client event's sender, as its token says: who is typing
		// cannot be forged in the data.
		b.WriteString(`,"user":`)
		writeJSONString(&b, e.Sender)
	}
	b.WriteString(`}`)
	end := b.Len()
	// Channel and type hold no CR or LF (channel.Valid, ValidType), and the
	// envelope is compact JSON, whose strings escape them: the frame's
	// fields are one line each.
	b.WriteString("\n\n")
	f := b.Bytes()
	e.Frame, e.Envelope, e.Data = f, f[start:end:end], f[dataStart:dataEnd:dataEnd]
}

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s) // a string always marshals
	b.Write(q)
}

// MarshalJSON writes the envelope.
func (e *Event) MarshalJSON() ([]byte, error) {
	if e.Envelope == nil {
		e.encode()
	}
	return e.Envelope, nil
}

// encodeEvents sends v, which holds events, as JSON with the given status.
// Unlike web.Encode it does not HTML-escape: encoding/json would rewrite
// <, >, &, U+2028 and U+2029 inside the events' data as \u escapes, and
// DESIGN promises the same envelope, byte for byte, on every transport
// (SSE writes it as stored). nosniff keeps a browser from reading the raw
// data as HTML.
func encodeEvents(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// systemFrame is an SSE frame the server sends on its own: ready, resync, token_expired.
func systemFrame(typ, id string, data any) []byte {
	d, _ := json.Marshal(data)
	var b bytes.Buffer
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	b.WriteString("event: " + typ + "\ndata: ")
	b.Write(d)
	b.WriteString("\n\n")
	return b.Bytes()
}

// ParseCursor parses an event id given by a client (Last-Event-ID, lastEventId,
// cursor, after): a decimal number from 0 to 2^63-1. Empty means "none".
func ParseCursor(s string) (int64, bool, error) {
	if s == "" {
		return 0, false, nil
	}
	if len(s) > 19 {
		return 0, false, fmt.Errorf("%w cursor %q: an event id is a decimal number", ErrInvalid, clip(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false, fmt.Errorf("%w cursor %q: an event id is a decimal number", ErrInvalid, clip(s))
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w cursor %q: out of range", ErrInvalid, clip(s))
	}
	return n, true, nil
}
