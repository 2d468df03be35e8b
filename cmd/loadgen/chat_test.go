package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeRoom speaks just enough of hybridrt's API and of hybridrt.v1 for the
// presence-chat scenario: sign-up, settings, tokens (the token is the sub),
// presence and client events. It can drop one event for member m0, send one
// back to its sender, or refuse one publish.
type fakeRoom struct {
	mu                 sync.Mutex
	next               int64
	members            []*fakeMember
	clientEvents       bool
	drop, echo, refuse int64 // event ids (refuse: the n-th publish) to misbehave on
	publishes          int64
}

type fakeMember struct {
	sub string
	wmu sync.Mutex
	ws  *websocket.Conn
}

func (f *fakeMember) send(v any) {
	b, _ := json.Marshal(v)
	f.wmu.Lock()
	defer f.wmu.Unlock()
	_ = f.ws.WriteMessage(websocket.TextMessage, b)
}

func (f *fakeRoom) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/tenants":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"tenant":{"id":"1"},"apiKey":"hrt_k","signingKey":{"kid":"sk","secret":"s"}}`)
	case "/v1/tenant/settings":
		var s struct{ ClientEvents bool }
		_ = json.NewDecoder(r.Body).Decode(&s)
		f.mu.Lock()
		f.clientEvents = s.ClientEvents
		f.mu.Unlock()
		fmt.Fprint(w, `{}`)
	case "/v1/tokens":
		var req struct {
			Sub      string   `json:"sub"`
			Channels []string `json:"channels"`
			Publish  []string `json:"publish"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		if len(req.Publish) != 1 || len(req.Channels) != 1 || req.Publish[0] != req.Channels[0] {
			http.Error(w, "want one channel to subscribe and publish to", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"token": req.Sub})
	case "/api/realtime/ws":
		f.serveWS(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeRoom) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := (&websocket.Upgrader{Subprotocols: []string{"hybridrt.v1"}}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	me := &fakeMember{ws: ws}
	var m struct {
		Op       string          `json:"op"`
		Token    string          `json:"token"`
		Channels []string        `json:"channels"`
		Channel  string          `json:"channel"`
		Type     string          `json:"type"`
		Data     json.RawMessage `json:"data"`
		Ref      json.RawMessage `json:"ref"`
	}
	if ws.ReadJSON(&m) != nil || m.Op != "auth" {
		return
	}
	me.sub = m.Token
	f.mu.Lock()
	me.send(map[string]any{"op": "ready", "connectionId": "c_" + me.sub, "cursor": strconv.FormatInt(f.next, 10)})
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, o := range f.members {
			if o == me {
				f.members = append(f.members[:i], f.members[i+1:]...)
				break
			}
		}
	}()
	for {
		if ws.ReadJSON(&m) != nil {
			return
		}
		f.mu.Lock()
		switch m.Op {
		case "subscribe":
			f.members = append(f.members, me)
			me.send(map[string]any{"op": "subscribed", "channels": m.Channels, "ref": m.Ref})
			var list []map[string]string
			for _, o := range f.members {
				list = append(list, map[string]string{"id": o.sub})
				if o != me {
					o.send(map[string]any{"op": "member_added", "channel": m.Channels[0], "member": map[string]string{"id": me.sub}})
				}
			}
			me.send(map[string]any{"op": "presence", "channel": m.Channels[0], "members": list})
		case "publish":
			f.publishes++
			if !f.clientEvents || f.publishes == f.refuse {
				me.send(map[string]any{"op": "error", "code": "client_event_rate_limited", "message": "slow down", "ref": m.Ref})
				break
			}
			f.next++
			id := strconv.FormatInt(f.next, 10)
			me.send(map[string]any{"op": "published", "id": id, "ref": m.Ref})
			frame := []byte(`{"op":"event","event":{"id":"` + id + `","channel":"` + m.Channel + `","type":"` + m.Type +
				`","data":` + string(m.Data) + `,"time":"` + time.Now().UTC().Format("2006-01-02T15:04:05.000Z") + `","user":"` + me.sub + `"}}`)
			for _, o := range f.members {
				if (o == me && f.next != f.echo) || (o.sub == "m0" && f.next == f.drop) {
					continue
				}
				o.wmu.Lock()
				_ = o.ws.WriteMessage(websocket.TextMessage, frame)
				o.wmu.Unlock()
			}
		}
		f.mu.Unlock()
	}
}

func TestRunPresenceChat(t *testing.T) {
	for _, c := range []struct {
		name               string
		drop, echo, refuse int64
		ok                 bool
		want               []string
	}{
		{"clean", 0, 0, 0, true, []string{"missing: 0\n", "delivered to the sender: 0\n", "events refused: 0\n"}},
		{"lost", 3, 0, 0, false, []string{"missing: 1\n"}},
		{"echoed", 0, 4, 0, false, []string{"delivered to the sender: 1\n", "missing: 0\n"}},
		{"refused", 0, 0, 2, false, []string{"events refused: 1\n", "events refused by code: client_event_rate_limited=1\n", "missing: 0\n"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeRoom{drop: c.drop, echo: c.echo, refuse: c.refuse}
			srv := httptest.NewServer(f)
			defer srv.Close()
			o := options{
				url: srv.URL, scenario: scenarioChat, transport: "ws", subscribers: 4, channel: "room", rate: 40,
				duration: 500 * time.Millisecond, settle: 2 * time.Second, joinWait: 5 * time.Second, sources: 1, openParallel: 2,
			}
			var out bytes.Buffer
			ok, err := run(o, &out)
			if err != nil {
				t.Fatal(err)
			}
			report := out.String()
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v:\n%s", ok, c.ok, report)
			}
			// 4 members at 10 events/s each for 0.5 s: 20 sent, each due to 3.
			want := append(c.want, "channel: presence-room\n", "members joined: 4\n", "members seeing all before publishing: 4/4\n",
				"events sent: 20\n", "out-of-order: 0\n", "duplicates: 0\n")
			acked := 20 - min(c.refuse, 1)
			want = append(want, fmt.Sprintf("events acknowledged: %d\n", acked), fmt.Sprintf("expected deliveries: %d\n", 3*acked))
			for _, w := range want {
				if !strings.Contains(report, w) {
					t.Errorf("no %q in:\n%s", w, report)
				}
			}
		})
	}
}

func TestMemberSaw(t *testing.T) {
	m := newMember(&streamConfig{}, &roomConfig{members: 3}, 0, "")
	for _, id := range []string{"m0", "m1", "m1", "m2", "m3", "x", "m01"} {
		m.saw(id, true)
	}
	if m.nSeen != 3 || m.strangers != 3 {
		t.Fatalf("nSeen %d, strangers %d; want 3 and 3 (m3 is past N, x and m01 are not member names)", m.nSeen, m.strangers)
	}
	m.saw("m1", false)
	m.saw("m1", false)
	if m.nSeen != 2 {
		t.Fatalf("nSeen %d after m1 left, want 2", m.nSeen)
	}
}
