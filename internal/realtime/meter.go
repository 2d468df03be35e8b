package realtime

import "github.com/hybridrt/hybridrt/internal/tenant"

// Meter counts a tenant's usage: what it published, by door, and what was
// delivered to its subscribers (internal/usage keeps it over time). The
// calls are on the publish and delivery paths, so they must not block.
type Meter interface {
	Published(t tenant.ID, door string, n int)
	Delivered(t tenant.ID, n, bytes int)
	Rejected(t tenant.ID, reason string)
}

// rejectionReasons maps the problem codes of refusals by a limit to the
// reasons usage counts them under.
var rejectionReasons = map[string]string{
	"tenant_rate_limited":       "rate",
	"rate_limited":              "rate",
	"client_event_rate_limited": "client_event_rate",
	"event_too_large":           "event_size",
	"batch_too_large":           "batch_size",
	"body_too_large":            "body_size",
	"too_many_channels":         "channels",
	"too_many_connections":      "connections",
}

// RejectionReason returns the usage reason of a refusal with problem code
// code, if it is a refusal by a limit.
func RejectionReason(code string) (string, bool) {
	r, ok := rejectionReasons[code]
	return r, ok
}

// Rejected counts a refusal of t's by a limit (a problem code) that a door
// answers other than through web.Fail: a WebSocket's error frame.
func (h *Hub) Rejected(t tenant.ID, code string) {
	if reason, ok := RejectionReason(code); ok && h.Meter != nil {
		h.Meter.Rejected(t, reason)
	}
}

// Doors that publish, as Draft.Door names them.
const (
	DoorAPI    = "api"    // hybridrt's HTTP API and the console ("" counts as this)
	DoorPusher = "pusher" // Pusher's HTTP API
	DoorClient = "client" // client events, on every transport
)

// FramesLen is the bytes of frames, for ObserveDelivery.
func FramesLen(frames [][]byte) int {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	return n
}
