// Package realtime publishes events durably and delivers them to subscribers
// over Server-Sent Events and long-polling, on any number of instances that
// share one PostgreSQL.
//
// # Data flow
//
//	POST /v1/events ─► Publisher ─► one pipelined batch per group, one round trip:
//	                                  UPDATE tenants SET event_seq = event_seq + n   (ids, row lock)
//	                                  INSERT INTO events … (unnest; ids from the row) RETURNING created_at
//	                                  SELECT pg_notify('hybridrt_events', 'tenant:first:last')
//	                                  Sync: the implicit transaction commits ─► 201 {"ids":[…]}
//	                          └─► this instance's hub, at once (Hub.offer), when the ids follow its ring
//	PostgreSQL ─NOTIFY─► every instance's listener (one dedicated connection)
//	             ─► reads the rows once (id > room.last) into the tenant's ring
//	                (nothing, on the publishing instance, when offer took them)
//	             ─► wakes the subscriptions whose channels they touch (at most every wakeGap)
//	SSE stream / long-poll ─► Subscription.After(cursor): ring, else store ─► client
//
// The events table is the truth; NOTIFY is only a wake-up. A notification
// names ids, never data, so it stays far under PostgreSQL's 8000-byte limit
// whatever the events' size, and the listener reads each new event once per
// instance. Streams hold a cursor, not a queue: one event costs one read per
// instance and one wake-up per interested subscriber, never a read per
// subscriber. A stream whose cursor is older than the ring reads the store.
//
// Publishing uses group commit. Every transaction that NOTIFYs takes a
// database-wide lock at commit, so PostgreSQL commits them one at a time.
// The Publisher therefore commits the requests that queue up while one
// transaction is in flight together in the next: one id range per tenant,
// one INSERT, one NOTIFY per tenant. An idle publisher commits a lone
// request at once, adding no wait. The group's statements go in one
// pipeline with one Sync, which PostgreSQL runs as one implicit
// transaction: the tenant rows stay locked for the statements and the
// commit, never for a round trip to us. (A group with idempotency keys
// reads its claims first, in an explicit transaction, then sends the same
// batch.) Folding the group into one self-committing statement was tried
// and measured slower (docs/benchmarks.md); a second group in flight while
// the first commits was tried too, and gained nothing on two cores.
//
// The publishing instance hands what it committed to its own hub before
// answering, so its subscribers do not wait for the notification to come
// back and for the read after it. The hub takes them only when their ids
// follow what its ring holds; when another instance's events came in
// between, the listener reads them all, in order, as it would anyway.
//
// # Streams
//
// Over HTTP/1.1 an SSE handler takes the TCP connection over (hijacks it)
// and returns. From then on a stream holds no goroutine while it is idle: it
// is a state machine (a Runner) that runs only when something pokes it: the
// hub's wake-up, its heartbeat or expiry timer, its tenant's suspension, or
// the hub's poller (package netpoll), which watches every stream's socket
// from one goroutine and says when a client leaves. The Pusher door's
// sockets work the same way. A poked stream's step runs on one of a few
// writers, one per core, that take poked streams in turn; a write to a
// socket that cannot take it now, or a read from the store, moves the step
// off the writers (Runner.Blocking) to wait on a goroutine of its own, and
// a new writer takes its place, so one slow client never holds the others
// up. Where the
// connection cannot be taken (HTTP/2, a middleware that hides it) the
// stream runs in the handler through the ResponseWriter, doing the same
// steps when poked.
//
// What an idle stream holds: its socket (the kernel's buffers are not the
// process's memory), its Subscription, its registry entry (Conn), the
// sseStream with two runtime timers, and one epoll registration. No
// goroutine, no stack, no read or write buffer: about 8 KiB of the
// process's memory at 10,000 streams, against 29 KiB for the floor hub,
// which is net/http and one goroutine per stream (docs/benchmarks.md).
//
// What one event costs: per instance, one INSERT row, one notification and
// (on every instance but the publishing one) one read of the row; one SSE
// frame encoded once and shared (the Pusher door frames it once too). Per
// subscriber whose channels it touches: a wake-up (a place in the writers'
// queue, not a goroutine), a scan of the ring from its cursor under a read
// lock, and its share of one writev, tried without waiting. Writes are
// most of it: a write to a socket costs microseconds of system call
// whatever it carries, so under heavy publishing a room wakes its
// subscribers at most every wakeGap, 0.1 ms per subscriber up to 10 ms (a
// room of 100 waits up to 10 ms, a room of 5 half a millisecond), and each
// stream sends what came meanwhile in one chunk: the room's writes then
// cost at most about a tenth of a core. The first event after a quiet spell
// goes at once.
//
// # Ordering and loss
//
// An event's id is its tenant's sequence number, taken by updating the
// tenant's row, whose lock is held until commit. So a tenant's ids commit in
// order with no gaps: once id N is visible, every id below it is too, and a
// reader asking for "id > cursor" never skips an event that commits late.
// (A bigserial would not do: its values are handed out before commit and
// become visible out of order.) The cost is that one tenant's publishes
// serialise on its row; group commit is what keeps that from limiting
// throughput. Groups lock tenants in ascending id order, so concurrent
// groups on several instances cannot deadlock.
//
// A 201 is sent only after COMMIT returns. A failed transaction stores
// nothing and every request in it gets a 503 it may retry (with an
// Idempotency-Key, safely). One request's idempotency replay or mismatch is
// decided per request inside the group and never fails the others.
//
// Notifications can be lost: the LISTEN connection drops, PostgreSQL
// restarts. They carry no data, so losing one loses nothing: after every
// (re)connect the listener reads each room from its last id up to the
// tenant's head and wakes every stream, and it always reads from the room's
// last id rather than the notification's first, so a gap fills itself.
// Streams also re-read on every heartbeat.
//
// A subscriber that cannot keep up is never waited for. A wake-up never
// blocks: it sets a flag, and starts the stream's run unless one is going
// (which then sees the flag); a stream whose writes
// stall past WriteTimeout is cut off, and its client resumes from its last
// id (Last-Event-ID), reading what it missed from the store. A cursor older
// than retention gets `event: resync` and continues from the oldest event
// still stored.
package realtime
