package realtime

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/web"
)

// readBatch is how many events a stream reads at a time.
const readBatch = 500

// HandleSSE serves GET /api/realtime/sse: the tenant's events on the
// requested channels as a text/event-stream, replayed from the cursor
// (Last-Event-ID, or lastEventId= on a first connect) and then live.
func HandleSSE(log *slog.Logger, hub *Hub, reg *Registry, verifier *auth.Verifier, limits *Limits) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		lim, err := limits.of(ctx, auth.SubscriberFrom(ctx).TenantID)
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		cfg := lim.stream
		s, err := parseSubscription(ctx, r, hub.store, cfg, "lastEventId")
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		rc := http.NewResponseController(w)
		conn := newConn(r, s, "sse")
		if err := reg.Add(conn, s.sub.Expires, lim.maxConnections); err != nil {
			web.Fail(w, r, log, subscribeError(err))
			return
		}
		defer reg.Remove(conn)

		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
		if err := rc.Flush(); errors.Is(err, http.ErrNotSupported) {
			log.Error("realtime: the response writer cannot flush; SSE is impossible behind this middleware", "path", r.URL.Path)
			web.Error(w, http.StatusInternalServerError, "internal", "")
			return
		}
		// Subscribe before the first read: an event committed between the
		// read and the wait still wakes this stream.
		sub := hub.Subscribe(s.sub.TenantID, s.channels)
		defer sub.Close()

		// A client that stops reading stalls our writes; the deadline cuts it
		// off instead of holding a goroutine and a buffer forever. One
		// deadline covers a batch of writes and its flush.
		write := func(b []byte) error {
			_, err := w.Write(b)
			return err
		}
		flush := func() error {
			err := rc.Flush()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				slowConsumers.Inc()
			}
			return err
		}
		deadline := func() { _ = rc.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout)) }
		deadline()

		cursor := s.cursor
		head := "retry: " + strconv.FormatInt(cfg.Retry.Milliseconds(), 10) + "\n\n"
		if err := write([]byte(head)); err != nil {
			return
		}
		if s.resync {
			_ = write(systemFrame("resync", strconv.FormatInt(cursor, 10), map[string]string{
				"cursor": strconv.FormatInt(cursor, 10),
				"reason": "the requested position is older than the retention period; reload your state",
			}))
		}
		// ready carries the cursor as its id, so a reconnect before any event
		// resumes from here rather than from a later head.
		if err := write(systemFrame("ready", strconv.FormatInt(cursor, 10), map[string]any{
			"connectionId": conn.ID,
			"cursor":       strconv.FormatInt(cursor, 10),
			"heartbeat":    int(cfg.Heartbeat.Seconds()),
		})); err != nil {
			return
		}
		if flush() != nil {
			return
		}

		heartbeat := time.NewTicker(cfg.Heartbeat)
		defer heartbeat.Stop()
		expiry := time.NewTimer(time.Until(conn.Expires()))
		defer expiry.Stop()
		live := false // after the first empty read, events are live, not replayed
		for {
			evs, scanned, err := sub.After(ctx, cursor, readBatch)
			if err != nil {
				return // the client resumes with Last-Event-ID
			}
			if len(evs) > 0 {
				deadline()
			}
			for _, e := range evs {
				if err := write(e.Frame); err != nil {
					return
				}
			}
			cursor = scanned
			if len(evs) > 0 {
				if flush() != nil {
					return
				}
				if live { // the newest event's age: what the slowest of the batch waited
					deliveryLatency.Observe(time.Since(evs[len(evs)-1].Time).Seconds())
				}
				sseDelivered.Add(float64(len(evs)))
			}
			if len(evs) == readBatch {
				continue // more backlog
			}
			live = true

			select {
			case <-ctx.Done():
				return
			case <-hub.Done():
				// Shutting down: ask clients to come back at staggered times,
				// so they do not all reconnect to the other instances at once.
				deadline()
				_ = write([]byte("retry: " + strconv.Itoa(500+rand.IntN(4500)) + "\n\n"))
				_ = flush()
				return
			case <-sub.Wake():
			case <-heartbeat.C:
				deadline()
				if ok, err := verifier.KeyActive(ctx, s.sub.Kid); err == nil && !ok {
					_ = write(systemFrame("token_expired", "", map[string]string{"reason": "the signing key was revoked"}))
					_ = flush()
					return
				}
				if write([]byte(": ping\n\n")) != nil || flush() != nil {
					return
				}
			case <-expiry.C:
				if exp := reg.refreshExpiry(ctx, conn); time.Until(exp) > 0 {
					expiry.Reset(time.Until(exp)) // renewed in place
					continue
				}
				deadline()
				_ = write(systemFrame("token_expired", "", map[string]string{"reason": "the token expired; get a new one and resume from your last event id"}))
				_ = flush()
				return
			}
		}
	}
}
