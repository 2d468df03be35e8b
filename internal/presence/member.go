package presence

import "encoding/json"

// Member is one user in a presence channel, however many connections it has
// there: the Pusher protocol's user_id and user_info, or a subscriber
// token's sub and info claim.
type Member struct {
	UserID string          `json:"id"`
	Info   json.RawMessage `json:"info,omitempty"`
}
