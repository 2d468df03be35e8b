package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// TestPusherSilentClient: a client that stops answering (a half-open
// connection, a frozen tab) gets pusher:ping after the activity timeout and
// is dropped with 4201 when the pong does not come; its registry entry and
// presence go with it.
func TestPusherSilentClient(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Pusher.ActivityTimeout = time.Second
	cfg.Pusher.PongTimeout = time.Second
	in := newInstance(t, pgtest.NewDB(t), cfg)
	acme := in.signup("Acme")
	key, secret := acme.SigningKey.Kid, acme.SigningKey.Secret

	watcher := connectPusher(t, in.url, key)
	watcher.joinPresence(key, secret, "presence-room", "watcher")
	silent := connectPusher(t, in.url, key)
	silent.joinPresence(key, secret, "presence-room", "silent")
	watcher.memberEvent("pusher_internal:member_added")

	// The watcher answers pings; the silent one does not.
	stop := make(chan struct{})
	defer close(stop)
	var mu sync.Mutex
	var watcherEvents []wsMessage
	go func() {
		for {
			select {
			case <-stop:
				return
			case m, ok := <-watcher.msgs:
				if !ok {
					return
				}
				if m.Event == "pusher:ping" {
					watcher.send("pusher:pong", map[string]string{})
					continue
				}
				mu.Lock()
				watcherEvents = append(watcherEvents, m)
				mu.Unlock()
			}
		}
	}()
	start := time.Now()
	silent.next("pusher:ping")
	if code := silent.closeCode(); code != 4201 {
		t.Errorf("silent client closed with %d, want 4201", code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("silent client dropped after %v, want about 2 s", took)
	}
	waitFor(t, 5*time.Second, func() string {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range watcherEvents {
			if m.Event == "pusher_internal:member_removed" {
				return ""
			}
		}
		return fmt.Sprintf("watcher got %d messages, no member_removed", len(watcherEvents))
	})
	if n := in.presenceCount(acme, "presence-room"); n != 1 {
		t.Errorf("%d members after the silent one was dropped, want 1", n)
	}
}

// TestPusherListenerKilled: the LISTEN connection is killed while client
// events flow from one instance to the other: every client event that was
// stored reaches the other side once, in order, and none reaches its sender.
func TestPusherListenerKilled(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	a, b := newInstance(t, db, testConfig()), newInstance(t, db, testConfig())
	acme := a.signup("Acme")
	enableClientEvents(t, a, acme)
	key, secret := acme.SigningKey.Kid, acme.SigningKey.Secret
	sender, receiver := connectPusher(t, a.url, key), connectPusher(t, b.url, key)
	for _, c := range []*wsClient{sender, receiver} {
		c.subscribePrivate(key, secret, "private-chat", "")
		c.next("pusher_internal:subscription_succeeded")
	}

	const n = 40
	for i := range n {
		sender.send("client-move", map[string]int{"i": i}, "private-chat")
		time.Sleep(110 * time.Millisecond) // under 10 a second
		if i == n/3 || i == 2*n/3 {
			killListeners(t, db, 2)
		}
	}
	waitFor(t, 10*time.Second, func() string {
		if got := pgtest.Count(t, db, `SELECT count(*) FROM events WHERE origin = $1`, sender.socketID); got != n {
			return fmt.Sprintf("%d of %d client events stored", got, n)
		}
		return ""
	})
	var ids []int64
	seen := map[int]bool{}
	for len(ids) < n {
		m := receiver.nextWithin("client-move", 15*time.Second)
		id, _ := strconv.ParseInt(m.ID, 10, 64)
		if len(ids) > 0 && id <= ids[len(ids)-1] {
			t.Fatalf("event %d after %d: out of order or repeated", id, ids[len(ids)-1])
		}
		ids = append(ids, id)
		var d struct{ I int }
		_ = json.Unmarshal([]byte(m.dataString(t)), &d)
		if seen[d.I] {
			t.Fatalf("client event %d delivered twice", d.I)
		}
		seen[d.I] = true
	}
	receiver.quiet(500 * time.Millisecond)
	sender.quiet(100 * time.Millisecond) // never its own
}

// TestPusherShutdown: an instance shutting down closes its sockets with
// 4100, so pusher-js reconnects after a back-off, elsewhere, and refuses
// new ones the same way; the hub's wait for its streams includes them.
func TestPusherShutdown(t *testing.T) {
	t.Parallel()
	in := newInstance(t, pgtest.NewDB(t), testConfig())
	acme := in.signup("Acme")
	key, secret := acme.SigningKey.Kid, acme.SigningKey.Secret
	c := connectPusher(t, in.url, key)
	c.joinPresence(key, secret, "presence-room", "ann")
	in.svc.hub.Close()
	if code := c.closeCode(); code != 4100 {
		t.Errorf("closed with %d at shutdown, want 4100", code)
	}
	late, _, err := dialPusher(t, in.url, key)
	if err != nil {
		t.Fatal(err)
	}
	if code := late.closeCode(); code != 4100 {
		t.Errorf("a connection during shutdown closed with %d, want 4100", code)
	}
	if err := in.svc.hub.WaitStreams(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := in.presenceCount(acme, "presence-room"); n != 0 {
		t.Errorf("%d members left after shutdown", n)
	}
}
