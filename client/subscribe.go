package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Transport names a way of receiving events.
type Transport string

// The transports, in the order Subscribe prefers them.
const (
	WebSocket Transport = "websocket" // hybridrt's own protocol, hybridrt.v1 (docs/protocol.md)
	SSE       Transport = "sse"
	Polling   Transport = "polling"
)

// SubscribeOptions configure Subscribe. URL, Channels and Token are required.
type SubscribeOptions struct {
	URL      string   // the service's origin
	Channels []string // channels to receive
	// Token returns a subscriber JWT. It is called at the start, shortly
	// before the current token expires (a third of its remaining lifetime
	// before, at most 30 s, as read from the JWT's exp and iat), and whenever
	// the service refuses the current one. It is never called concurrently,
	// and should honour ctx: Close waits for a call in flight.
	Token func(ctx context.Context) (string, error)
	// Cursor, when set, is the id after which to start (e.g. from Client.Head);
	// otherwise the subscription starts at the tenant's current head.
	Cursor     string
	Transports []Transport // default: WebSocket, then SSE, then polling
	HTTP       *http.Client

	// Failures is how many attempts in a row of a streaming transport
	// (WebSocket, SSE) may fail before falling back to the next one
	// (default 3). ReadyTimeout is how long a stream's ready may take: a
	// proxy that refuses or buffers the stream shows as a timeout here
	// (default 10 s). RetryBetter is how often, while on a fallback, the
	// better transports are tried again (default 1 min). PollTimeout is the
	// long-poll hold (default 25 s).
	Failures     int
	ReadyTimeout time.Duration
	RetryBetter  time.Duration
	PollTimeout  time.Duration

	// OnState, if set, is called on every change of transport or connection.
	OnState func(State)
	// OnPresence, if set, is called with every presence message of the
	// subscription's presence- channels (see Members), from its goroutine.
	OnPresence func(PresenceChange)
}

// State is a subscription's connection state.
type State struct {
	Connected bool
	Transport Transport // "" while disconnected
	// ConnectionID is the stream's id (SSE or WebSocket), from its ready;
	// it stays the same while the token is renewed in place. "" when not
	// streaming.
	ConnectionID string
	Cursor       string
	// Err is why the subscription is disconnected or, while connected, why
	// the token could not be renewed in place (wrapping ErrRenew): the
	// stream then ends at the token's expiry and resumes with a new token.
	Err error
}

// Subscription delivers a channel's events in order, each once, across
// reconnects and transport switches. Close it when done.
type Subscription struct {
	opts   SubscribeOptions
	events chan Event
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	state  State
	cursor int64
	tok    token
	own    map[int64]bool // ids of client events this subscription published, not to be delivered back
	// members of its presence channels, by channel and user id, as last heard
	members map[string]map[string]Member
	pollID  string // the connection id its polls and, while it polls, its client events give
}

// Subscribe starts receiving events. It returns at once; events arrive on
// Events until ctx ends or Close is called.
func Subscribe(ctx context.Context, opts SubscribeOptions) (*Subscription, error) {
	if opts.URL == "" || len(opts.Channels) == 0 || opts.Token == nil {
		return nil, errors.New("hybridrt: Subscribe needs URL, Channels and Token")
	}
	if len(opts.Transports) == 0 {
		opts.Transports = []Transport{WebSocket, SSE, Polling}
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{}
	}
	opts.URL = strings.TrimSuffix(opts.URL, "/")
	opts.Failures = cmpOr(opts.Failures, 3)
	opts.ReadyTimeout = cmpOr(opts.ReadyTimeout, 10*time.Second)
	opts.RetryBetter = cmpOr(opts.RetryBetter, time.Minute)
	opts.PollTimeout = cmpOr(opts.PollTimeout, 25*time.Second)
	s := &Subscription{opts: opts, events: make(chan Event, 1024), done: make(chan struct{}), cursor: -1,
		pollID: "c_poll" + strconv.FormatUint(rand.Uint64(), 36)}
	if opts.Cursor != "" {
		c, err := strconv.ParseInt(opts.Cursor, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("hybridrt: cursor %q is not an event id", opts.Cursor)
		}
		s.cursor = c
	}
	ctx, s.cancel = context.WithCancel(ctx)
	go s.run(ctx)
	return s, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Events delivers the events, deduplicated and in id order. Events of type
// "resync" mean that events before their id were lost to retention: reload
// the state they would have built.
func (s *Subscription) Events() <-chan Event { return s.events }

// State returns the current connection state.
func (s *Subscription) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Close stops the subscription and waits for it to end.
func (s *Subscription) Close() {
	s.cancel()
	<-s.done
}

func (s *Subscription) setState(connected bool, t Transport, connID string, err error) {
	s.mu.Lock()
	s.state = State{Connected: connected, Transport: t, ConnectionID: connID, Err: err}
	if s.cursor >= 0 {
		s.state.Cursor = strconv.FormatInt(s.cursor, 10)
	}
	st := s.state
	s.mu.Unlock()
	if s.opts.OnState != nil {
		s.opts.OnState(st)
	}
}

func (s *Subscription) allowed(t Transport) bool {
	for _, a := range s.opts.Transports {
		if a == t {
			return true
		}
	}
	return false
}

// deliver passes e on unless its id is not after the cursor (a duplicate
// after a reconnect or a transport switch), and advances the cursor.
func (s *Subscription) deliver(ctx context.Context, e Event) bool {
	if e.Type != "resync" { // a resync is news, and moves no cursor: the events after it do
		id, err := strconv.ParseInt(e.ID, 10, 64)
		if err != nil {
			return true
		}
		s.mu.Lock()
		dup := id <= s.cursor
		mine := s.own[id]
		if !dup {
			s.cursor = id
		}
		delete(s.own, id)
		s.mu.Unlock()
		if dup || mine {
			return true
		}
	}
	select {
	case s.events <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// Publish sends a client event to channel: typ starts with "client-", the
// token's publish claim names the channel, and the tenant takes client
// events (clientEvents in its settings). It returns the event's id. This
// subscription does not get its own event back: its SSE stream or its
// polls skip it, and after a switch of transport it is dropped by id.
func (s *Subscription) Publish(ctx context.Context, channel, typ string, data any) (string, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return "", fmt.Errorf("hybridrt: encode the data of a %s event: %w", typ, err)
	}
	t, err := s.freshToken(ctx, false)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	conn := s.pollID // the polls skip what it sends
	if s.state.Connected && s.state.Transport != Polling && s.state.ConnectionID != "" {
		conn = s.state.ConnectionID // the stream skips what it sends
	}
	s.mu.Unlock()
	body, _ := json.Marshal(map[string]any{"channel": channel, "type": typ, "data": json.RawMessage(raw), "connectionId": conn})
	var out struct {
		IDs []string `json:"ids"`
	}
	if err := doJSON(ctx, s.opts.HTTP, http.MethodPost, s.opts.URL+"/api/realtime/publish", t.value, body, nil, &out); err != nil {
		return "", err
	}
	if len(out.IDs) != 1 {
		return "", fmt.Errorf("hybridrt: publish answered %d ids for one event", len(out.IDs))
	}
	if id, err := strconv.ParseInt(out.IDs[0], 10, 64); err == nil {
		s.mu.Lock()
		if id > s.cursor { // not yet delivered: drop it when it comes
			if s.own == nil || len(s.own) > 1000 {
				s.own = map[int64]bool{} // ids never delivered (another channel) do not pile up
			}
			s.own[id] = true
		}
		s.mu.Unlock()
	}
	return out.IDs[0], nil
}

// startAt takes cursor, a stream's ready position, as the subscription's
// when it has none yet: events from there on are its, so a reconnect
// before its first event misses none.
func (s *Subscription) startAt(cursor string) {
	c, err := strconv.ParseInt(cursor, 10, 64)
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.cursor < 0 {
		s.cursor = c
	}
	s.mu.Unlock()
}

func (s *Subscription) cursorParam() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cursor < 0 {
		return ""
	}
	return strconv.FormatInt(s.cursor, 10)
}

// errAuth is the service refusing the token: get a new one.
var errAuth = errors.New("hybridrt: token refused")

// freshToken returns the token for a new request: the current one, unless
// it is due for renewal (then a new one, so no request goes out with a token
// about to expire) or force says the service refused it.
func (s *Subscription) freshToken(ctx context.Context, force bool) (token, error) {
	s.mu.Lock()
	t := s.tok
	s.mu.Unlock()
	now := time.Now()
	if !force && !t.due(now) {
		return t, nil
	}
	v, err := s.opts.Token(ctx)
	if err != nil {
		if !force && !t.expired(now) {
			return t, nil // still valid: try again before the next request
		}
		return token{}, fmt.Errorf("%w: %w", errToken, err)
	}
	t = newToken(v, time.Now())
	s.mu.Lock()
	s.tok = t
	s.mu.Unlock()
	return t, nil
}

// pick returns the transport to try next: the first that has not failed
// Failures times in a row, or whose retry is due; polling never fails over.
func (s *Subscription) pick(failures map[Transport]int, last map[Transport]time.Time) Transport {
	ts := s.opts.Transports
	for i, t := range ts {
		if t == Polling || i == len(ts)-1 || failures[t] < s.opts.Failures || time.Since(last[t]) >= s.opts.RetryBetter {
			return t
		}
	}
	return ts[len(ts)-1]
}

func (s *Subscription) run(ctx context.Context) {
	defer close(s.done)
	defer close(s.events)
	failures := map[Transport]int{}   // failed attempts in a row, by streaming transport
	last := map[Transport]time.Time{} // when its last attempt ended
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		t := s.pick(failures, last)
		var (
			err    error
			opened bool
		)
		switch t {
		case WebSocket:
			opened, err = s.streamWS(ctx)
		case SSE:
			opened, err = s.streamSSE(ctx)
		default:
			err = s.poll(ctx)
			if err == nil {
				backoff = 250 * time.Millisecond
				continue
			}
		}
		if t != Polling {
			last[t] = time.Now()
			if opened {
				failures[t], backoff = 0, 250*time.Millisecond
			} else if !errors.Is(err, errAuth) && !errors.Is(err, errToken) {
				failures[t]++
				if failures[t] >= s.opts.Failures && s.pick(failures, last) != t {
					continue // fall back at once, no backoff
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errAuth) {
			s.mu.Lock()
			refused := s.tok.value
			s.mu.Unlock()
			t, terr := s.freshToken(ctx, true)
			switch {
			case terr != nil:
				err = terr
			case t.value != refused:
				s.setState(false, "", "", err)
				continue // a new token: try again at once
			default:
				err = fmt.Errorf("%w, and Token returned it again", err)
			}
		}
		s.setState(false, "", "", err)
		wait := rand.N(backoff) + 50*time.Millisecond // full jitter
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// streamSSE reads one SSE connection until it ends. opened reports whether
// the stream's ready event arrived (the transport works here).
func (s *Subscription) streamSSE(ctx context.Context) (opened bool, err error) {
	tok, err := s.freshToken(ctx, false)
	if err != nil {
		return false, err
	}
	q := url.Values{"channels": {strings.Join(s.opts.Channels, ",")}}
	if c := s.cursorParam(); c != "" {
		q.Set("lastEventId", c)
	}
	sctx, cancel := context.WithCancel(ctx)
	var renewing sync.WaitGroup
	defer func() {
		cancel()
		renewing.Wait() // so Token is never called by two goroutines at once
	}()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, s.opts.URL+"/api/realtime/sse?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+tok.value)
	req.Header.Set("Accept", "text/event-stream")

	// A watchdog: no ready within ReadyTimeout, or silence past 2.5
	// heartbeats, means a buffering proxy or a dead connection.
	alive := make(chan time.Duration, 16)
	go func() {
		limit := s.opts.ReadyTimeout
		t := time.NewTimer(limit)
		defer t.Stop()
		for {
			select {
			case d := <-alive:
				if d > 0 {
					limit = d
				}
				t.Reset(limit)
			case <-t.C:
				cancel()
				return
			case <-sctx.Done():
				return
			}
		}
	}()

	res, err := s.opts.HTTP.Do(req)
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusUnauthorized {
		return false, errAuth
	}
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return false, problem(res)
	}

	var (
		id, typ string
		data    strings.Builder
		hasData bool
	)
	heartbeat := 15 * time.Second
	br := bufio.NewReaderSize(res.Body, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if !opened && sctx.Err() != nil && ctx.Err() == nil {
				return false, errors.New("hybridrt: no ready event in time (is a proxy buffering the stream?)")
			}
			return opened, err
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, ":") {
			alive <- 0 // a heartbeat
			continue
		}
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id = value
			case "event":
				typ = value
			case "data":
				if hasData {
					data.WriteByte('\n')
				}
				data.WriteString(value)
				hasData = true
			}
			continue
		}
		if !hasData {
			continue
		}
		payload := data.String()
		data.Reset()
		hasData = false
		evType := typ
		typ = ""
		switch evType {
		case "ready":
			var r struct {
				ConnectionID string `json:"connectionId"`
				Heartbeat    int    `json:"heartbeat"`
			}
			_ = json.Unmarshal([]byte(payload), &r)
			if r.Heartbeat > 0 {
				heartbeat = time.Duration(r.Heartbeat) * time.Second
			}
			alive <- heartbeat * 5 / 2
			s.startAt(id) // the head, when the subscription has no cursor yet
			s.setState(true, SSE, r.ConnectionID, nil)
			if !opened && r.ConnectionID != "" {
				// Renew the token in place before it expires; without a
				// connection id the stream ends with token_expired instead.
				renewing.Go(func() { s.renewLoop(sctx, r.ConnectionID, tok) })
			}
			opened = true
		case "token_expired":
			return opened, errAuth
		case "presence", "member_added", "member_removed":
			s.presence(evType, []byte(payload))
		case "resync":
			var r struct{ Cursor string }
			_ = json.Unmarshal([]byte(payload), &r)
			if !s.deliver(ctx, Event{ID: r.Cursor, Type: "resync", Data: json.RawMessage(payload)}) {
				return opened, ctx.Err()
			}
		default:
			alive <- 0
			var e Event
			if json.Unmarshal([]byte(payload), &e) != nil || e.ID != id {
				continue
			}
			if !s.deliver(ctx, e) {
				return opened, ctx.Err()
			}
		}
	}
}

// poll runs one long-poll and delivers what it got.
func (s *Subscription) poll(ctx context.Context) error {
	tok, err := s.freshToken(ctx, false)
	if err != nil {
		return err
	}
	q := url.Values{
		"channels":     {strings.Join(s.opts.Channels, ",")},
		"timeout":      {strconv.Itoa(int(s.opts.PollTimeout.Seconds()))},
		"connectionId": {s.pollID},
	}
	if c := s.cursorParam(); c != "" {
		q.Set("cursor", c)
	}
	var out struct {
		Events   []Event             `json:"events"`
		Cursor   string              `json:"cursor"`
		Resync   bool                `json:"resync"`
		Presence map[string][]Member `json:"presence"`
	}
	pctx, cancel := context.WithTimeout(ctx, s.opts.PollTimeout+10*time.Second)
	defer cancel()
	err = doJSON(pctx, s.opts.HTTP, http.MethodGet, s.opts.URL+"/api/realtime/polling?"+q.Encode(), tok.value, nil, nil, &out)
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized {
		return errAuth
	}
	if err != nil {
		return err
	}
	s.setState(true, Polling, "", nil)
	for ch, members := range out.Presence {
		s.presenceSnapshot(ch, members)
	}
	if out.Resync && !s.deliver(ctx, Event{Type: "resync"}) {
		return ctx.Err()
	}
	for _, e := range out.Events {
		if !s.deliver(ctx, e) {
			return ctx.Err()
		}
	}
	// Move to the poll's cursor even when nothing matched, as the server scanned that far.
	if c, err := strconv.ParseInt(out.Cursor, 10, 64); err == nil {
		s.mu.Lock()
		if c > s.cursor {
			s.cursor = c
		}
		s.mu.Unlock()
	}
	return nil
}
