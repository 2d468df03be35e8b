package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeServer speaks just enough of hybridrt's API for run: sign-up, tokens,
// settings, publish, SSE and the Pusher door. It can drop or repeat one
// event for its first subscriber.
type fakeServer struct {
	mu        sync.Mutex
	next      int64
	subs      []fakeSub
	drop, dup int64 // event ids to drop or send twice to subscriber 0
	// goroutines answers /metrics' go_goroutines, given how many times
	// /metrics was read before; nil serves no /metrics.
	goroutines func(reads int) int64
	reads      int
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/tenants":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"tenant":{"id":"1"},"apiKey":"hrt_k","signingKey":{"kid":"sk","secret":"s"}}`)
	case "/v1/tokens":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"token":"t"}`)
	case "/v1/events":
		f.publish(w, r)
	case "/v1/tenant/settings":
		fmt.Fprint(w, `{"publicChannels":["load"]}`)
	case "/api/realtime/sse":
		f.stream(w, r)
	case "/app/sk":
		f.pusher(w, r)
	case "/metrics":
		f.mu.Lock()
		get := f.goroutines
		n := f.reads
		f.reads++
		f.mu.Unlock()
		if get == nil {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines %d\n", get(n))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeServer) publish(w http.ResponseWriter, r *http.Request) {
	type event struct {
		Channel string          `json:"channel"`
		Type    string          `json:"type"`
		Data    json.RawMessage `json:"data"`
	}
	var req struct {
		event
		Events []event `json:"events"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	evs := req.Events
	if evs == nil {
		evs = []event{req.event}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, e := range evs {
		f.next++
		id := strconv.FormatInt(f.next, 10)
		ids = append(ids, id)
		sse := []byte("id: " + id + "\nevent: " + e.Type + "\ndata: {\"id\":\"" + id + "\",\"channel\":\"" + e.Channel +
			"\",\"type\":\"" + e.Type + "\",\"data\":" + string(e.Data) + ",\"time\":\"" +
			time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00") + "\"}\n\n")
		data, _ := json.Marshal(string(e.Data))
		ws := []byte(`{"event":"` + e.Type + `","channel":"` + e.Channel + `","data":` + string(data) + `,"id":"` + id + `"}`)
		for i, sub := range f.subs {
			frame, c := sse, sub.c
			if sub.pusher {
				frame = ws
			}
			switch {
			case i == 0 && f.next == f.drop:
			case i == 0 && f.next == f.dup:
				c <- frame
				c <- frame
			default:
				c <- frame
			}
		}
	}
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string][]string{"ids": ids})
}

// fakeSub is a subscriber's queue of frames.
type fakeSub struct {
	c      chan []byte
	pusher bool // Pusher messages rather than SSE frames
}

func (f *fakeServer) stream(w http.ResponseWriter, r *http.Request) {
	c := make(chan []byte, 100000)
	f.mu.Lock()
	f.subs = append(f.subs, fakeSub{c: c})
	cursor := f.next
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "retry: 2000\n\nid: %d\nevent: ready\ndata: {\"connectionId\":\"c_1\",\"cursor\":\"%d\",\"heartbeat\":15}\n\n", cursor, cursor)
	w.(http.Flusher).Flush()
	for {
		select {
		case b := <-c:
			w.Write(b)
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// pusher serves the Pusher door: connection_established, a subscription
// to any channel, then the queued messages.
func (f *fakeServer) pusher(w http.ResponseWriter, r *http.Request) {
	ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	ws.WriteMessage(websocket.TextMessage, []byte(`{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.1\",\"activity_timeout\":120}"}`))
	var sub struct {
		Event string `json:"event"`
		Data  struct {
			Channel string `json:"channel"`
		} `json:"data"`
	}
	if err := ws.ReadJSON(&sub); err != nil || sub.Event != "pusher:subscribe" {
		return
	}
	// A ping first: the subscriber must answer it and carry on.
	ws.WriteMessage(websocket.TextMessage, []byte(`{"event":"pusher:ping","data":"{}"}`))
	var pong struct{ Event string }
	if err := ws.ReadJSON(&pong); err != nil || pong.Event != "pusher:pong" {
		return
	}
	c := make(chan []byte, 100000)
	f.mu.Lock()
	f.subs = append(f.subs, fakeSub{c: c, pusher: true})
	f.mu.Unlock()
	ws.WriteMessage(websocket.TextMessage, []byte(`{"event":"pusher_internal:subscription_succeeded","channel":"`+sub.Data.Channel+`","data":"{}"}`))
	gone := make(chan struct{})
	go func() { // reads until the subscriber closes, for the close to be noticed
		defer close(gone)
		for {
			if _, _, err := ws.NextReader(); err != nil {
				return
			}
		}
	}()
	for {
		select {
		case b := <-c:
			if ws.WriteMessage(websocket.TextMessage, b) != nil {
				return
			}
		case <-gone:
			return
		}
	}
}

func TestRun(t *testing.T) {
	for _, c := range []struct {
		name      string
		transport string
		drop, dup int64
		ok        bool
		want      string
	}{
		{"clean", "sse", 0, 0, true, "missing: 0\n"},
		{"lost", "sse", 3, 0, false, "missing: 1\n"},
		{"duplicated", "sse", 0, 4, false, "duplicates: 1\n"},
		{"pusher clean", "pusher", 0, 0, true, "missing: 0\n"},
		{"pusher lost", "pusher", 3, 0, false, "missing: 1\n"},
		{"pusher duplicated", "pusher", 0, 4, false, "duplicates: 1\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeServer{drop: c.drop, dup: c.dup}
			srv := httptest.NewServer(f)
			defer srv.Close()
			o := options{
				url: srv.URL, transport: c.transport, subscribers: 3, channel: "load", publishers: 2, rate: 40, batch: 2,
				duration: 500 * time.Millisecond, settle: time.Second, sources: 1, openParallel: 2,
			}
			var out bytes.Buffer
			ok, err := run(o, &out)
			if err != nil {
				t.Fatal(err)
			}
			report := out.String()
			if ok != c.ok || !strings.Contains(report, c.want) {
				t.Fatalf("ok = %v, want %v and %q in:\n%s", ok, c.ok, c.want, report)
			}
			if !strings.Contains(report, "events acknowledged: 20\n") || !strings.Contains(report, "subscribers: 3\n") ||
				!strings.Contains(report, "transport: "+c.transport+"\n") {
				t.Errorf("want 20 events acknowledged, 3 subscribers and transport %s:\n%s", c.transport, report)
			}
			if !strings.Contains(report, "latency samples: 60\n") && c.ok {
				t.Errorf("want a latency sample for each of the 60 deliveries:\n%s", report)
			}
		})
	}
}

// TestRunGoroutineCheck runs against the fake server with -pid set to the
// test's own process (for /proc), and a /metrics that either returns to its
// baseline after the subscribers close or stays above it.
func TestRunGoroutineCheck(t *testing.T) {
	defer func(d time.Duration) { goroutineSettle = d }(goroutineSettle)
	goroutineSettle = 1500 * time.Millisecond
	for _, c := range []struct {
		name       string
		goroutines func(reads int) int64
		ok         bool
		want       string
	}{
		{"back to baseline", func(reads int) int64 {
			if reads == 0 {
				return 30
			}
			return 29
		}, true, "server goroutines before/after: 30/29\n"},
		{"settles within the slack", func(reads int) int64 {
			if reads == 0 {
				return 30
			}
			return 30 + goroutineSlack
		}, true, "server goroutines before/after: 30/50\n"},
		{"leaks", func(reads int) int64 {
			if reads == 0 {
				return 30
			}
			return 30 + goroutineSlack + 1
		}, false, "server goroutines before/after: 30/51\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeServer{goroutines: c.goroutines}
			srv := httptest.NewServer(f)
			defer srv.Close()
			o := options{
				url: srv.URL, subscribers: 2, channel: "load", publishers: 1, rate: 20, batch: 1,
				duration: 200 * time.Millisecond, settle: time.Second, sources: 1, openParallel: 2, pid: os.Getpid(),
			}
			var out bytes.Buffer
			start := time.Now()
			ok, err := run(o, &out)
			if err != nil {
				t.Fatal(err)
			}
			report := out.String()
			if ok != c.ok || !strings.Contains(report, c.want) {
				t.Fatalf("ok = %v, want %v and %q in:\n%s", ok, c.ok, c.want, report)
			}
			if !strings.Contains(report, "server RSS before/after: ") || !strings.Contains(report, " MiB\n") {
				t.Errorf("no RSS line in:\n%s", report)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("run took %v", took)
			}
		})
	}
}

func TestRunWithoutMetrics(t *testing.T) {
	srv := httptest.NewServer(&fakeServer{})
	defer srv.Close()
	o := options{url: srv.URL, subscribers: 1, channel: "load", publishers: 1, batch: 1,
		duration: 100 * time.Millisecond, sources: 1, openParallel: 1, pid: os.Getpid()}
	_, err := run(o, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "goroutine") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err = %v, want a goroutine-count error quoting the 404", err)
	}
}
