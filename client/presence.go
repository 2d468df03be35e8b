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
// it last heard them, ordered by id, and whether it has heard them: over
// the WebSocket and SSE the subscription is a member itself; long-polling
// subscribers are not members and hear nothing.
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

// forgetPresence drops what the subscription knew of its presence
// channels, when it moves to polling, whose requests are no members.
func (s *Subscription) forgetPresence() {
	s.mu.Lock()
	s.members = nil
	s.mu.Unlock()
}
