// Package ssetest reads Server-Sent Events streams in tests exactly as a
// browser's EventSource would. It is an independent implementation of the HTML
// Living Standard, section 9.2.6 "Event stream interpretation", so tests do not
// check the server's encoder against itself.
package ssetest

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Event is one dispatched event.
type Event struct {
	ID    string // the last event ID buffer at dispatch time (it persists across events)
	Type  string // "message" unless an event field set it
	Data  string // data lines joined with "\n"
	Retry int    // value of a valid retry field in this event's block, -1 if none
}

// Parser interprets an event stream fed to it incrementally, in chunks of any size.
type Parser struct {
	line       []byte // raw bytes of the current, not yet terminated line
	afterFirst bool   // the first line is complete (a BOM is only stripped from it)
	afterCR    bool   // last byte was CR: a LF right after it ends no further line
	data       strings.Builder
	eventType  string
	lastID     string
	retry      int // reconnection time, -1 if never set
	blockRetry int // retry set since the last blank line, -1 if none
	comments   []string
}

// NewParser returns a parser at the start of a stream.
func NewParser() *Parser { return &Parser{retry: -1, blockRetry: -1} }

// Parse interprets a whole stream. An event with no final blank line is not
// dispatched: the spec discards pending data at end of file.
func Parse(s string) []Event { return NewParser().Feed([]byte(s)) }

// Comments returns the comment lines seen so far, without the leading ':'.
func (p *Parser) Comments() []string { return p.comments }

// LastEventID returns the last event ID buffer.
func (p *Parser) LastEventID() string { return p.lastID }

// Retry returns the last reconnection time set by a retry field, -1 if none.
func (p *Parser) Retry() int { return p.retry }

// Feed consumes the next bytes of the stream and returns the events they complete.
// Lines end with CRLF, a lone LF or a lone CR. Splitting happens on raw bytes,
// which is safe because CR and LF never occur inside a multi-byte UTF-8 sequence.
func (p *Parser) Feed(b []byte) []Event {
	var events []Event
	for _, c := range b {
		if p.afterCR {
			p.afterCR = false
			if c == '\n' { // second half of a CRLF, possibly split across Feed calls
				continue
			}
		}
		switch c {
		case '\r':
			p.afterCR = true
			fallthrough
		case '\n':
			if ev, ok := p.processLine(); ok {
				events = append(events, ev)
			}
			p.line = p.line[:0]
		default:
			p.line = append(p.line, c)
		}
	}
	return events
}

func (p *Parser) processLine() (Event, bool) {
	raw := p.line
	if !p.afterFirst { // the UTF-8 decoder strips one BOM at the start of the stream
		p.afterFirst = true
		raw = bytes.TrimPrefix(raw, []byte("\uFEFF"))
	}
	line := decodeUTF8(raw)
	switch {
	case line == "": // blank line: dispatch the event
		return p.dispatch()
	case line[0] == ':': // comment
		p.comments = append(p.comments, line[1:])
		return Event{}, false
	}
	// Field name up to the first ':', value after it minus one leading space.
	// A line without ':' is a field whose value is the empty string.
	field, value, found := strings.Cut(line, ":")
	if found {
		value = strings.TrimPrefix(value, " ")
	}
	switch field {
	case "event":
		p.eventType = value
	case "data":
		p.data.WriteString(value)
		p.data.WriteByte('\n')
	case "id":
		if !strings.ContainsRune(value, 0) {
			p.lastID = value
		}
	case "retry":
		if value != "" && strings.Trim(value, "0123456789") == "" {
			n, _ := strconv.Atoi(value) // out of range saturates at the maximum int
			p.retry, p.blockRetry = n, n
		}
	} // any other field is ignored
	return Event{}, false
}

// dispatch follows "dispatch the event": the last event ID is kept either way;
// an empty data buffer resets the buffers without firing; otherwise one trailing
// LF is removed from the data and the type defaults to "message".
func (p *Parser) dispatch() (Event, bool) {
	data, typ, retry := p.data.String(), p.eventType, p.blockRetry
	p.data.Reset()
	p.eventType, p.blockRetry = "", -1
	if data == "" {
		return Event{}, false
	}
	if typ == "" {
		typ = "message"
	}
	return Event{ID: p.lastID, Type: typ, Data: strings.TrimSuffix(data, "\n"), Retry: retry}, true
}

// decodeUTF8 decodes like the WHATWG UTF-8 decoder: each maximal subpart of an
// ill-formed sequence becomes one U+FFFD. utf8.FullRune reports false exactly
// for a proper prefix of a valid encoding, which measures that subpart.
func decodeUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			for n < len(b) && !utf8.FullRune(b[:n+1]) {
				n++
			}
		}
		sb.WriteRune(r)
		b = b[n:]
	}
	return sb.String()
}

// Read parses r as it arrives and calls fn for each event until fn returns false
// (nil), r reaches EOF (nil; a trailing unterminated event is discarded), r fails
// (that error) or ctx ends (ctx.Err()). Reads run in a goroutine so a stalled
// stream cannot block cancellation; it exits once r returns, so close r (e.g.
// resp.Body) after Read returns.
func Read(ctx context.Context, r io.Reader, fn func(Event) bool) error {
	type chunk struct {
		b   []byte
		err error
	}
	chunks, done := make(chan chunk), make(chan struct{})
	defer close(done)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			select {
			case chunks <- chunk{bytes.Clone(buf[:n]), err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	p := NewParser()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c := <-chunks:
			for _, ev := range p.Feed(c.b) {
				if !fn(ev) {
					return nil
				}
			}
			switch {
			case c.err == io.EOF:
				return nil
			case c.err != nil && ctx.Err() != nil:
				return ctx.Err()
			case c.err != nil:
				return c.err
			}
		}
	}
}
