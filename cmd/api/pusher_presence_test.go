package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/client"
	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/presence"
)

// joinPresence subscribes c to a presence channel as user and returns the
// members that subscription_succeeded lists.
func (c *wsClient) joinPresence(key, secret, ch, user string) []string {
	c.t.Helper()
	c.subscribePrivate(key, secret, ch, `{"user_id":"`+user+`","user_info":{"name":"`+user+`"}}`)
	m := c.next("pusher_internal:subscription_succeeded")
	var d struct {
		Presence struct {
			IDs   []string                   `json:"ids"`
			Hash  map[string]json.RawMessage `json:"hash"`
			Count int                        `json:"count"`
		} `json:"presence"`
	}
	if err := json.Unmarshal([]byte(m.dataString(c.t)), &d); err != nil || d.Presence.Count != len(d.Presence.IDs) || len(d.Presence.Hash) != len(d.Presence.IDs) {
		c.t.Fatalf("presence subscription_succeeded data %s", m.Data)
	}
	return d.Presence.IDs
}

// memberEvent waits for member_added or member_removed and returns its user id.
func (c *wsClient) memberEvent(event string) string {
	c.t.Helper()
	m := c.nextWithin(event, 35*time.Second)
	var d struct {
		UserID string `json:"user_id"`
	}
	if err := json.Unmarshal([]byte(m.dataString(c.t)), &d); err != nil || d.UserID == "" {
		c.t.Fatalf("%s data %s", event, m.Data)
	}
	return d.UserID
}

// TestPresenceAcrossInstances: members on two instances see each other;
// a user with connections on both is one member until the last leaves;
// leaving and joining reach the other instance within a second; the member
// list is the same through the store.
func TestPresenceAcrossInstances(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	a, b := newInstance(t, db, testConfig()), newInstance(t, db, testConfig())
	acme := a.signup("Acme")
	key, secret := acme.SigningKey.Kid, acme.SigningKey.Secret

	ann := connectPusher(t, a.url, key)
	if got := ann.joinPresence(key, secret, "presence-room", "ann"); strings.Join(got, ",") != "ann" {
		t.Fatalf("ann sees %v", got)
	}
	bob := connectPusher(t, b.url, key)
	if got := bob.joinPresence(key, secret, "presence-room", "bob"); strings.Join(got, ",") != "ann,bob" {
		t.Fatalf("bob sees %v", got)
	}
	start := time.Now()
	if u := ann.memberEvent("pusher_internal:member_added"); u != "bob" {
		t.Errorf("ann told %s joined", u)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("member_added took %v across instances", d)
	}
	bob.quiet(200 * time.Millisecond) // not told of itself

	// ann again, on the other instance: still one member, no event.
	ann2 := connectPusher(t, b.url, key)
	ann2.joinPresence(key, secret, "presence-room", "ann")
	bob.quiet(300 * time.Millisecond)
	ann.send("pusher:unsubscribe", map[string]string{"channel": "presence-room"})
	bob.quiet(300 * time.Millisecond) // ann is still here through ann2
	if n := a.presenceCount(acme, "presence-room"); n != 2 {
		t.Errorf("%d members, want 2", n)
	}
	ann2.ws.Close() // her last connection
	if u := bob.memberEvent("pusher_internal:member_removed"); u != "ann" {
		t.Errorf("bob told %s left", u)
	}
	members, err := a.svc.presence.Members(t.Context(), tenantIDOf(t, acme), "presence-room")
	if err != nil || len(members) != 1 || members[0].UserID != "bob" || string(members[0].Info) != `{"name":"bob"}` {
		t.Errorf("members = %+v, %v", members, err)
	}
}

// TestPresenceInstanceKilled: an instance SIGKILLed while it holds members
// of every door (Pusher, hybridrt's WebSocket, SSE): they are gone
// everywhere within 30 s, member_removed sent once each, and a user also
// connected elsewhere stays.
func TestPresenceInstanceKilled(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t, true)
	procs := startProcs(t, 2, url)
	pa, pb := procs[0], procs[1]
	acme := setupTenant(t, pa, "Acme")
	key, secret := acme.SigningKey.Kid, acme.SigningKey.Secret

	watcher := connectPusher(t, pa.url, key)
	watcher.joinPresence(key, secret, "presence-room", "watcher")
	both := connectPusher(t, pa.url, key) // "both" is on the survivor too
	both.joinPresence(key, secret, "presence-room", "both")
	watcher.memberEvent("pusher_internal:member_added")
	var doomed []*wsClient
	for _, u := range []string{"x", "y", "both"} {
		c := connectPusher(t, pb.url, key)
		c.joinPresence(key, secret, "presence-room", u)
		doomed = append(doomed, c)
	}
	// Members of the other doors on the doomed instance: hybridrt's own
	// WebSocket and an SSE stream.
	c := client.New(pa.url, acme.APIKey)
	z := dialWSURL(t, pb.url, "")
	z.send(map[string]any{"op": "auth", "token": presenceToken(t, c, "z")})
	z.expect("ready")
	z.send(map[string]any{"op": "subscribe", "channels": []string{"presence-room"}})
	z.expect("subscribed")
	sctx, stopSSE := context.WithCancel(context.Background())
	defer stopSSE()
	req, _ := http.NewRequestWithContext(sctx, "GET", pb.url+"/api/realtime/sse?channels=presence-room", nil)
	req.Header.Set("Authorization", "Bearer "+presenceToken(t, c, "s"))
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("SSE member on the doomed instance: %v %v", res, err)
	}
	for range 4 { // x, y, z and s; "both" was already a member
		watcher.memberEvent("pusher_internal:member_added")
	}
	watcher.quiet(300 * time.Millisecond)

	pb.kill()
	killed := time.Now()
	gone := map[string]bool{}
	for len(gone) < 4 {
		u := watcher.memberEvent("pusher_internal:member_removed")
		if gone[u] {
			t.Errorf("member_removed for %s twice", u)
		}
		gone[u] = true
	}
	if took := time.Since(killed); took > 30*time.Second {
		t.Errorf("the killed instance's members went after %v, want within 30 s", took)
	}
	if !gone["x"] || !gone["y"] || !gone["z"] || !gone["s"] {
		t.Errorf("removed %v, want x, y, z and s", gone)
	}
	watcher.quiet(time.Second) // not "both": it is still on the survivor

	hc := &http.Client{Timeout: 5 * time.Second}
	status, body, err := httpCall(hc, "GET", pa.url+"/v1/presence/presence-room", acme.APIKey, "")
	var got struct{ Members []presence.Member }
	if err != nil || status != http.StatusOK || json.Unmarshal(body, &got) != nil || len(got.Members) != 2 {
		t.Errorf("GET /v1/presence after the kill = %d %s (%v), want watcher and both", status, body, err)
	}
	_ = doomed
}

// TestPresenceThreeDoors: a pusher-js user on instance A, an SSE user (the
// Go client, SSE only) on B and a WebSocket user (the Go client over
// hybridrt.v1) on C share one presence channel: each sees the same three
// members, and every instance's GET /v1/presence lists them. C is killed:
// its member is gone for the others within 30 s.
func TestPresenceThreeDoors(t *testing.T) {
	t.Parallel()
	procs := startProcs(t, 3, pgtest.NewURL(t, true))
	pa, pb, pc := procs[0], procs[1], procs[2]
	acme := setupTenant(t, pa, "Acme")
	c := client.New(pa.url, acme.APIKey)

	pj := startPusherJS(t, pusherConfigAt(t, pa.url, acme.Tenant.ID, acme.SigningKey.Kid, acme.SigningKey.Secret))
	pj.do(map[string]any{"op": "subscribe", "channel": "presence-room", "user": map[string]any{"user_id": "pj", "user_info": map[string]any{"name": "pj"}}})
	pj.waitFor(pusherLine("subscribed", "channel", "presence-room"), 10*time.Second)

	subscribe := func(p *apiProc, user string, transport client.Transport) *client.Subscription {
		s, err := client.Subscribe(t.Context(), client.SubscribeOptions{
			URL: p.url, Channels: []string{"presence-room"}, Transports: []client.Transport{transport},
			Token: func(ctx context.Context) (string, error) {
				tok, err := c.Mint(ctx, client.TokenRequest{Sub: user, Channels: []string{"presence-*"}, Info: json.RawMessage(`{"name":"` + user + `"}`)})
				return tok.Token, err
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	membersOf := func(s *client.Subscription) string {
		ms, _ := s.Members("presence-room")
		var ids []string
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		return strings.Join(ids, ",")
	}
	waitMembers := func(who string, s *client.Subscription, want string, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); membersOf(s) != want; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s sees members %q after %v, want %s", who, membersOf(s), within, want)
			}
		}
	}
	sse := subscribe(pb, "sse", client.SSE)
	waitMembers("the SSE user", sse, "pj,sse", 10*time.Second)
	if line := pj.waitFor(eventLine("presence-room", "pusher:member_added"), 10*time.Second); !strings.Contains(dataOf(line), `"sse"`) {
		t.Fatalf("pusher-js was told of %v, want sse joining", line)
	}
	ws := subscribe(pc, "ws", client.WebSocket)
	waitMembers("the WebSocket user", ws, "pj,sse,ws", 10*time.Second)
	waitMembers("the SSE user", sse, "pj,sse,ws", 10*time.Second)
	if line := pj.waitFor(eventLine("presence-room", "pusher:member_added"), 10*time.Second); !strings.Contains(dataOf(line), `"ws"`) {
		t.Fatalf("pusher-js was told of %v, want ws joining", line)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	for _, p := range procs {
		status, body, err := httpCall(hc, "GET", p.url+"/v1/presence/presence-room", acme.APIKey, "")
		var got struct{ Members []presence.Member }
		if err != nil || status != http.StatusOK || json.Unmarshal(body, &got) != nil {
			t.Fatalf("GET /v1/presence via %s = %d %s (%v)", p.name, status, body, err)
		}
		var ids []string
		for _, m := range got.Members {
			ids = append(ids, m.UserID)
		}
		if strings.Join(ids, ",") != "pj,sse,ws" {
			t.Errorf("GET /v1/presence via %s lists %v, want pj, sse and ws", p.name, ids)
		}
	}

	pc.kill()
	killed := time.Now()
	line := pj.waitFor(eventLine("presence-room", "pusher:member_removed"), 35*time.Second)
	if !strings.Contains(dataOf(line), `"ws"`) {
		t.Errorf("pusher-js was told of %v, want ws leaving", line)
	}
	waitMembers("the SSE user", sse, "pj,sse", 35*time.Second-time.Since(killed))
	if took := time.Since(killed); took > 30*time.Second {
		t.Errorf("the killed instance's member went after %v, want within 30 s", took.Round(time.Millisecond))
	} else {
		t.Logf("the killed instance's member was gone for pusher-js and the SSE user %v after the kill", took.Round(time.Millisecond))
	}
}

// TestPresenceListenerKilled: joins and leaves on one instance while the
// other's LISTEN connection is down reach the other's subscribers anyway,
// once each, when it reconnects and reads the members again.
func TestPresenceListenerKilled(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	a, b := newInstance(t, db, testConfig()), newInstance(t, db, testConfig())
	acme := a.signup("Acme")
	key, secret := acme.SigningKey.Kid, acme.SigningKey.Secret
	watcher := connectPusher(t, b.url, key)
	watcher.joinPresence(key, secret, "presence-room", "watcher")
	leaver := connectPusher(t, a.url, key)
	leaver.joinPresence(key, secret, "presence-room", "leaver")
	if u := watcher.memberEvent("pusher_internal:member_added"); u != "leaver" {
		t.Fatalf("watcher told %s joined", u)
	}

	// Kill both listeners, and change the members at once, before they are back.
	killListeners(t, db, 2)
	joiner := connectPusher(t, a.url, key)
	joiner.joinPresence(key, secret, "presence-room", "joiner")
	leaver.send("pusher:unsubscribe", map[string]string{"channel": "presence-room"})

	got := map[string]string{}
	for range 2 {
		select {
		case m := <-watcher.msgs:
			var d struct {
				UserID string `json:"user_id"`
			}
			_ = json.Unmarshal([]byte(m.dataString(t)), &d)
			if prev, dup := got[d.UserID]; dup {
				t.Errorf("%s for %s after %s", m.Event, d.UserID, prev)
			}
			got[d.UserID] = m.Event
		case <-time.After(10 * time.Second):
			t.Fatalf("after the listeners came back the watcher got %v, want joiner added and leaver removed", got)
		}
	}
	if got["joiner"] != "pusher_internal:member_added" || got["leaver"] != "pusher_internal:member_removed" {
		t.Errorf("watcher got %v, want joiner added and leaver removed", got)
	}
	watcher.quiet(500 * time.Millisecond)
}
