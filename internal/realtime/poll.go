package realtime

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// MaxPollTimeout is the longest a long-poll is held.
const MaxPollTimeout = 30 * time.Second

// HandlePoll serves GET /api/realtime/polling: the events after cursor on
// the requested channels, at once if there are any, else as soon as one
// arrives, else an empty answer after timeout seconds (default 25, at most
// 30). The returned cursor is an event id, interchangeable with SSE ids. A
// poll held when the operator suspends its tenant ends with 403
// tenant_suspended.
//
// A poll of presence channels answers their members too (presence, which
// may be nil); with connectionId the poller is one of them while it keeps
// polling.
func HandlePoll(log *slog.Logger, hub *Hub, reg *Registry, limits *Limits, presence PresencePoll) http.HandlerFunc {
	type response struct {
		Events   []*Event                   `json:"events"`
		Cursor   string                     `json:"cursor"`
		Resync   bool                       `json:"resync,omitempty"`   // events before cursor were lost to retention
		Presence map[string]json.RawMessage `json:"presence,omitempty"` // members, by presence channel
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		timeout := 25 * time.Second
		if v := r.URL.Query().Get("timeout"); v != "" {
			secs, err := strconv.Atoi(v)
			if err != nil || secs < 0 {
				web.Error(w, http.StatusBadRequest, "invalid_timeout", "timeout is a whole number of seconds, 0 to 30")
				return
			}
			timeout = min(time.Duration(secs)*time.Second, MaxPollTimeout) // longer asks are clamped
		}
		lim, err := limits.of(ctx, auth.SubscriberFrom(ctx).TenantID)
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		s, err := parseSubscription(ctx, r, hub.store, lim.stream, "cursor", "lastEventId")
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		// A polling client names itself as it does when it sends client
		// events (POST /api/realtime/publish), so that it does not get its
		// own back. Any id only hides events from the one who gives it.
		self := r.URL.Query().Get("connectionId")
		if self != "" && !validConnectionID(self) {
			web.Error(w, http.StatusBadRequest, "invalid_connection_id", `"connectionId" is c_ and up to 62 more characters, as the SDKs make it`)
			return
		}
		members, joined, err := pollPresence(ctx, presence, s, self, time.Now().Add(timeout+lim.stream.PollPresenceGrace))
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		if joined { // a new member: the members now, without holding
			timeout = 0
		}
		conn := newConn(r, s, "polling")
		if err := reg.Add(ctx, conn, s.sub.Expires, lim.maxConnections); err != nil {
			web.Fail(w, r, log, subscribeError(err))
			return
		}
		defer reg.Remove(conn)

		// Set up: from here on the poll is held until its timeout, not the
		// connect deadline (web.WithConnectDeadline).
		ctx = web.StreamContext(ctx)
		sub := hub.Subscribe(s.sub.TenantID, s.channels)
		defer sub.Close()
		// Never hold past the token's expiry.
		deadline := time.NewTimer(min(timeout, time.Until(s.sub.Expires)))
		defer deadline.Stop()

		cursor := s.cursor
		for {
			evs, scanned, err := sub.After(ctx, cursor, readBatch)
			if err != nil {
				web.Fail(w, r, log, web.Unavailable(err))
				return
			}
			cursor = scanned
			if self != "" {
				evs = slices.DeleteFunc(evs, func(e *Event) bool { return e.Origin == self })
			}
			if len(evs) > 0 || s.resync {
				if len(evs) > 0 {
					bytes := 0
					for _, e := range evs {
						bytes += len(e.Frame) // the event as encoded once for every transport
					}
					hub.ObserveDelivery(s.sub.TenantID, "polling", len(evs), bytes, evs[len(evs)-1].Time, false)
				}
				if evs == nil {
					evs = []*Event{}
				}
				encodeEvents(w, http.StatusOK, response{Events: evs, Cursor: strconv.FormatInt(cursor, 10), Resync: s.resync, Presence: members})
				return
			}
			select {
			case <-sub.Wake():
				continue
			case <-ctx.Done():
				return
			case <-hub.Done():
			case <-deadline.C:
			case <-conn.TenantSuspended():
				tenant.SuspendedProblem().Write(w)
				return
			}
			encodeEvents(w, http.StatusOK, response{Events: []*Event{}, Cursor: strconv.FormatInt(cursor, 10), Presence: members})
			return
		}
	}
}

// pollPresence makes the poller (self, when it gave one) a member of its
// presence channels until until, and returns their members, read as the
// poll starts.
func pollPresence(ctx context.Context, presence PresencePoll, s subscription, self string, until time.Time) (out map[string]json.RawMessage, joined bool, err error) {
	if presence == nil {
		return nil, false, nil
	}
	for _, ch := range s.channels {
		if !IsPresence(ch) {
			continue
		}
		members, fresh, err := presence(ctx, s.sub.TenantID, s.sub.Subject, ch, self, s.sub.Info, until)
		if err != nil {
			return nil, false, err
		}
		if out == nil {
			out = map[string]json.RawMessage{}
		}
		out[ch], joined = members, joined || fresh
	}
	return out, joined, nil
}
