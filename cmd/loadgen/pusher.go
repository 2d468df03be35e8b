package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// pusherPath is the Pusher door's address for app key, as pusher-js asks for it.
func pusherPath(appKey string) string {
	return "/app/" + url.PathEscape(appKey) + "?protocol=7&client=js&version=8.4.0&flash=false"
}

// wsWriteBuffers is shared by every subscriber: they write only a
// subscribe and the odd pong, so none needs a write buffer of its own.
var wsWriteBuffers sync.Pool

var (
	pusherTime  = []byte(`"data":"{\"t\":`) // the send time, in the data string
	pusherID    = []byte(`"id":"`)          // hybridrt's event id, the frame's last field
	pusherEvent = []byte(`{"event":"pusher`)
)

// dialWS opens the subscriber's WebSocket to path, offering subprotocols,
// and closes it when ctx ends (stop undoes that). A refused upgrade is a
// *statusError with the server's answer.
func (s *subscriber) dialWS(ctx context.Context, path string, subprotocols ...string) (ws *websocket.Conn, stop func() bool, err error) {
	t := s.cfg.dialer.target
	scheme := "ws"
	if t.Scheme == "https" {
		scheme = "wss"
	}
	d := websocket.Dialer{
		NetDialContext:   s.cfg.dialer.dialTCP,
		TLSClientConfig:  &tls.Config{ServerName: t.Hostname()},
		HandshakeTimeout: 15 * time.Second,
		ReadBufferSize:   s.cfg.bufSize,
		WriteBufferPool:  &wsWriteBuffers,
		Subprotocols:     subprotocols,
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ws, resp, err := d.DialContext(dctx, scheme+"://"+t.Host+path, http.Header{"User-Agent": {"hybridrt-loadgen"}})
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return nil, nil, &statusError{resp.StatusCode, string(bytes.TrimSpace(b))}
		}
		return nil, nil, err
	}
	return ws, context.AfterFunc(ctx, func() { ws.Close() }), nil
}

// pusherStream makes one WebSocket connection, subscribes to the channel
// over the Pusher protocol and reads events until the connection ends. The
// protocol has no resumption: events published while a subscriber
// reconnects are missed, and counted as missing.
func (s *subscriber) pusherStream(ctx context.Context, onReady func()) error {
	ws, stop, err := s.dialWS(ctx, s.cfg.path)
	if err != nil {
		return err
	}
	defer ws.Close()
	defer stop()
	ws.SetReadLimit(1 << 20)
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second)) // until subscribed

	return readFrames(ws, func(m []byte) error {
		s.stale = true // one message per read, as far as we can tell
		if !bytes.HasPrefix(m, pusherEvent) {
			if i := bytes.LastIndex(m, pusherID); i >= 0 {
				j := i + len(pusherID)
				k := bytes.IndexByte(m[j:], '"')
				if id, ok := parseDigits(m[j : j+max(k, 0)]); ok {
					s.arrival()
					s.deliver(id, m, pusherTime)
				}
			}
			return nil
		}
		var c struct {
			Event string `json:"event"`
			Data  string `json:"data"` // a string in every message the server sends, but pusher:error's
		}
		if err := json.Unmarshal(m, &c); err != nil && !bytes.Contains(m, []byte(`"pusher:error"`)) {
			return fmt.Errorf("cannot parse %.200q: %w", m, err)
		}
		switch c.Event {
		case "pusher:connection_established":
			sub, _ := json.Marshal(map[string]any{"event": "pusher:subscribe", "data": map[string]string{"channel": s.cfg.pusher}})
			if err := ws.WriteMessage(websocket.TextMessage, sub); err != nil {
				return err
			}
		case "pusher_internal:subscription_succeeded":
			_ = ws.SetReadDeadline(time.Time{}) // the server pings an idle client
			onReady()
		case "pusher:ping":
			if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"event":"pusher:pong","data":{}}`)); err != nil {
				return err
			}
		case "pusher:error", "pusher:subscription_error":
			return fmt.Errorf("%s", m)
		}
		return nil
	})
}
