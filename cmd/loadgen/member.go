package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// roomConfig is what every member of the presence-chat scenario shares.
type roomConfig struct {
	channel string     // presence-…
	members int        // N: how many members each one must see before publishing
	acks    *histogram // from writing a publish to reading its published
}

// sentKey precedes a client event's send time in its data.
var sentKey = []byte(`"sent":`)

// member is one client of the presence-chat scenario: a connection of
// hybridrt's own WebSocket protocol that joins the presence channel as a
// user of its own, publishes client events on a schedule of its own and
// receives everyone else's. Its subscriber holds what it received, counted
// as in the fan-out run (distinct ids, duplicates, order, latency). It does
// not reconnect once subscribed: a new connection would leave and join the
// channel again, which is not the shape measured, so a dropped member is a
// failure and what it missed counts as missing.
type member struct {
	subscriber
	idx   int
	token string
	room  *roomConfig

	wmu sync.Mutex // one writer at a time: the publisher, and the reader's subscribe and pong
	ws  *websocket.Conn

	// Presence, as this client was told it; the reader's own.
	seen      []bool // seen[j]: member j (user m<j>) is in the channel
	nSeen     int
	removed   int64 // member_removed messages
	strangers int64 // members that are not of this run
	full      atomic.Bool
	fullAt    time.Time // when it first saw all N; read by main after full is set

	// Publishing, shared by the publisher and the reader under mu.
	mu           sync.Mutex
	seq          int64
	pending      map[int64]time.Time // publishes sent and not answered, by ref
	acked        idSet               // ids the server gave this member's events
	dupAcked     int64
	refused      map[string]int64 // by error code, or "write" when the connection broke
	firstRefusal map[string]string
	unmatched    int64 // answers for no pending publish
	sent         int64

	nAcked   atomic.Int64 // acked.len(), for the settle check
	nPending atomic.Int64 // len(pending), for the settle check
}

func newMember(cfg *streamConfig, room *roomConfig, idx int, token string) *member {
	return &member{
		subscriber: subscriber{cfg: cfg}, idx: idx, token: token, room: room,
		seen: make([]bool, room.members), pending: map[int64]time.Time{},
		refused: map[string]int64{}, firstRefusal: map[string]string{},
	}
}

// memberName is member i's user id, the sub of its token.
func memberName(i int) string { return "m" + strconv.Itoa(i) }

// run connects and joins, reports the subscription (or the failure to get
// one) to joined, and full the first time the client sees all N members,
// then reads until ctx ends. Opening is retried as the fan-out's
// subscribers retry it; a connection lost after that is not.
func (m *member) run(ctx context.Context, joined func(error), full func()) {
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := m.stream(ctx, joined, full)
		switch {
		case ctx.Err() != nil:
			if !m.connected {
				joined(ctx.Err())
			}
			return
		case m.connected:
			m.err = fmt.Errorf("connection lost after joining: %w", err)
			return
		case attempt >= 4:
			m.err = err
			joined(err)
			return
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			joined(ctx.Err())
			return
		}
		backoff *= 2
	}
}

// write sends one message, under the write lock and a deadline: a server
// that stops reading must not hang the run.
func (m *member) write(b []byte) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if m.ws == nil {
		return errors.New("not connected")
	}
	_ = m.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return m.ws.WriteMessage(websocket.TextMessage, b)
}

// nativeReply is every message of the server but an event, with the fields the
// scenario reads.
type nativeReply struct {
	Op      string          `json:"op"`
	Cursor  string          `json:"cursor"`
	ID      string          `json:"id"`
	Ref     json.RawMessage `json:"ref"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Member  struct {
		ID string `json:"id"`
	} `json:"member"`
	Members []struct {
		ID string `json:"id"`
	} `json:"members"`
}

// stream makes one connection and reads it until it ends.
func (m *member) stream(ctx context.Context, joined func(error), full func()) error {
	ws, stop, err := m.dialWS(ctx, nativePath, "hybridrt.v1")
	if err != nil {
		return err
	}
	defer ws.Close()
	defer stop()
	m.wmu.Lock()
	m.ws = ws
	m.wmu.Unlock()
	ws.SetReadLimit(1 << 20)
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second)) // until subscribed
	auth, _ := json.Marshal(map[string]string{"op": "auth", "token": m.token})
	if err := m.write(auth); err != nil {
		return err
	}

	return readFrames(ws, func(b []byte) error {
		m.stale = true // one message per read, as far as we can tell
		if id, event, ok := nativeEventID(b); event {
			if ok {
				m.arrival()
				m.deliver(id, b, sentKey)
			}
			return nil
		}
		var c nativeReply
		if err := json.Unmarshal(b, &c); err != nil {
			return fmt.Errorf("cannot parse %.200q: %w", b, err)
		}
		switch c.Op {
		case "ready":
			m.lastID, _ = strconv.ParseInt(c.Cursor, 10, 64)
			m.high.Store(m.lastID)
			sub, _ := json.Marshal(map[string]any{"op": "subscribe", "channels": []string{m.room.channel}, "cursor": c.Cursor, "ref": "subscribe"})
			if err := m.write(sub); err != nil {
				return err
			}
		case "subscribed":
			_ = ws.SetReadDeadline(time.Time{}) // the server pings an idle client
			m.connected = true
			joined(nil)
		case "presence":
			clear(m.seen)
			m.nSeen = 0
			for _, x := range c.Members {
				m.saw(x.ID, true)
			}
		case "member_added":
			m.saw(c.Member.ID, true)
		case "member_removed":
			m.removed++
			m.saw(c.Member.ID, false)
		case "published":
			m.answered(c.Ref, c.ID, "", "")
		case "error":
			if _, ok := parseDigits(c.Ref); ok {
				m.answered(c.Ref, "", c.Code, c.Message) // a refused publish: the connection goes on
				return nil
			}
			return fmt.Errorf("%s", b) // the auth or the subscribe: no point going on
		case "ping":
			if err := m.write([]byte(`{"op":"pong"}`)); err != nil {
				return err
			}
		case "token_expired":
			m.tokenExpired++
		}
		if !m.full.Load() && m.nSeen == m.room.members {
			m.fullAt = time.Now()
			m.full.Store(true)
			full()
		}
		return nil
	})
}

// saw records member id joining (in) or leaving.
func (m *member) saw(id string, in bool) {
	j := -1
	if rest, ok := bytes.CutPrefix([]byte(id), []byte("m")); ok {
		if n, ok := parseDigits(rest); ok && n < int64(len(m.seen)) && memberName(int(n)) == id {
			j = int(n)
		}
	}
	if j < 0 {
		m.strangers++
		return
	}
	switch {
	case in && !m.seen[j]:
		m.nSeen++
	case !in && m.seen[j]:
		m.nSeen--
	}
	m.seen[j] = in
}

// publish sends client events from start until deadline: the first at
// start+offset, then one every interval, or at once when behind, as the
// fan-out's publishers keep their rate.
func (m *member) publish(ctx context.Context, start time.Time, offset, interval time.Duration, deadline time.Time) {
	var b []byte
	for next := start.Add(offset); next.Before(deadline); next = next.Add(interval) {
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		m.seq++
		seq := m.seq
		now := time.Now()
		m.pending[seq] = now
		m.nPending.Store(int64(len(m.pending)))
		m.sent++
		m.mu.Unlock()
		// The data says who sent it (seq per member, and the token's sub in
		// the envelope's user) and when, for the latency.
		b = append(b[:0], `{"op":"publish","channel":`...)
		b = strconv.AppendQuote(b, m.room.channel)
		b = append(b, `,"type":"client-typing","data":{"typing":true,"seq":`...)
		b = strconv.AppendInt(b, seq, 10)
		b = append(b, `,"sent":`...)
		b = strconv.AppendInt(b, now.UnixNano(), 10)
		b = append(b, `},"ref":`...)
		b = strconv.AppendInt(b, seq, 10)
		b = append(b, '}')
		if err := m.write(b); err != nil {
			m.answered([]byte(strconv.FormatInt(seq, 10)), "", "write", err.Error())
			return // the connection is gone, and its reader says so
		}
	}
}

// answered takes the server's answer to the publish with ref: its event id,
// or the code of its refusal.
func (m *member) answered(ref json.RawMessage, id, code, message string) {
	now := time.Now()
	seq, _ := parseDigits(ref)
	m.mu.Lock()
	defer m.mu.Unlock()
	sent, ok := m.pending[seq]
	if !ok {
		m.unmatched++
		return
	}
	delete(m.pending, seq)
	m.nPending.Store(int64(len(m.pending)))
	if code != "" {
		m.refused[code]++
		if _, ok := m.firstRefusal[code]; !ok {
			m.firstRefusal[code] = message
		}
		return
	}
	n, ok := parseDigits([]byte(id))
	if !ok {
		m.refused["bad-id"]++
		return
	}
	if !m.acked.add(n) {
		m.dupAcked++
		return
	}
	m.nAcked.Add(1)
	m.room.acks.observe(now.Sub(sent))
}
