package admin

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/views"
)

// HandleEventStream serves GET /console/events/stream: the tenant's events,
// every channel, as they are published, each rendered as a log entry for
// htmx's SSE extension to insert at the top of the log.
func (c *Console) HandleEventStream(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tid := tenant.FromContext(ctx)
	// The log ends when the operator suspends the tenant; its reconnect then gets the 403.
	suspended := c.Status.Watch(tid)
	defer c.Status.Unwatch(tid)
	pos, err := c.Store.Position(ctx, tid)
	if err != nil {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	sub := c.Hub.SubscribeAll(tid)
	defer sub.Close()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	if err := rc.Flush(); errors.Is(err, http.ErrNotSupported) {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	// Start where the page's render left off (after=), or where the
	// browser's EventSource last was (Last-Event-ID), so no event falls
	// between the page and the stream.
	cursor := pos.Head
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = r.URL.Query().Get("after")
	}
	if c, ok, err := realtime.ParseCursor(raw); err == nil && ok && c <= pos.Head {
		cursor = max(c, pos.Head-100) // a long-closed tab replays at most the last 100
	}
	var buf bytes.Buffer
	for {
		evs, scanned, err := sub.After(ctx, cursor, 100)
		if err != nil {
			return
		}
		cursor = scanned
		for _, e := range evs {
			buf.Reset()
			if err := views.LogItem(logEntry(e), true).Render(ctx, &buf); err != nil {
				return
			}
			// One data: line per line of HTML; the client joins them with \n.
			var frame strings.Builder
			frame.WriteString("id: " + strconv.FormatInt(e.ID, 10) + "\nevent: message\n")
			for _, line := range strings.Split(buf.String(), "\n") {
				frame.WriteString("data: " + strings.TrimRight(line, "\r") + "\n")
			}
			frame.WriteString("\n")
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := w.Write([]byte(frame.String())); err != nil {
				return
			}
		}
		if len(evs) > 0 && rc.Flush() != nil {
			return
		}
		if len(evs) == 100 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-c.Hub.Done():
			return
		case <-suspended.Done():
			return
		case <-sub.Wake():
		case <-heartbeat.C:
			if _, err := w.Write([]byte(": ping\n\n")); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
