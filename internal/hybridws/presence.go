package hybridws

import (
	"context"
	"errors"
	"fmt"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/presence"
)

// presenceSub is the connection's membership of one presence channel.
type presenceSub struct {
	watcher *presence.Watcher
	members []presence.Member // when it joined: sent after "subscribed"
	ready   bool              // the members were queued: changes may follow, under conn.mu
	pending []presence.Change // changes that came before
}

// join makes the connection a member of a presence channel as sub's user
// (its sub, and its info claim), and watches the channel from there. It
// returns the membership, or the error code and message that refuse it.
func (c *conn) join(ctx context.Context, sub auth.Subscriber, name string) (*presenceSub, string, string) {
	member := presence.Member{UserID: sub.Subject, Info: sub.Info}
	if err := presence.CheckMember(member); err != nil {
		return nil, "invalid_member", err.Error()
	}
	c.mu.Lock()
	tenantID, connID := c.info.TenantID, c.info.ID
	c.mu.Unlock()
	version, err := c.d.Presence.Join(ctx, tenantID, name, connID, member)
	if errors.Is(err, presence.ErrFull) {
		return nil, "presence_full", fmt.Sprintf("the presence channel %q has the most members it may have (%d)", name, c.d.Presence.MaxMembers)
	}
	if err != nil {
		return nil, "unavailable", "the service is unavailable; subscribe again"
	}
	ps := &presenceSub{}
	members, w, err := c.d.Presence.Watch(ctx, tenantID, name, version, func(ch presence.Change) { c.memberChanged(name, ps, ch) })
	if err != nil {
		_ = c.d.Presence.Leave(context.WithoutCancel(ctx), tenantID, name, connID)
		return nil, "unavailable", "the service is unavailable; subscribe again"
	}
	ps.watcher, ps.members = w, members
	return ps, "", ""
}

// leave ends a membership.
func (c *conn) leave(ctx context.Context, name string, ps *presenceSub) {
	ps.watcher.Stop()
	if err := c.d.Presence.Leave(ctx, c.info.TenantID, name, c.info.ID); err != nil {
		// The row stays until the instance's rows are swept, or a restart.
		c.d.Log.Warn("hybridws: leaving a presence channel failed", "channel", name, "err", err)
	}
}

// memberChanged queues a join or leave for the client, after the channel's
// members; it runs on the presence registry's goroutine and never blocks.
func (c *conn) memberChanged(name string, ps *presenceSub, ch presence.Change) {
	c.mu.Lock()
	if !ps.ready {
		ps.pending = append(ps.pending, ch)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.queue(memberFrame(name, ch))
}

// membersFrame is a presence channel's members, sent after "subscribed".
func membersFrame(name string, members []presence.Member) []byte {
	if members == nil {
		members = []presence.Member{}
	}
	return reply("presence", nil, map[string]any{"channel": name, "members": members})
}

// memberFrame is a join or a leave.
func memberFrame(name string, ch presence.Change) []byte {
	if ch.Added {
		return reply("member_added", nil, map[string]any{"channel": name, "member": ch.Member})
	}
	return reply("member_removed", nil, map[string]any{"channel": name, "member": presence.Member{UserID: ch.Member.UserID}})
}

// presenceFrames are the members of the presence channels a subscribe
// joined, then what changed since, marking them ready for what follows.
func (c *conn) presenceFrames(ch change) [][]byte {
	var frames [][]byte
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range ch.channels {
		ps, ok := ch.presence[name]
		if !ok {
			continue
		}
		frames = append(frames, membersFrame(name, ps.members))
		for _, p := range ps.pending {
			frames = append(frames, memberFrame(name, p))
		}
		ps.members, ps.pending, ps.ready = nil, nil, true
	}
	return frames
}
