// Package hybridws is hybridrt's own WebSocket door: the protocol
// hybridrt.v1 at /api/realtime/ws, for hybridrt's SDKs, with the delivery
// contract of SSE and long-polling (ids, resume from a cursor with nothing
// lost or repeated, resync past retention) and, over one connection,
// subscribing and unsubscribing without reconnecting, token renewal and
// client events. It is an adapter over the realtime core, like the Pusher
// door: the same Hub, Registry, Store and Publisher serve every door, so one
// namespace and one sequence of ids serve them all. docs/protocol.md is the
// protocol; this is how it is served.
//
// # Data flow
//
//	client ──WS /api/realtime/ws (subprotocol hybridrt.v1)──► Door.ServeHTTP
//	   ?ticket= ─► Tickets.Redeem before the upgrade, else {"op":"auth"} first (AuthTimeout)
//	   start: Registry.Add (the tenant's connection limit), cursor = the hub's or store's head,
//	          an empty Hub subscription ─► {"op":"ready","connectionId","cursor"}
//	   the hub's poller: the client sent something ─► a goroutine reads one message, then re-arms:
//	          subscribe ─► grants, channel limit, cursor vs the store's head and pruned mark
//	                       ─► a change queued for write
//	          unsubscribe ─► a change queued for write
//	          token ─► Verifier.Verify, same tenant and user ─► Registry.Renew
//	          publish ─► realtime.ClientEvents.Publish (Origin = this connection)
//	   write, started by a poke, the only writer of the socket (realtime.Runner):
//	          replies ─► events up to the cursor ─► each change: a subscribe from an
//	          older cursor replays its channels' events up to the cursor from the store,
//	          then "subscribed"; the channel counts from there ─► events after the cursor,
//	          skipping its own client events, framed once per event (Event.Memo), one writev
//
// # Why a change goes through write
//
// Delivery is write's alone: it holds the connection's cursor and the
// position from which each channel's events count. A subscribe applied
// anywhere else could let an event through twice (replayed, then live) or
// not at all. Applied by write between its deliveries, the replay ends
// exactly at the cursor the live events go on from.
//
// # Connections
//
// An idle connection holds no goroutine, as the Pusher door's do (see
// package pusher): its socket, gorilla's 256-byte read buffer and a few
// small structs. The door's one sweep (Run) closes connections that did
// not authenticate in time, pings silent ones (the client answers
// {"op":"pong"}; browsers cannot send WebSocket pings themselves), drops
// those that stay silent, and ends those whose token expired, whose key
// was revoked or whose tenant was suspended.
package hybridws
