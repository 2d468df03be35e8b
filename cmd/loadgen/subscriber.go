package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// streamConfig is what every subscriber shares.
type streamConfig struct {
	dialer  *dialer
	path    string // /api/realtime/sse?channels=…, or /app/{key}?protocol=7… for pusher
	pusher  string // the channel to subscribe to over the Pusher protocol; "" for SSE
	native  string // the channel to subscribe to over hybridrt's own WebSocket; "" otherwise
	token   string
	latency *histogram // receive time − send time carried in the data
	stored  *histogram // receive time − the envelope's "time" (when the server stored the event, ms)
	bufSize int        // read buffer size: larger buffers mean fewer reads, but cost memory per subscriber
}

// subscriber is one SSE or WebSocket connection and what it received. Only
// its own goroutine touches ids and the counters without atomics; main reads
// them after that goroutine has returned.
type subscriber struct {
	cfg *streamConfig

	ids    idSet // distinct event ids received
	lastID int64 // highest event id received, or the ready cursor: where to resume
	dups   int64
	ooo    int64 // arrived after a higher id

	count atomic.Int64 // len(ids), for the settle check
	high  atomic.Int64 // lastID, for the settle check

	reconnects   int
	resyncs      int
	tokenExpired int
	noTime       int64 // events whose data carried no send time
	connected    bool  // got its first ready
	err          error // why it ended, if not by cancellation

	// parser state
	now    time.Time // when the data being parsed arrived
	stale  bool      // the buffer ran dry: take a new now at the next dispatch
	evType []byte
	data   []byte
	id     []byte
	line   []byte
}

// statusError is a subscription the server refused.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.body) }

// run connects, reports the first ready (or the failure to get one) to
// ready, then reads events until ctx ends, reconnecting with Last-Event-ID
// when the stream breaks.
func (s *subscriber) run(ctx context.Context, ready func(error)) {
	const openAttempts = 4
	signalled := false
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.stream(ctx, func() {
			if !signalled {
				signalled, s.connected = true, true
				ready(nil)
			}
		})
		if ctx.Err() != nil {
			if !signalled {
				ready(ctx.Err())
			}
			return
		}
		if !signalled && attempt >= openAttempts {
			s.err = err
			ready(err)
			return
		}
		if signalled {
			s.reconnects++
			if s.reconnects > 1000 {
				s.err = fmt.Errorf("gave up after 1000 reconnects: %w", err)
				return
			}
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			if !signalled {
				ready(ctx.Err())
			}
			return
		}
		backoff = min(2*backoff, 4*time.Second)
	}
}

// stream makes one connection and reads it until it ends.
func (s *subscriber) stream(ctx context.Context, onReady func()) error {
	switch {
	case s.cfg.pusher != "":
		return s.pusherStream(ctx, onReady)
	case s.cfg.native != "":
		return s.nativeStream(ctx, onReady)
	}
	return s.sseStream(ctx, onReady)
}

// sseStream makes one SSE connection and reads it until it ends.
func (s *subscriber) sseStream(ctx context.Context, onReady func()) error {
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := s.cfg.dialer.dial(dctx)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	req, err := http.NewRequest(http.MethodGet, s.cfg.dialer.target.Scheme+"://"+s.cfg.dialer.target.Host+s.cfg.path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.token)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", "hybridrt-loadgen")
	if s.connected {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(s.lastID, 10))
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // until the headers are in
	if err := req.Write(conn); err != nil {
		return err
	}
	br := bufio.NewReaderSize(conn, s.cfg.bufSize)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &statusError{resp.StatusCode, string(bytes.TrimSpace(b))}
	}
	// Wait for ready under the same deadline, then read without one: the
	// stream is cut by ctx, and the server's heartbeats keep it alive.
	return s.read(bufio.NewReaderSize(resp.Body, s.cfg.bufSize), func() {
		_ = conn.SetDeadline(time.Time{})
		onReady()
	})
}

// read parses the event stream: lines end with LF, CRLF or CR (the server
// only sends LF; CR alone is not handled), a blank line dispatches.
func (s *subscriber) read(r *bufio.Reader, onReady func()) error {
	s.evType, s.data, s.id = s.evType[:0], s.data[:0], s.id[:0]
	for {
		if r.Buffered() == 0 {
			s.stale = true
		}
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it.
			s.line = append(s.line[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				s.line = append(s.line, line...)
			}
			line = s.line
		}
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF // the server ended the stream
			}
			return err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		if len(line) == 0 {
			s.dispatch(onReady)
			continue
		}
		if line[0] == ':' {
			continue // a heartbeat comment
		}
		field, value, found := bytes.Cut(line, []byte{':'})
		if found && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "id":
			s.id = append(s.id[:0], value...)
		case "event":
			s.evType = append(s.evType[:0], value...)
		case "data":
			if len(s.data) > 0 {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
		}
	}
}

// storedSample: the latency from the stored time is measured on ids that are multiples of it.
const storedSample = 8

var (
	dataTime = []byte(`"data":{"t":`)
	envTime  = []byte(`"time":"`)
)

// arrival returns when the data being parsed arrived: every event of one read
// arrived at once, so the read is timed, not each event.
func (s *subscriber) arrival() time.Time {
	if s.stale {
		s.now, s.stale = time.Now(), false
	}
	return s.now
}

// dispatch handles one complete event.
func (s *subscriber) dispatch(onReady func()) {
	s.arrival()
	typ, data := s.evType, s.data
	s.evType, s.data = s.evType[:0], s.data[:0]
	if len(data) == 0 {
		return // per the SSE spec, no data: nothing to dispatch
	}
	switch string(typ) {
	case "ready":
		var r struct {
			Cursor string `json:"cursor"`
		}
		if json.Unmarshal(data, &r) == nil && !s.connected {
			s.lastID, _ = strconv.ParseInt(r.Cursor, 10, 64)
			s.high.Store(s.lastID)
		}
		onReady()
		return
	case "resync":
		s.resyncs++
		return
	case "token_expired":
		s.tokenExpired++
		return
	}
	if id, ok := parseDigits(s.id); ok {
		s.deliver(id, data, dataTime)
	}
}

// deliver counts event id, whose send time follows timeKey in msg, and
// checks it is new and in order.
func (s *subscriber) deliver(id int64, msg, timeKey []byte) {
	if !s.ids.add(id) {
		s.dups++
		return
	}
	// Latency of the first delivery only.
	if i := bytes.Index(msg, timeKey); i >= 0 {
		rest := msg[i+len(timeKey):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if t, ok := parseDigits(rest[:j]); ok {
			s.cfg.latency.observe(time.Duration(s.now.UnixNano() - t))
		} else {
			s.noTime++
		}
	} else {
		s.noTime++
	}
	// The stored time is a sample, one event in storedSample: parsing it
	// for every event cost a quarter of the load generator's CPU, taken from
	// the server it shares the machine with.
	if id%storedSample == 0 {
		if i := bytes.LastIndex(msg, envTime); i >= 0 {
			if t, ok := parseTimeMillis(msg[i+len(envTime):]); ok {
				s.cfg.stored.observe(time.Duration(s.now.UnixNano() - t))
			}
		}
	}
	s.count.Add(1)
	if id < s.lastID {
		s.ooo++
		return
	}
	s.lastID = id
	s.high.Store(id)
}

// parseDigits parses a non-negative decimal int64 of 1 to 19 digits.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// parseTimeMillis parses the envelope's time, "2006-01-02T15:04:05.000Z",
// at the start of b, into Unix nanoseconds.
func parseTimeMillis(b []byte) (int64, bool) {
	const layout = "2006-01-02T15:04:05.000Z"
	if i := bytes.IndexByte(b, '"'); i >= 0 {
		b = b[:i]
	}
	if len(b) != len(layout) || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[19] != '.' || b[23] != 'Z' {
		t, err := time.Parse(time.RFC3339Nano, string(b)) // another offset or precision
		return t.UnixNano(), err == nil
	}
	num := func(lo, hi int) int {
		n, ok := parseDigits(b[lo:hi])
		if !ok {
			return -1
		}
		return int(n)
	}
	y, mo, d, h, mi, sec, ms := num(0, 4), num(5, 7), num(8, 10), num(11, 13), num(14, 16), num(17, 19), num(20, 23)
	if y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || mi < 0 || sec < 0 || ms < 0 {
		return 0, false
	}
	return time.Date(y, time.Month(mo), d, h, mi, sec, ms*int(time.Millisecond), time.UTC).UnixNano(), true
}
