// Package limit enforces limits that hold for a tenant (or an API key) as a
// whole, whatever the number of instances: connections per tenant, publish
// requests per second per tenant and per API key.
//
// # Data flow
//
//	request ─► Shared.Allow(scope, perSecond) / Acquire(ctx, scope, max)
//	             a local decision: this instance's reserved share, no query
//	             (but for the first connection of a scope this instance holds none of)
//	every second (Run ─► Sync), in one transaction under a cluster-wide advisory lock:
//	  limit_usage of the other live instances (by heartbeat) ─► Σ held, Σ asked, Σ reserved
//	  this instance's new reservation of every scope it knows ─► limit_usage
//
// Each instance reserves a share of each limit and admits against it alone.
// Reservations follow demand: an instance targets what it was asked for in
// the last second plus an equal part of what nobody asked for, or, when the
// instances together ask for more than the limit, a part in proportion to
// what it was asked. Demand counts attempts, refused ones included, so an
// instance whose clients are refused asks for more at its next sync. A
// sticky client (a publisher's keep-alive connection behind a layer-4
// balancer, a reconnect storm onto one instance) therefore still gets the
// whole limit within a second or two, where a fixed 1/N per instance would
// give it 1/N for ever.
//
// # Why the totals stay within the limit
//
// A reservation is never more than the limit less the other instances'
// current reservations, and every sync reads them and writes its own under
// one advisory lock, so two instances never reserve the same room. What a
// sync writes is brought up to date under that lock: the connections
// admitted since its snapshot are reported and reserved, and a first
// reservation being made meanwhile is kept, not deleted as forgotten
// (TestSettleHolds, TestSyncKeepsAFirstReservation). An
// instance that shrinks frees room for the others at their next sync, which
// is why, in the second or two after traffic moves, fewer requests than the
// limit are admitted, never more. Rates are token buckets at the reserved
// rate with a second's worth of burst (as a single instance's limiter had).
// Connections are shared as headroom: what every instance holds is counted,
// and an instance admits while it holds fewer than its reservation, a whole
// number rounded at random without bias so that small limits spread over
// many instances are still reached. The first connection of a scope an
// instance holds none of reserves in the database under the same lock
// (waiting at most 2 s, else reserving from what the last sync said); a
// first request of a rate scope reserves from the last sync alone, an equal
// part of what is unreserved.
//
// # Why not counters in PostgreSQL, or a fixed 1/N
//
// A counter row per tenant updated by every publish would add a round trip
// and a row lock to a path that commits thousands of requests a second; a
// connection counter would leak when an instance dies holding connections.
// A fixed share of 1/N is simple but wrong whenever traffic is uneven. Here
// the hot path costs a mutex and a token bucket, as the per-instance
// limiter did (BenchmarkAllow: 1.2× its cost, some 17 ns), and the database
// sees one small transaction per instance per second (BenchmarkSync: 15 ms
// with 1,500 scopes, under the lock every instance's sync takes, which is
// what bounds how many instances can share limits; docs/scaling.md).
//
// # Accuracy and failure
//
// Once traffic is steady the admitted total is within a few percent of the
// limit (TestSharedRates, TestSharedConnections; TestLimitsAcrossInstances
// through two real instances). A limit lowered below what is held cuts
// nothing: new connections are refused until the count falls under it
// (TestSharedConnectionsLimitLowered). An instance that stops syncing
// (killed, or cut off from the database) keeps its reservations until its
// last report is 5 s old (staleUsage); they then stop counting for the
// others, so its clients reconnecting elsewhere are not refused for its
// places (TestPusherReconnectStorm: 5,000 clients back within about 5 s).
// Its rows go with its instances row. While the database is unreachable
// each instance keeps its last reservations, and the others stop counting
// them: the total may then exceed the limit by that instance's share. Per-address
// budgets (web.AddrLimiter) are not shared: they are brakes, per instance.
package limit
