package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
	"github.com/hybridrt/hybridrt/views"
)

// Presence is what the console reads of presence channels, on every
// instance (*presence.Registry).
type Presence interface {
	Members(ctx context.Context, tenantID tenant.ID, channel string) ([]presence.Member, error)
	UserCounts(ctx context.Context, tenantID tenant.ID, prefix string) (map[string]int, error)
}

// maxPresenceRows bounds the presence channels the Pusher page lists; the
// others are looked up by name.
const maxPresenceRows = 100

// HandlePresenceChannels serves GET /console/pusher/presence, the fragment
// of the Pusher page that lists the presence channels with members, polled
// every 5 s.
func (c *Console) HandlePresenceChannels(w http.ResponseWriter, r *http.Request) {
	l, err := c.presenceChannels(r.Context(), tenant.FromContext(r.Context()))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, views.PresenceChannelsTable(l))
}

// HandlePresenceMembers serves GET /console/pusher/presence/members?channel=,
// the fragment with one presence channel's members, polled every 5 s.
func (c *Console) HandlePresenceMembers(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSpace(r.URL.Query().Get("channel"))
	if problem := presenceChannelProblem(name); problem != "" {
		web.Error(w, http.StatusBadRequest, "invalid_channel", problem)
		return
	}
	m, err := c.presenceMembers(r.Context(), tenant.FromContext(r.Context()), name)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, views.PresenceMembersTable(m))
}

// presence builds the Pusher page's presence section. A ?channel= in the
// request looks that channel up (the look-up form and the channel links
// are GETs of the page): its members, or the name's error under the field.
func (c *Console) presence(r *http.Request) (views.Presence, error) {
	tid := tenant.FromContext(r.Context())
	l, err := c.presenceChannels(r.Context(), tid)
	if err != nil {
		return views.Presence{}, err
	}
	q := r.URL.Query()
	x := views.Presence{Channels: l, Lookup: form("channel", strings.TrimSpace(q.Get("channel")))}
	if !q.Has("channel") {
		return x, nil
	}
	name := x.Lookup.Get("channel")
	if problem := presenceChannelProblem(name); problem != "" {
		x.Lookup.Errors["channel"] = problem
		return x, nil
	}
	m, err := c.presenceMembers(r.Context(), tid, name)
	if err != nil {
		return views.Presence{}, err
	}
	x.Members = &m
	return x, nil
}

// presenceChannelProblem says why name is not a presence channel's name,
// in words for the form, or returns "".
func presenceChannelProblem(name string) string {
	if name == "" {
		return "Type a presence channel's name, such as presence-room."
	}
	if err := channel.Valid(name); err != nil {
		return err.Error()
	}
	if !strings.HasPrefix(name, "presence-") {
		return "Only presence channels have members: their names start with presence-."
	}
	return ""
}

func (c *Console) presenceChannels(ctx context.Context, tid tenant.ID) (views.PresenceChannels, error) {
	counts, err := c.Presence.UserCounts(ctx, tid, "presence-")
	if err != nil {
		return views.PresenceChannels{}, err
	}
	// By name, so that rows keep their places from one refresh to the next.
	names := slices.Sorted(maps.Keys(counts))
	l := views.PresenceChannels{More: max(len(names)-maxPresenceRows, 0)}
	for _, name := range names[:min(len(names), maxPresenceRows)] {
		l.Rows = append(l.Rows, views.PresenceChannelRow{
			Name: name, Members: strconv.Itoa(counts[name]), Link: "/console/pusher?channel=" + url.QueryEscape(name),
		})
	}
	return l, nil
}

func (c *Console) presenceMembers(ctx context.Context, tid tenant.ID, name string) (views.PresenceMembers, error) {
	members, err := c.Presence.Members(ctx, tid, name)
	if err != nil {
		return views.PresenceMembers{}, err
	}
	m := views.PresenceMembers{Channel: name, Poll: "/console/pusher/presence/members?channel=" + url.QueryEscape(name)}
	m.Count = strconv.Itoa(len(members)) + " members"
	if len(members) == 1 {
		m.Count = "1 member"
	}
	for _, mb := range members {
		m.Rows = append(m.Rows, views.MemberRow{ID: mb.UserID, Info: compactJSON(mb.Info)})
	}
	return m, nil
}

// compactJSON is a member's info as one line of JSON text: as the client
// sent it (the column keeps its spacing), without the spaces.
func compactJSON(b json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return string(b) // no info, or (never stored) not JSON: as it is
	}
	return buf.String()
}
