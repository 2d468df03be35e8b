package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// nativePath is hybridrt's own WebSocket door.
const nativePath = "/api/realtime/ws"

// nativeEvent starts every event message of hybridrt.v1; the id follows.
var nativeEvent = []byte(`{"op":"event","event":{"id":"`)

// nativeStream makes one WebSocket connection of hybridrt's own protocol
// (hybridrt.v1), authenticates, subscribes to the channel from where the
// subscriber stands (so a reconnect misses nothing, as over SSE) and reads
// events until the connection ends.
func (s *subscriber) nativeStream(ctx context.Context, onReady func()) error {
	ws, stop, err := s.dialWS(ctx, nativePath, "hybridrt.v1")
	if err != nil {
		return err
	}
	defer ws.Close()
	defer stop()
	ws.SetReadLimit(1 << 20)
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second)) // until subscribed
	auth, _ := json.Marshal(map[string]string{"op": "auth", "token": s.cfg.token})
	if err := ws.WriteMessage(websocket.TextMessage, auth); err != nil {
		return err
	}

	return readFrames(ws, func(m []byte) error {
		s.stale = true // one message per read, as far as we can tell
		if id, event, ok := nativeEventID(m); event {
			if ok {
				s.arrival()
				s.deliver(id, m, dataTime)
			}
			return nil
		}
		var c struct {
			Op     string `json:"op"`
			Cursor string `json:"cursor"`
		}
		if err := json.Unmarshal(m, &c); err != nil {
			return fmt.Errorf("cannot parse %.200q: %w", m, err)
		}
		switch c.Op {
		case "ready":
			if !s.connected {
				s.lastID, _ = strconv.ParseInt(c.Cursor, 10, 64)
				s.high.Store(s.lastID)
			}
			sub, _ := json.Marshal(map[string]any{"op": "subscribe", "channels": []string{s.cfg.native}, "cursor": strconv.FormatInt(s.lastID, 10)})
			if err := ws.WriteMessage(websocket.TextMessage, sub); err != nil {
				return err
			}
		case "subscribed":
			_ = ws.SetReadDeadline(time.Time{}) // the server pings an idle client
			onReady()
		case "ping":
			if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"op":"pong"}`)); err != nil {
				return err
			}
		case "resync":
			s.resyncs++
		case "token_expired":
			s.tokenExpired++
		case "error":
			return fmt.Errorf("%s", m)
		}
		return nil
	})
}
