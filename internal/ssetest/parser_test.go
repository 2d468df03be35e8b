package ssetest

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// msg is a default-typed event with no ID and no retry field.
func msg(data string) Event { return Event{Type: "message", Data: data, Retry: -1} }

type parseCase struct {
	name     string
	in       string
	want     []Event
	comments []string
	lastID   string
}

var parseCases = []parseCase{
	// Examples from the HTML Living Standard, section 9.2.6.
	{name: "spec stock ticker", in: "data: YHOO\ndata: +2\ndata: 10\n\n", want: []Event{msg("YHOO\n+2\n10")}},
	{
		name: "spec comment and ids",
		in:   ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
		want: []Event{
			{ID: "1", Type: "message", Data: "first event", Retry: -1},
			msg("second event"), // the empty id line resets the last event ID
			msg(" third event"), // only one leading space is removed
		},
		comments: []string{" test stream"},
	},
	{name: "spec empty data", in: "data\n\ndata\ndata\n\ndata:", want: []Event{msg(""), msg("\n")}},
	{name: "spec optional space", in: "data:test\n\ndata: test\n\n", want: []Event{msg("test"), msg("test")}},

	// Line endings.
	{name: "LF", in: "event: a\ndata: x\ndata: y\n\n", want: []Event{{Type: "a", Data: "x\ny", Retry: -1}}},
	{name: "CR", in: "event: a\rdata: x\rdata: y\r\r", want: []Event{{Type: "a", Data: "x\ny", Retry: -1}}},
	{name: "CRLF", in: "event: a\r\ndata: x\r\ndata: y\r\n\r\n", want: []Event{{Type: "a", Data: "x\ny", Retry: -1}}},
	{name: "mixed endings", in: "data: a\rdata: b\ndata: c\r\n\r\ndata: d\n\r", want: []Event{msg("a\nb\nc"), msg("d")}},
	{name: "LF CR is two endings", in: "data: a\n\rdata: b\n\n", want: []Event{msg("a"), msg("b")}},

	// BOM.
	{name: "BOM stripped", in: "\uFEFFdata: x\n\n", want: []Event{msg("x")}},
	{name: "only one BOM stripped", in: "\uFEFF\uFEFFdata: x\n\ndata: y\n\n", want: []Event{msg("y")}},
	{name: "BOM after start kept", in: "\n\uFEFFdata: x\n\ndata: y\n\n", want: []Event{msg("y")}},

	// Field syntax.
	{name: "field without colon", in: "data\n\n", want: []Event{msg("")}},
	{name: "event without colon defaults type", in: "event\ndata: x\n\n", want: []Event{msg("x")}},
	{name: "split at first colon", in: "data: a: b\ndata::c\n\n", want: []Event{msg("a: b\n:c")}},
	{name: "unknown field ignored", in: "foo: bar\ndata: x\n\n", want: []Event{msg("x")}},
	{name: "field names case-sensitive", in: "Data: x\n\n", want: nil},
	{name: "trailing space kept", in: "data: x \n\n", want: []Event{msg("x ")}},
	{name: "comments recorded", in: ":\n:hb\ndata: x\n: mid\n\n", want: []Event{msg("x")}, comments: []string{"", "hb", " mid"}},

	// retry.
	{name: "retry", in: "retry: 1000\ndata: x\n\ndata: y\n\n", want: []Event{{Type: "message", Data: "x", Retry: 1000}, msg("y")}},
	{name: "retry non-digit ignored", in: "retry: 10x\ndata: x\n\n", want: []Event{msg("x")}},
	{name: "retry empty, negative, two spaces ignored", in: "retry\nretry: -1\nretry:  5\ndata: x\n\n", want: []Event{msg("x")}},

	// id.
	{name: "id persists", in: "id: 7\ndata: a\n\ndata: b\n\n", want: []Event{
		{ID: "7", Type: "message", Data: "a", Retry: -1}, {ID: "7", Type: "message", Data: "b", Retry: -1},
	}, lastID: "7"},
	{name: "id with NUL ignored", in: "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", want: []Event{
		{ID: "1", Type: "message", Data: "a", Retry: -1}, {ID: "1", Type: "message", Data: "b", Retry: -1},
	}, lastID: "1"},
	{name: "id updated by block without data", in: "id: 5\n\ndata: x\n\n", want: []Event{{ID: "5", Type: "message", Data: "x", Retry: -1}}, lastID: "5"},

	// Dispatch.
	{name: "no data not dispatched, type reset", in: "event: foo\n\ndata: x\n\n", want: []Event{msg("x")}},
	{name: "custom type", in: "event: add\ndata: 1\n\n", want: []Event{{Type: "add", Data: "1", Retry: -1}}},
	{name: "unterminated event dropped", in: "data: x\n\ndata: y\n", want: []Event{msg("x")}},
	{name: "unterminated line dropped", in: "data: x", want: nil},

	// UTF-8.
	{name: "multi-byte", in: "data: héllo 世界 🎉\n\n", want: []Event{msg("héllo 世界 🎉")}},
	{name: "invalid UTF-8 replaced per maximal subpart", in: "data: \xE2\x82x\xFF\xF0\x9F\x8E\n\n", want: []Event{msg("\uFFFDx\uFFFD\uFFFD")}},
	{name: "surrogate bytes replaced one each", in: "data: \xED\xA0\x80\n\n", want: []Event{msg("\uFFFD\uFFFD\uFFFD")}},
}

// result is everything observable after feeding a stream.
type result struct {
	events   []Event
	comments []string
	lastID   string
	retry    int
}

func (r result) equal(o result) bool {
	return slices.Equal(r.events, o.events) && slices.Equal(r.comments, o.comments) &&
		r.lastID == o.lastID && r.retry == o.retry
}

func feedChunks(chunks ...string) result {
	p := NewParser()
	var events []Event
	for _, c := range chunks {
		events = append(events, p.Feed([]byte(c))...)
	}
	return result{events, p.Comments(), p.LastEventID(), p.Retry()}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Parse(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("Parse(%q): got %+v, want %+v", tc.in, got, tc.want)
			}
			got := feedChunks(tc.in)
			if !slices.Equal(got.comments, tc.comments) {
				t.Errorf("Comments() after %q: got %q, want %q", tc.in, got.comments, tc.comments)
			}
			if got.lastID != tc.lastID {
				t.Errorf("LastEventID() after %q: got %q, want %q", tc.in, got.lastID, tc.lastID)
			}
		})
	}
}

func TestParseByteAtATime(t *testing.T) {
	t.Parallel()
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := feedChunks(tc.in)
			got := feedChunks(bytesOf(tc.in)...)
			if !got.equal(want) {
				t.Errorf("byte-at-a-time %q: got %+v, want %+v", tc.in, got, want)
			}
		})
	}
}

// bytesOf splits s into one-byte strings, cutting through multi-byte characters.
func bytesOf(s string) []string {
	out := make([]string, len(s))
	for i := range len(s) {
		out[i] = s[i : i+1]
	}
	return out
}

func TestParserRetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", -1},
		{"retry: 1000\n", 1000},
		{"retry: 1000\nretry: 10x\n", 1000},
		{"retry: 1000\n\nretry:0\n\n", 0},
		{"retry: 1000\nretry: \n", 1000},
		{"retry: 99999999999999999999999\n", int(^uint(0) >> 1)},
	} {
		if got := feedChunks(tc.in).retry; got != tc.want {
			t.Errorf("Retry() after %q: got %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestFeedCRLFSplitAcrossCalls(t *testing.T) {
	t.Parallel()
	// Each step: chunk fed, events that chunk must complete. A CR ends its line
	// at once; the LF that follows in the next chunk must not end another line.
	p := NewParser()
	for i, step := range []struct {
		chunk string
		want  []Event
	}{
		{"data: a\r", nil},
		{"\ndata: b\r", nil},
		{"\n", nil},
		{"\r", []Event{msg("a\nb")}},
		{"\n", nil},
		{"data: c\r", nil},
		{"\r", []Event{msg("c")}},
		{"\ndata: d\n\n", []Event{msg("d")}}, // LF after CR CR: swallowed by the second CR only
	} {
		if got := p.Feed([]byte(step.chunk)); !slices.Equal(got, step.want) {
			t.Errorf("step %d Feed(%q): got %+v, want %+v", i, step.chunk, got, step.want)
		}
	}
}

func TestFeedSplitMultiByte(t *testing.T) {
	t.Parallel()
	in := "\uFEFFdata: é世🎉\r\n\r\n"
	want := feedChunks(in)
	if w := []Event{msg("é世🎉")}; !slices.Equal(want.events, w) {
		t.Fatalf("whole %q: got %+v, want %+v", in, want.events, w)
	}
	for i := range len(in) + 1 {
		for j := i; j <= len(in); j++ {
			if got := feedChunks(in[:i], in[i:j], in[j:]); !got.equal(want) {
				t.Errorf("split at %d,%d: got %+v, want %+v", i, j, got, want)
			}
		}
	}
}

func TestRead(t *testing.T) {
	t.Parallel()
	in := ": hi\ndata: a\n\nid: 2\ndata: b\r\n\r\ndata: c\r\rdata: unterminated\n"
	all := []Event{msg("a"), {ID: "2", Type: "message", Data: "b", Retry: -1}, {ID: "2", Type: "message", Data: "c", Retry: -1}}
	for _, tc := range []struct {
		name string
		r    io.Reader
		stop int // fn returns false after this many events, 0 for never
		want []Event
	}{
		{"whole", strings.NewReader(in), 0, all},
		{"one byte reads", iotest.OneByteReader(strings.NewReader(in)), 0, all},
		{"half reads", iotest.HalfReader(strings.NewReader(in)), 0, all},
		{"stop early", iotest.OneByteReader(strings.NewReader(in)), 2, all[:2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []Event
			err := Read(context.Background(), tc.r, func(ev Event) bool {
				got = append(got, ev)
				return len(got) != tc.stop
			})
			if err != nil {
				t.Errorf("Read: got error %v, want nil", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Read: got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\n"), iotest.ErrReader(boom))
	var got []Event
	err := Read(context.Background(), r, func(ev Event) bool { got = append(got, ev); return true })
	if !errors.Is(err, boom) {
		t.Errorf("Read: got error %v, want %v", err, boom)
	}
	if want := []Event{msg("a")}; !slices.Equal(got, want) {
		t.Errorf("Read: got %+v, want %+v", got, want)
	}
}

func TestReadCancel(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	defer pr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Deliver one event, then stall: only cancellation can end Read.
		if _, err := pw.Write([]byte("data: a\n\n")); err != nil {
			t.Errorf("pipe write: got error %v, want nil", err)
		}
	}()
	var got []Event
	err := Read(ctx, pr, func(ev Event) bool { got = append(got, ev); cancel(); return true })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Read: got error %v, want %v", err, context.Canceled)
	}
	if want := []Event{msg("a")}; !slices.Equal(got, want) {
		t.Errorf("Read: got %+v, want %+v", got, want)
	}
}

func FuzzParserChunking(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.in, uint(len(tc.in)/2))
	}
	f.Fuzz(func(t *testing.T, in string, split uint) {
		i := int(split % uint(len(in)+1))
		want := feedChunks(in)
		if got := feedChunks(in[:i], in[i:]); !got.equal(want) {
			t.Errorf("Feed(%q)+Feed(%q): got %+v, want %+v", in[:i], in[i:], got, want)
		}
		if got := Parse(in); !slices.Equal(got, want.events) {
			t.Errorf("Parse(%q): got %+v, want %+v", in, got, want.events)
		}
		for _, ev := range want.events {
			if !utf8.ValidString(ev.ID + ev.Type + ev.Data) {
				t.Errorf("Parse(%q): got invalid UTF-8 in %+v, want valid", in, ev)
			}
		}
	})
}
