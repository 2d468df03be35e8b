package realtime

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/ssetest"
)

func TestValidType(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "order.created", "x:y_z-1", `App\Events\OrderShipped`, "client-typing", "a/b?c=d&e!", strings.Repeat("t", 200)} {
		if err := ValidType(ok); err != nil {
			t.Errorf("ValidType(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("t", 201), "a b", "a\tb", "a\x7f", "pusher:ping", "pusher_internal:member_added", "x\ndata: y", "x\r", "é", "ready", "resync", "token_expired", "a\x00"} {
		if err := ValidType(bad); err == nil {
			t.Errorf("ValidType(%q) = nil, want an error", bad)
		}
	}
}

func TestParseCursor(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"0": 0, "42": 42, "9223372036854775807": 1<<63 - 1} {
		if got, ok, err := ParseCursor(in); err != nil || !ok || got != want {
			t.Errorf("ParseCursor(%q) = %d, %v, %v; want %d", in, got, ok, err, want)
		}
	}
	if _, ok, err := ParseCursor(""); ok || err != nil {
		t.Errorf("ParseCursor(\"\") = given %v, %v; want none", ok, err)
	}
	for _, bad := range []string{"-1", "1e30", "abc", "9223372036854775808", " 1", "1 ", "+1", strings.Repeat("9", 1000), "0x10"} {
		if _, _, err := ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) = nil error", bad)
		}
	}
}

// FuzzSSEEncode: every event that passes validation is written as one SSE
// frame that a parser following the HTML standard reads back as exactly one
// event, equal to the input.
func FuzzSSEEncode(f *testing.F) {
	for _, s := range []struct{ ch, typ, data string }{
		{"a", "t", `"a\n\nevent: admin\ndata: x"`},
		{"user:1", "x.y", `"\r"`},
		{"b", "c", `{"k":"\r\n","u":"é 日本 😀"}`},
		{"c", "message", "[1,\n2]"},
		{"d", "e", `"\u2028\u0085\u0000"`},
		{"e", "f", "null"},
	} {
		f.Add(s.ch, s.typ, s.data)
	}
	f.Fuzz(func(t *testing.T, ch, typ, data string) {
		if channel.Valid(ch) != nil || ValidType(typ) != nil {
			return
		}
		d, err := compactData(json.RawMessage(data), 64<<10)
		if err != nil {
			return
		}
		e := &Event{ID: 12345, Channel: ch, Type: typ, Data: d, Time: time.Unix(1700000000, 123e6)}
		e.encode()
		got := ssetest.Parse(string(e.Frame))
		if len(got) != 1 {
			t.Fatalf("frame %q parsed into %d events, want 1", e.Frame, len(got))
		}
		if got[0].ID != "12345" || got[0].Type != typ || got[0].Data != string(e.Envelope) {
			t.Fatalf("parsed %+v from frame %q", got[0], e.Frame)
		}
		var env struct {
			ID, Channel, Type, Time string
			Data                    json.RawMessage
		}
		if err := json.Unmarshal([]byte(got[0].Data), &env); err != nil {
			t.Fatalf("envelope %q is not JSON: %v", got[0].Data, err)
		}
		if env.ID != "12345" || env.Channel != ch || env.Type != typ || string(env.Data) != string(d) || env.Time != "2023-11-14T22:13:20.123Z" {
			t.Fatalf("envelope %+v does not match the event", env)
		}
		// The data is the published value, unchanged but for white space.
		var a, b any
		if json.Unmarshal([]byte(data), &a) == nil && json.Unmarshal(env.Data, &b) == nil {
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if string(ja) != string(jb) {
				t.Fatalf("data %s came back as %s", ja, jb)
			}
		}
	})
}

// FuzzPublishDecode: decoding a publish body never panics, and what it
// accepts re-encodes to the same drafts.
func FuzzPublishDecode(f *testing.F) {
	for _, s := range []string{
		`{"channel":"a","type":"t","data":{"x":1}}`,
		`{"channels":["a","b"],"type":"t"}`,
		`{"events":[{"channel":"a","type":"t"},{"channel":"b","type":"u","data":[1]}]}`,
		`{"channel":"a b","type":"t"}`, `[[[[`, `{"data":` + strings.Repeat("[", 100) + `}`, `{"type":"ready","channel":"a"}`,
	} {
		f.Add([]byte(s))
	}
	cfg := PublishConfig{MaxEventBytes: 1 << 10, MaxBatch: 20}
	f.Fuzz(func(t *testing.T, body []byte) {
		var in struct {
			eventInput
			Events []eventInput `json:"events,omitempty"`
		}
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if dec.Decode(&in) != nil {
			return
		}
		inputs := in.Events
		if inputs == nil {
			inputs = []eventInput{in.eventInput}
		}
		drafts, err := cfg.drafts(inputs)
		if err != nil {
			return
		}
		if len(drafts) == 0 || len(drafts) > cfg.MaxBatch {
			t.Fatalf("accepted %d drafts", len(drafts))
		}
		for _, d := range drafts {
			if channel.Valid(d.Channel) != nil || ValidType(d.Type) != nil || !json.Valid(d.Data) || len(d.Data) > cfg.MaxEventBytes {
				t.Fatalf("accepted an invalid draft %+v", d)
			}
			again, err := compactData(d.Data, cfg.MaxEventBytes)
			if err != nil || string(again) != string(d.Data) {
				t.Fatalf("draft data %s does not re-encode to itself: %s %v", d.Data, again, err)
			}
		}
	})
}
