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
)

// fakeServer speaks just enough of hybridrt's API for run: sign-up, tokens,
// publish and SSE. It can drop or repeat one event for its first subscriber.
type fakeServer struct {
	mu        sync.Mutex
	next      int64
	subs      []chan []byte
	drop, dup int64 // event ids to drop or send twice to subscriber 0
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
	case "/api/realtime/sse":
		f.stream(w, r)
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
		frame := []byte("id: " + id + "\nevent: " + e.Type + "\ndata: {\"id\":\"" + id + "\",\"channel\":\"" + e.Channel +
			"\",\"type\":\"" + e.Type + "\",\"data\":" + string(e.Data) + ",\"time\":\"" +
			time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00") + "\"}\n\n")
		for i, c := range f.subs {
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

func (f *fakeServer) stream(w http.ResponseWriter, r *http.Request) {
	c := make(chan []byte, 100000)
	f.mu.Lock()
	f.subs = append(f.subs, c)
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

func TestRun(t *testing.T) {
	for _, c := range []struct {
		name      string
		drop, dup int64
		ok        bool
		want      string
	}{
		{"clean", 0, 0, true, "missing: 0\n"},
		{"lost", 3, 0, false, "missing: 1\n"},
		{"duplicated", 0, 4, false, "duplicates: 1\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeServer{drop: c.drop, dup: c.dup}
			srv := httptest.NewServer(f)
			defer srv.Close()
			o := options{
				url: srv.URL, subscribers: 3, channel: "load", publishers: 2, rate: 40, batch: 2,
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
			if !strings.Contains(report, "events acknowledged: 20\n") || !strings.Contains(report, "subscribers: 3\n") {
				t.Errorf("want 20 events acknowledged and 3 subscribers:\n%s", report)
			}
		})
	}
}
