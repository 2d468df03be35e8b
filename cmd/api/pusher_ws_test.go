package main

import (
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/pusher"
)

// wsClient is a bare WebSocket client speaking the Pusher protocol by hand,
// for what the real clients cannot be made to send: bad frames, floods,
// forged signatures. Everything a real app does is tested with pusher-js.
type wsClient struct {
	t        *testing.T
	key      string
	ws       *websocket.Conn
	socketID string
	msgs     chan wsMessage
	closed   chan *websocket.CloseError

	mu         sync.Mutex
	subscribed map[string]bool // channels with subscription_succeeded, for O2
}

type wsMessage struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	ID      string          `json:"id"`
}

// dataString is a message's data, which the server always sends as a string.
func (m wsMessage) dataString(t *testing.T) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(m.Data, &s); err != nil {
		t.Fatalf("%s: data %s is not a string", m.Event, m.Data)
	}
	return s
}

// dialPusher connects to /app/{key}?protocol=7 (query overrides the query).
func dialPusher(t *testing.T, base, key string, query ...string) (*wsClient, *http.Response, error) {
	t.Helper()
	q := "protocol=7&client=js&version=8.4.0"
	if len(query) > 0 {
		q = query[0]
	}
	u := "ws" + strings.TrimPrefix(base, "http") + "/app/" + key + "?" + q
	ws, res, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		return nil, res, err
	}
	c := &wsClient{t: t, key: key, ws: ws, msgs: make(chan wsMessage, 1000), closed: make(chan *websocket.CloseError, 1), subscribed: map[string]bool{}}
	go func() {
		defer close(c.msgs)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); ok {
					c.closed <- ce
				}
				close(c.closed)
				return
			}
			var m wsMessage
			if err := json.Unmarshal(b, &m); err != nil {
				t.Errorf("server sent a frame that is not JSON: %q", b)
				continue
			}
			c.check(m)
			c.msgs <- m
		}
	}()
	t.Cleanup(func() { ws.Close() })
	return c, res, nil
}

// check is O2 for one message: an event must be on a channel subscribed
// to, and its tenant's, as published (see checkPusherEvent).
func (c *wsClient) check(m wsMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case m.Event == "pusher_internal:subscription_succeeded":
		c.subscribed[m.Channel] = true
	case m.Channel != "" && !strings.HasPrefix(m.Event, "pusher"):
		var data string
		if json.Unmarshal(m.Data, &data) != nil {
			c.t.Errorf("event %s data %s is not a string", m.Event, m.Data)
		}
		checkPusherEvent(c.t, "WebSocket "+c.socketID, c.key, c.subscribed[m.Channel], m.Channel, m.Event, m.ID, json.RawMessage(data))
	}
}

// connectPusher dials and reads pusher:connection_established.
func connectPusher(t *testing.T, base, key string) *wsClient {
	t.Helper()
	c, _, err := dialPusher(t, base, key)
	if err != nil {
		t.Fatal(err)
	}
	m := c.next("pusher:connection_established")
	var d struct {
		SocketID        string `json:"socket_id"`
		ActivityTimeout int    `json:"activity_timeout"`
	}
	if err := json.Unmarshal([]byte(m.dataString(t)), &d); err != nil || d.SocketID == "" || d.ActivityTimeout <= 0 {
		t.Fatalf("connection_established data = %s", m.Data)
	}
	c.socketID = d.SocketID
	return c
}

func (c *wsClient) send(event string, data any, channel ...string) {
	c.t.Helper()
	m := map[string]any{"event": event, "data": data}
	if len(channel) > 0 {
		m["channel"] = channel[0]
	}
	if err := c.ws.WriteJSON(m); err != nil {
		c.t.Fatalf("send %s: %v", event, err)
	}
}

// next returns the next message, which must be of type event.
func (c *wsClient) next(event string) wsMessage {
	c.t.Helper()
	return c.nextWithin(event, 10*time.Second)
}

// nextWithin is next with another timeout.
func (c *wsClient) nextWithin(event string, timeout time.Duration) wsMessage {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("waiting for %s: the connection closed", event)
		}
		if m.Event != event {
			c.t.Fatalf("got %s %s %s, want %s", m.Event, m.Channel, m.Data, event)
		}
		return m
	case <-time.After(timeout):
		c.t.Fatalf("no %s within %v", event, timeout)
	}
	return wsMessage{}
}

// quiet asserts that nothing arrives for d.
func (c *wsClient) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if ok {
			c.t.Fatalf("got %s %s %s, want nothing", m.Event, m.Channel, m.Data)
		}
	case <-time.After(d):
	}
}

// closeCode waits for the server's close frame and returns its code.
func (c *wsClient) closeCode() int {
	c.t.Helper()
	for {
		select {
		case _, ok := <-c.msgs:
			if ok {
				continue
			}
			ce := <-c.closed
			if ce == nil {
				return 0
			}
			return ce.Code
		case <-time.After(10 * time.Second):
			c.t.Fatal("the server did not close the connection within 10 s")
		}
	}
}

// TestPusherSmoke: connect, refuse an unknown key, subscribe to a public
// channel the tenant allows, receive an event published by the API.
func TestPusherSmoke(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")

	bad, _, err := dialPusher(t, in.url, "sk_unknownunknown12")
	if err != nil {
		t.Fatal(err)
	}
	if code := bad.closeCode(); code != 4001 {
		t.Errorf("unknown key closed with %d, want 4001", code)
	}

	c := connectPusher(t, in.url, acme.SigningKey.Kid)
	c.send("pusher:subscribe", map[string]string{"channel": "news"})
	c.next("pusher:subscription_error")
	if res := in.do("PATCH", "/v1/tenant/settings", acme.APIKey, `{"publicChannels":["news"]}`); res.status != 200 {
		t.Fatalf("PATCH settings = %d %s", res.status, res.body)
	}
	c.send("pusher:subscribe", map[string]string{"channel": "news"})
	c.next("pusher_internal:subscription_succeeded")
	in.publisher(acme).events(`{"channel":"news","type":"App\\Events\\OrderShipped","data":{"n":1}}`)
	m := c.next(`App\Events\OrderShipped`)
	if m.Channel != "news" || m.dataString(t) != `{"n":1}` || m.ID == "" {
		t.Errorf("event = %+v", m)
	}

	// A private channel with a valid signature.
	auth := pusher.ChannelAuth(acme.SigningKey.Kid, []byte(acme.SigningKey.Secret), c.socketID, "private-orders", "")
	c.send("pusher:subscribe", map[string]string{"channel": "private-orders", "auth": auth})
	c.next("pusher_internal:subscription_succeeded")
	c.send("pusher:ping", map[string]string{})
	c.next("pusher:pong")
}

// TestPusherIdleSocketsHoldNoGoroutine: on Linux the hub's poller watches
// idle WebSockets, so 300 of them add no goroutine to the server, and each
// still answers a message sent after the idle spell (the poller saw it).
func TestPusherIdleSocketsHoldNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the poller runs on Linux; elsewhere each socket reads in a goroutine of its own")
	}
	checkResources(t) // serial: it counts the whole process's goroutines
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	const n = 300
	g0, _, _ := settled()
	u := "ws" + strings.TrimPrefix(in.url, "http") + "/app/" + acme.SigningKey.Kid + "?protocol=7&client=js&version=8.4.0"
	socks := make([]*websocket.Conn, n)
	for i := range socks {
		ws, _, err := websocket.DefaultDialer.Dial(u, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		var m wsMessage
		if err := ws.ReadJSON(&m); err != nil || m.Event != "pusher:connection_established" {
			t.Fatalf("socket %d: first message %s, %v", i, m.Event, err)
		}
		socks[i] = ws
	}
	g1, _, _ := settled()
	if per := float64(g1-g0) / n; per > 0.1 {
		t.Errorf("%d idle sockets added %d goroutines (%.2f each), want none", n, g1-g0, per)
	}
	for i, ws := range socks {
		if err := ws.WriteJSON(map[string]any{"event": "pusher:ping", "data": map[string]any{}}); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		var m wsMessage
		if err := ws.ReadJSON(&m); err != nil || m.Event != "pusher:pong" {
			t.Fatalf("socket %d after the idle spell: %s, %v; want pusher:pong", i, m.Event, err)
		}
	}
}
