package realtime

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// PresenceJoin makes connection c a member of the presence channel, as its
// user with info (the token's info claim), and calls update with every
// message for the client: first "presence" with {"channel","members"},
// then "member_added" and "member_removed" with {"channel","member"}. update
// must not block. leave ends the membership (a failure leaves the row to
// be swept with its instance's). A refusal (the channel is
// full, the member invalid) is a *web.Problem.
//
// Package presence implements it (Registry.ForStreams): the core does not
// import the doors and their stores, it is handed what they offer.
type PresenceJoin func(ctx context.Context, c *Conn, channel string, info json.RawMessage, update func(op string, data []byte)) (leave func(context.Context) error, err error)

// PresencePoll answers a long-poll of a presence channel: the members now,
// as a JSON list. With connID (the id the client gives its polls) it first
// makes the client a member, as its user with info, until until; each poll
// pushes that forward, so a client that keeps polling stays one member and
// one that stops is removed once until passes. joined reports that connID
// was not a member before: the poll answers at once, so the client learns
// the members without waiting for an event. Package presence implements it
// (Registry.ForPolls).
type PresencePoll func(ctx context.Context, tenantID tenant.ID, subject, channel, connID string, info json.RawMessage, until time.Time) (members json.RawMessage, joined bool, err error)

// IsPresence reports a presence channel: its subscribers are its members.
func IsPresence(channel string) bool { return strings.HasPrefix(channel, "presence-") }

// joinPresence makes the stream a member of its presence channels, before
// its first frame. On a refusal it leaves the ones it joined.
func (st *sseStream) joinPresence(ctx context.Context, join PresenceJoin, s subscription) error {
	if join == nil {
		return nil
	}
	for _, ch := range s.channels {
		if !IsPresence(ch) {
			continue
		}
		leave, err := join(ctx, st.conn, ch, s.sub.Info, st.presenceUpdate)
		if err != nil {
			st.leavePresence()
			return err
		}
		st.leaves = append(st.leaves, leave)
	}
	return nil
}

// presenceUpdate queues a presence message for the stream, as an event
// without an id: presence is not in the event sequence.
func (st *sseStream) presenceUpdate(op string, data []byte) {
	st.presenceMu.Lock()
	st.presenceOut = append(st.presenceOut, systemFrame(op, "", json.RawMessage(data)))
	st.presenceQueued.Store(true)
	st.presenceMu.Unlock()
	st.poke()
}

// takePresence returns, and clears, the presence messages queued. Every
// step asks, so the common answer (none) takes no lock.
func (st *sseStream) takePresence() [][]byte {
	if !st.presenceQueued.Load() {
		return nil
	}
	st.presenceMu.Lock()
	st.presenceQueued.Store(false)
	defer st.presenceMu.Unlock()
	out := st.presenceOut
	st.presenceOut = nil
	return out
}

// leavePresence ends the stream's memberships.
func (st *sseStream) leavePresence() {
	if len(st.leaves) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	for _, leave := range st.leaves {
		if err := leave(ctx); err != nil {
			st.log.Warn("realtime: a stream could not leave a presence channel; the row goes when its instance's are swept", "err", err)
		}
	}
	st.leaves = nil
}
