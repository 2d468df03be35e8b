package views

// Presence is the Pusher page's presence section: the tenant's presence
// channels that have members, and the members of the one looked up.
type Presence struct {
	Channels PresenceChannels
	Lookup   Form             // the look-up form's "channel", with its error
	Members  *PresenceMembers // nil until a valid name is looked up
}

// PresenceChannels lists presence channels that have members, by name.
type PresenceChannels struct {
	Rows []PresenceChannelRow
	More int // channels with members left out of Rows
}

// PresenceChannelRow is one presence channel and its member count.
type PresenceChannelRow struct {
	Name, Members string
	Link          string // the Pusher page showing this channel's members
}

// PresenceMembers is one presence channel's members, refreshed from Poll.
type PresenceMembers struct {
	Channel, Count string
	Poll           string // the fragment with these members, fresh
	Rows           []MemberRow
}

// MemberRow is one member of a presence channel: its user id, and its
// info as compact JSON text (never HTML).
type MemberRow struct {
	ID, Info string
}
