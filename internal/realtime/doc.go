// Package realtime publishes events durably and delivers them to subscribers
// over Server-Sent Events and long-polling, on any number of instances that
// share one PostgreSQL.
//
// # Data flow
//
//	POST /v1/events ─► Publisher ─► one transaction per group:
//	                                  UPDATE tenants SET event_seq = event_seq + n   (ids, row lock)
//	                                  INSERT INTO events … (unnest)
//	                                  SELECT pg_notify('hybridrt_events', 'tenant:first:last')
//	                                  COMMIT ─► 201 {"ids":[…]}
//	PostgreSQL ─NOTIFY─► every instance's listener (one dedicated connection)
//	             ─► reads the rows once (id > room.last) into the tenant's ring
//	             ─► wakes the subscriptions whose channels they touch
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
// database-wide lock at commit, so PostgreSQL commits them one at a time
// (about 6,000/s on the dev machine). The Publisher therefore commits the
// requests that queue up while one transaction is in flight together in the
// next: one id range per tenant, one INSERT, one NOTIFY per tenant. An idle
// publisher commits a lone request at once, adding no wait. (Folding the
// transaction into one self-committing statement, one round trip instead of
// four, was tried and measured: 30% fewer events/s at 64 publishers, see
// docs/benchmarks.md.)
//
// # Streams
//
// Over HTTP/1.1 an SSE handler takes the TCP connection over (hijacks it)
// and returns, and a fresh goroutine streams: net/http would otherwise keep
// the request's buffers, headers and a deep stack for the stream's life,
// most of an idle stream's memory. Frames are encoded once per event and
// shared; a stream sends each batch as one HTTP chunk with a writev of
// references to them. A second small goroutine blocked in Read notices the
// client leaving. Where the connection cannot be taken (HTTP/2, a middleware
// that hides it) the stream runs in the handler through the ResponseWriter.
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
// A subscriber that cannot keep up is never waited for. Wake-ups are a
// channel of capacity one, sent without blocking; a stream whose writes
// stall past WriteTimeout is cut off, and its client resumes from its last
// id (Last-Event-ID), reading what it missed from the store. A cursor older
// than retention gets `event: resync` and continues from the oldest event
// still stored.
package realtime
