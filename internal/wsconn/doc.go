// Package wsconn is the WebSocket plumbing both WebSocket doors share
// (internal/pusher, the Pusher protocol, and internal/hybridws, hybridrt's
// own): frames a door encodes once and sends to every connection, a
// connection that gorilla/websocket reads no further than one frame, a
// writer of frame batches in one writev, and Socket, a connection that
// holds no goroutine while idle.
//
// # Data flow
//
//	upgrade (Hijacker: gorilla gets a Conn) ─► door's conn embeds a Socket: Init(ws, step)
//	Serve ─► the hub's poller watches the socket ─► readable: one goroutine reads one
//	         message (Conn stops at its end), calls the door's ReadOne, re-arms
//	door: something to send ─► Poke ─► the core's writers run the door's step ─► Send:
//	         Writer, one writev of shared frames, within the write timeout
//	step ends the connection ─► SendClose, Shutdown (socket closed, reads waited for)
//	Sweep: one ticker per door for every connection's pings, expiry and key checks
package wsconn
