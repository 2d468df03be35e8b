package client

import (
	"encoding/json"
	"slices"
	"strings"
)

// Member is one user in a presence channel: its id (the token's sub) and
// the info its token carried.
type Member struct {
	ID   string          `json:"id"`
	Info json.RawMessage `json:"info,omitempty"`
}

// PresenceChange is a presence message: the members of a channel when
// the subscription joined it (Members, Kind "presence"), then each user who
// joined ("member_added") or whose last connection left ("member_removed").
type PresenceChange struct {
	Kind    string
	Channel string
	Members []Member // for "presence"
	Member  Member   // for a join or a leave
}

// Members returns the members of a presence channel of the subscription as
// it last heard them, ordered by id, and whether it has heard them. The
// subscription is a member itself, over every transport; over long-polling
// it hears the members with each poll's answer.
func (s *Subscription) Members(channel string) ([]Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.members[channel]
	if !ok {
		return nil, false
	}
	out := make([]Member, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out, true
}

// presence takes in a presence message (op, its JSON) from either stream,
// and tells OnPresence.
func (s *Subscription) presence(op string, raw []byte) {
	var m struct {
		Channel string   `json:"channel"`
		Members []Member `json:"members"`
		Member  Member   `json:"member"`
	}
	if json.Unmarshal(raw, &m) != nil || m.Channel == "" {
		return
	}
	s.mu.Lock()
	if s.members == nil {
		s.members = map[string]map[string]Member{}
	}
	switch op {
	case "presence": // a (re)join: the list replaces what a dropped stream left
		set := make(map[string]Member, len(m.Members))
		for _, x := range m.Members {
			set[x.ID] = x
		}
		s.members[m.Channel] = set
	case "member_added":
		if set := s.members[m.Channel]; set != nil {
			set[m.Member.ID] = m.Member
		}
	case "member_removed":
		delete(s.members[m.Channel], m.Member.ID)
	default:
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if s.opts.OnPresence != nil {
		s.opts.OnPresence(PresenceChange{Kind: op, Channel: m.Channel, Members: m.Members, Member: m.Member})
	}
}

// presenceSnapshot takes in the members a poll answered: the first time as
// the channel's members, after that as the joins and leaves since the last.
func (s *Subscription) presenceSnapshot(channel string, members []Member) {
	s.mu.Lock()
	before, known := s.members[channel]
	s.mu.Unlock()
	raw := func(v any) []byte { b, _ := json.Marshal(v); return b }
	if !known {
		s.presence("presence", raw(map[string]any{"channel": channel, "members": members}))
		return
	}
	now := make(map[string]bool, len(members))
	for _, m := range members {
		now[m.ID] = true
		if _, ok := before[m.ID]; !ok {
			s.presence("member_added", raw(map[string]any{"channel": channel, "member": m}))
		}
	}
	for id := range before {
		if !now[id] {
			s.presence("member_removed", raw(map[string]any{"channel": channel, "member": Member{ID: id}}))
		}
	}
}
