package realtime

import "github.com/hybridrt/hybridrt/internal/tenant"

// Meter counts a tenant's usage: what it published, by door, and what was
// delivered to its subscribers (internal/usage keeps it over time). The
// calls are on the publish and delivery paths, so they must not block.
type Meter interface {
	Published(t tenant.ID, door string, n int)
	Delivered(t tenant.ID, n, bytes int)
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
