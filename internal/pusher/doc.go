// Package pusher is hybridrt's door for the Pusher Channels protocol
// (version 7): pusher-js, Laravel Echo, Pusher's mobile SDKs and its server
// libraries work against hybridrt with only their host changed. It is an
// adapter over the realtime core: it stores and fans out every event through
// the same Publisher, Hub and Registry as SSE and long-polling, so one
// namespace and one sequence of ids serve every door.
//
// # Data flow
//
//	pusher-js ──WS /app/{key}──► Door.ServeHTTP: upgrade, key → tenant (a signing key's kid)
//	                              ├─ the hub's poller: the client sent something ─► a goroutine reads
//	                              │  one message (wsconn.Conn: never past its end), then re-arms:
//	                              │      pusher:subscribe ─► auth signature / publicChannels
//	                              │      presence-: presence.Registry.Join + Watch ─► members
//	                              │      cache-:    Store.Last ─► the last event, or pusher:cache_miss
//	                              │      client-…:  Publisher.Publish(Origin = socket id, Sender = user)
//	                              └─ write, started by a poke, the only writer of the socket:
//	                                     replies and member changes queued by read and presence
//	                                     Hub subscription ─► Subscription.After(cursor) ─► events of its
//	                                     channels, skipping its own (Origin), framed once per event
//	                                     (Memo), a batch in one writev
//
//	server library ──POST /apps/{appId}/events…──► API: signature (sign.go) ─► Publisher.Publish
//	               ──GET  /apps/{appId}/channels…──► Registry.ChannelCounts, presence.Registry
//	               ──POST …/users/{id}/terminate_connections──► pg_notify(hybridrt_pusher) ─► every
//	                                     instance's Door closes that user's signed-in sockets (4009)
//
// # Mapping
//
// The Pusher app id is the tenant id, the key a signing key's kid and the
// secret its secret (DESIGN, "WebSocket: the Pusher Channels protocol"). A
// Pusher message's data is a string: FromPusher and ToPusher (data.go) are
// the one mapping between it and hybridrt's JSON data. Events carry their id
// as an extra field. Channel names with ':' (hybridrt's user:<id>) are never
// reachable here; names without a private-/presence- prefix only when the
// tenant lists them in publicChannels.
//
// # Connections
//
// An idle connection holds no goroutine: the hub's poller (package
// netpoll) says when the client sends something, and write runs only
// while there is something to send, on the realtime core's writers (one
// per core) like an SSE stream's step, leaving them (Runner.Blocking) only
// to wait for a full socket or a read from the store. What it holds is its socket, gorilla's
// 256-byte read buffer and a few small structs (docs/benchmarks.md).
// gorilla/websocket upgrades and reads; the door encodes the frames it
// sends itself (frames.go), once per event for every connection, so that a
// batch leaves in one writev.
//
// Socket ids are <prefix>.<n> with a prefix per instance from a database
// sequence, so they are unique across instances. Every connection has a
// read limit (Config.MaxMessage), an activity check in the door's sweep
// (a client silent for the activity timeout is pinged, and dropped with
// 4201 when the pong timeout passes too), a
// write deadline per batch (a slow consumer is cut off), a subscribe rate
// and a channel count. Refusals close with the protocol's codes (see
// protocol.go); the connection limit answers 4100, which pusher-js retries,
// rather than Pusher's 4004, after which it never would.
package pusher
