package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsSubprotocol is the protocol of /api/realtime/ws (docs/protocol.md).
const wsSubprotocol = "hybridrt.v1"

// wsPingEvery is how often the client pings a quiet connection; a
// connection with no message for wsSilence is dead (a proxy dropped it).
const (
	wsPingEvery = 25 * time.Second
	wsSilence   = 2*wsPingEvery + 10*time.Second
)

// wsMessage is a message of hybridrt.v1, either way.
type wsMessage struct {
	Op           string          `json:"op"`
	Ref          string          `json:"ref,omitempty"`
	Token        string          `json:"token,omitempty"`
	Channels     []string        `json:"channels,omitempty"`
	Cursor       string          `json:"cursor,omitempty"`
	ConnectionID string          `json:"connectionId,omitempty"`
	Event        json.RawMessage `json:"event,omitempty"`
	Code         string          `json:"code,omitempty"`
	Message      string          `json:"message,omitempty"`
}

// streamWS reads one WebSocket connection of hybridrt's own protocol until
// it ends. opened reports whether its ready arrived (the transport works
// here). It subscribes from the subscription's cursor, renews the token in
// place before it expires, and pings a quiet connection.
func (s *Subscription) streamWS(ctx context.Context) (opened bool, err error) {
	tok, err := s.freshToken(ctx, false)
	if err != nil {
		return false, err
	}
	d := websocket.Dialer{Subprotocols: []string{wsSubprotocol}, HandshakeTimeout: s.opts.ReadyTimeout, Proxy: http.ProxyFromEnvironment}
	if tr, ok := s.opts.HTTP.Transport.(*http.Transport); ok {
		d.Proxy, d.TLSClientConfig, d.NetDialContext = tr.Proxy, tr.TLSClientConfig, tr.DialContext
	}
	ws, res, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(s.opts.URL, "http")+"/api/realtime/ws", nil)
	if err != nil {
		if res != nil {
			return false, fmt.Errorf("hybridrt: WebSocket refused with %s", res.Status)
		}
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	var background sync.WaitGroup
	defer func() {
		cancel()
		ws.Close()
		background.Wait() // so Token is never called by two goroutines at once
	}()
	background.Go(func() { <-sctx.Done(); ws.Close() }) // unblocks the read

	var wmu sync.Mutex
	send := func(m wsMessage) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return ws.WriteJSON(m)
	}
	if err := send(wsMessage{Op: "auth", Token: tok.value}); err != nil {
		return false, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(s.opts.ReadyTimeout))
	var ready wsMessage
	if err := ws.ReadJSON(&ready); err != nil || ready.Op != "ready" {
		if isClose(err, 4001) {
			return false, errAuth
		}
		return false, fmt.Errorf("hybridrt: no ready on the WebSocket in time: %v", err)
	}
	opened = true
	s.startAt(ready.Cursor)
	s.setState(true, WebSocket, ready.ConnectionID, nil)
	if err := send(wsMessage{Op: "subscribe", Ref: "subscribe", Channels: s.opts.Channels, Cursor: s.cursorParam()}); err != nil {
		return opened, err
	}
	background.Go(func() { s.renewWS(sctx, tok, ready.ConnectionID, send) })
	background.Go(func() {
		t := time.NewTicker(wsPingEvery)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				if send(wsMessage{Op: "ping"}) != nil {
					return
				}
			}
		}
	})

	for {
		_ = ws.SetReadDeadline(time.Now().Add(wsSilence))
		_, raw, err := ws.ReadMessage()
		var m wsMessage
		if err == nil {
			err = json.Unmarshal(raw, &m)
		}
		if err != nil {
			if ctx.Err() != nil {
				return opened, ctx.Err()
			}
			if isClose(err, 4001) {
				return opened, errAuth
			}
			return opened, err
		}
		switch m.Op {
		case "event":
			var e Event
			if json.Unmarshal(m.Event, &e) != nil {
				continue
			}
			if !s.deliver(ctx, e) {
				return opened, ctx.Err()
			}
		case "resync":
			payload, _ := json.Marshal(map[string]string{"cursor": m.Cursor})
			if !s.deliver(ctx, Event{ID: m.Cursor, Type: "resync", Data: payload}) {
				return opened, ctx.Err()
			}
		case "ping":
			if err := send(wsMessage{Op: "pong"}); err != nil {
				return opened, err
			}
		case "token_expired":
			return opened, errAuth
		case "presence", "member_added", "member_removed":
			s.presence(m.Op, raw)
		case "error":
			if m.Ref == "subscribe" { // the channels were refused: this transport cannot serve them
				return opened, &Error{Status: http.StatusForbidden, Code: m.Code, Detail: m.Message}
			}
			if m.Ref == "token" {
				s.setState(true, WebSocket, ready.ConnectionID, fmt.Errorf("%w: %s", ErrRenew, m.Message))
			}
		}
	}
}

// renewWS sends a fresh token before the current one expires, over the
// connection ({"op":"token"}), until ctx ends. A refusal shows in State.Err;
// the connection then ends with token_expired and resumes with a new token.
func (s *Subscription) renewWS(ctx context.Context, t token, connID string, send func(wsMessage) error) {
	for !t.renewAt.IsZero() {
		timer := time.NewTimer(max(time.Until(t.renewAt), minRenewGap))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		v, err := s.opts.Token(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.setState(true, WebSocket, connID, fmt.Errorf("%w: %w: %w", ErrRenew, errToken, err))
			return
		}
		nt := newToken(v, time.Now())
		if send(wsMessage{Op: "token", Ref: "token", Token: v}) != nil {
			return
		}
		s.mu.Lock()
		s.tok = nt // a reconnect, should one come, uses it too
		s.mu.Unlock()
		t = nt
	}
}

// isClose reports a close frame with code.
func isClose(err error, code int) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce) && ce.Code == code
}
