package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// stormClient is a bare Pusher client that holds one public subscription
// and, when its socket drops, connects to the next server at once: what a
// load balancer's clients do when an instance dies.
type stormClient struct {
	key, channel string
	servers      []string     // ws://host:port of each instance, tried in turn
	reconnects   atomic.Int32 // times it connected and subscribed again
	refusals     atomic.Int32 // 4100s it was answered meanwhile
	dropped      atomic.Int32 // handshakes the server closed unanswered
	got          chan string  // event ids received
}

// connect dials servers[i], subscribes, and returns the connection once
// the subscription succeeded. Refused with 4100 (the tenant's connection
// limit, while the dead instance's connections still count), it tries again
// after a second, as pusher-js does. So it does, up to 3 times, when the
// handshake itself is dropped (an instance busy with 5,000 handshakes at
// once, in a race-instrumented build beside other tests, may not read one
// within its 5 s ReadHeaderTimeout); a failure after the handshake fails.
func (c *stormClient) connect(i int) (*websocket.Conn, error) {
	dropped := 0
	for {
		ws, err := c.dial(i)
		var refused *overCapacity
		if errors.As(err, &refused) {
			c.refusals.Add(1)
			time.Sleep(time.Second)
			continue
		}
		var before *handshakeDropped
		if errors.As(err, &before) && dropped < 3 {
			dropped++
			c.dropped.Add(1)
			time.Sleep(time.Second)
			continue
		}
		return ws, err
	}
}

type handshakeDropped struct{ err error }

func (e *handshakeDropped) Error() string { return "handshake dropped: " + e.err.Error() }

type overCapacity struct{ data string }

func (e *overCapacity) Error() string { return "refused with 4100: " + e.data }

func (c *stormClient) dial(i int) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	ws, res, err := d.Dial(c.servers[i%len(c.servers)]+"/app/"+c.key+"?protocol=7&client=js&version=8.4.0", nil)
	if err != nil {
		if res == nil && errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &handshakeDropped{err}
		}
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	var m wsMessage
	if err := ws.ReadJSON(&m); err == nil && m.Event == "pusher:error" && strings.Contains(string(m.Data), "4100") {
		ws.Close()
		return nil, &overCapacity{string(m.Data)}
	} else if err != nil || m.Event != "pusher:connection_established" {
		ws.Close()
		return nil, fmt.Errorf("first message %s %s: %v", m.Event, m.Data, err)
	}
	if err := ws.WriteJSON(map[string]any{"event": "pusher:subscribe", "data": map[string]string{"channel": c.channel}}); err != nil {
		ws.Close()
		return nil, err
	}
	if err := ws.ReadJSON(&m); err != nil || m.Event != "pusher_internal:subscription_succeeded" {
		ws.Close()
		return nil, fmt.Errorf("subscribe answered %s %s: %v", m.Event, m.Data, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	return ws, nil
}

// run reads events until its connection drops, then connects to the next
// server (once) and goes on; it returns when that one drops too.
func (c *stormClient) run(ws *websocket.Conn, next int, failed func(error)) {
	for {
		var m wsMessage
		if err := ws.ReadJSON(&m); err != nil {
			ws.Close()
			if next < 0 {
				return
			}
			if ws, err = c.connect(next); err != nil {
				failed(err)
				return
			}
			c.reconnects.Add(1) // subscribed again
			next = -1
			continue
		}
		if m.Channel == c.channel && !strings.HasPrefix(m.Event, "pusher") {
			c.got <- m.ID
		}
	}
}

// TestPusherReconnectStorm: 5,000 WebSocket clients on one instance lose it
// at once (SIGKILL) and all reconnect to the other at the same moment. Every
// one of them is back within 30 s, none fails (a refusal by the tenant's
// connection limit, which still counts the dead instance's connections for
// a while, is 4100: retried after a back-off, as pusher-js does), and each
// receives what is published after.
func TestPusherReconnectStorm(t *testing.T) {
	checkResources(t)
	const clients = 5000
	url := pgtest.NewURL(t, true)
	procs := startProcs(t, 2, url)
	pa, pb := procs[0], procs[1]
	acme := setupTenant(t, pa, "Acme")
	hc := &http.Client{Timeout: 10 * time.Second}
	if status, body, err := httpCall(hc, "PATCH", pa.url+"/v1/tenant/settings", acme.APIKey, `{"publicChannels":["storm"]}`); err != nil || status != 200 {
		t.Fatalf("PATCH settings = %d %s (%v)", status, body, err)
	}
	servers := []string{"ws" + strings.TrimPrefix(pa.url, "http"), "ws" + strings.TrimPrefix(pb.url, "http")}

	var (
		mu       sync.Mutex
		failures []error
		wg       sync.WaitGroup
	)
	failed := func(err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	}
	all := make([]*stormClient, clients)
	sem := make(chan struct{}, 200)
	for i := range all {
		c := &stormClient{key: acme.SigningKey.Kid, channel: "storm", servers: servers, got: make(chan string, 4)}
		all[i] = c
		sem <- struct{}{}
		ws, err := c.connect(0)
		<-sem
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.run(ws, 1, failed) }()
	}
	t.Logf("%d clients subscribed on instance A", clients)

	pa.kill()
	killed := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for {
		back := 0
		for _, c := range all {
			if c.reconnects.Load() == 1 {
				back++
			}
		}
		mu.Lock()
		nf := len(failures)
		mu.Unlock()
		if back == clients && nf == 0 {
			break
		}
		if nf > 0 || time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("%d of %d clients reconnecting after 30 s, %d failed: %v", back, clients, nf, errors.Join(failures[:min(5, len(failures))]...))
		}
		time.Sleep(100 * time.Millisecond)
	}
	refused, dropped := 0, 0
	for _, c := range all {
		refused += int(c.refusals.Load())
		dropped += int(c.dropped.Load())
	}
	if dropped > 0 {
		t.Logf("%d handshakes were dropped unanswered and tried again", dropped)
	}
	t.Logf("all %d clients subscribed on instance B within %v of the kill; %d attempts were refused with 4100 first (the dead instance's connections count against the limit until its last report is 5 s old)",
		clients, time.Since(killed).Round(time.Millisecond), refused)
	status, body, err := httpCall(hc, "POST", pb.url+"/v1/events", acme.APIKey, `{"channel":"storm","type":"after","data":1}`)
	if err != nil || status != 201 {
		t.Fatalf("publish = %d %s (%v)", status, body, err)
	}
	var ids struct{ IDs []string }
	_ = json.Unmarshal(body, &ids)
	for i, c := range all {
		select {
		case id := <-c.got:
			if id != ids.IDs[0] {
				t.Fatalf("client %d got event %s, want %s", i, id, ids.IDs[0])
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("client %d did not get the event published after the storm", i)
		}
	}
	t.Logf("every client got the event after the storm, %v after the kill", time.Since(killed).Round(time.Millisecond))
	pb.kill()
	wg.Wait()
}
