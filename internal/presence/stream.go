package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// ForStreams is presence for the realtime core's SSE streams: a stream of
// a presence channel joins it as its token's user, with the token's info
// claim, and is told the members, then every change after them.
func (p *Registry) ForStreams() realtime.PresenceJoin {
	return func(ctx context.Context, c *realtime.Conn, channel string, info json.RawMessage, update func(string, []byte)) (func(context.Context) error, error) {
		m := Member{UserID: c.Subject, Info: info}
		if err := CheckMember(m); err != nil {
			return nil, web.NewProblem(http.StatusBadRequest, "invalid_member", err.Error())
		}
		version, err := p.Join(ctx, c.TenantID, channel, c.ID, m)
		if errors.Is(err, ErrFull) {
			return nil, web.NewProblem(http.StatusForbidden, "presence_full",
				fmt.Sprintf("the presence channel %q has the most members it may have (%d)", channel, p.MaxMembers))
		}
		if err != nil {
			return nil, web.Unavailable(err)
		}
		send := func(op string, v any) {
			b, _ := json.Marshal(v)
			update(op, b)
		}
		// Changes that come before the members are told after them.
		var (
			mu      sync.Mutex
			ready   bool
			pending []Change
		)
		tell := func(ch Change) {
			if ch.Added {
				send("member_added", map[string]any{"channel": channel, "member": ch.Member})
			} else {
				send("member_removed", map[string]any{"channel": channel, "member": Member{UserID: ch.Member.UserID}})
			}
		}
		members, w, err := p.Watch(ctx, c.TenantID, channel, version, func(ch Change) {
			mu.Lock()
			defer mu.Unlock()
			if !ready {
				pending = append(pending, ch)
				return
			}
			tell(ch)
		})
		if err != nil {
			_ = p.Leave(context.WithoutCancel(ctx), c.TenantID, channel, c.ID)
			return nil, web.Unavailable(err)
		}
		if members == nil {
			members = []Member{}
		}
		mu.Lock()
		send("presence", map[string]any{"channel": channel, "members": members})
		for _, ch := range pending {
			tell(ch)
		}
		ready, pending = true, nil
		mu.Unlock()
		return func(ctx context.Context) error {
			w.Stop()
			return p.Leave(ctx, c.TenantID, channel, c.ID)
		}, nil
	}
}

// ForPolls is presence for the realtime core's long-polls: a poller that
// gives its own id is a member until its time passes (Registry.JoinUntil),
// and every poll gets the members.
func (p *Registry) ForPolls() realtime.PresencePoll {
	return func(ctx context.Context, tenantID tenant.ID, subject, channel, connID string, info json.RawMessage, until time.Time) (json.RawMessage, bool, error) {
		var joined bool
		if connID != "" {
			m := Member{UserID: subject, Info: info}
			if err := CheckMember(m); err != nil {
				return nil, false, web.NewProblem(http.StatusBadRequest, "invalid_member", err.Error())
			}
			var err error
			joined, err = p.JoinUntil(ctx, tenantID, channel, connID, m, until)
			if errors.Is(err, ErrFull) {
				return nil, false, web.NewProblem(http.StatusForbidden, "presence_full",
					fmt.Sprintf("the presence channel %q has the most members it may have (%d)", channel, p.MaxMembers))
			}
			if err != nil {
				return nil, false, web.Unavailable(err)
			}
		}
		members, err := p.Members(ctx, tenantID, channel)
		if err != nil {
			return nil, false, web.Unavailable(err)
		}
		b, err := json.Marshal(members)
		return b, joined, err
	}
}
