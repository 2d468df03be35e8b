// Package limit enforces limits that hold for a tenant (or an API key) as a
// whole, whatever the number of instances: connections per tenant, publish
// requests per second per tenant and per API key.
//
// # Data flow
//
//	request ─► Shared.Allow(scope, perSecond) / Acquire(scope, max)
//	             local decision, no query: this instance's share of the limit
//	every second (Run):
//	  this instance ─► limit_usage: per scope, connections held, attempts/s
//	  limit_usage (other live instances, by heartbeat) ─► Σ held, Σ attempts/s, N
//	  ─► new share of every scope
//
// Each instance enforces a share of each limit, and the shares of all live
// instances add up to the limit. Shares follow demand: an instance is given
// what it was asked for in the last second, plus an equal part of what
// nobody asked for; when the instances together ask for more than the
// limit, each gets a part in proportion to what it was asked. Demand counts
// attempts, refused ones included, so an instance whose clients are being
// refused asks for more at the next sync. Traffic that moves from one
// instance to another (a client's keep-alive connection behind a layer-4
// balancer, a reconnect storm after an instance dies) is therefore followed
// within a second or two, instead of leaving each instance a fixed 1/N that
// a sticky client can never use.
//
// For connections, what is shared is the headroom: the limit less every
// instance's connections at the last sync. An instance admits while its own
// count is under what it held at the sync plus its share of the headroom,
// so connections admitted between syncs on all instances together stay
// within the limit. Shares of whole connections are rounded at random,
// unbiased, so small limits shared by many instances are not rounded away.
//
// # Why not counters in PostgreSQL, or a fixed 1/N
//
// A counter row per tenant updated by every publish would add a round trip
// and a row lock to a path that commits thousands of requests a second; a
// connection counter would leak when an instance dies holding connections.
// A fixed share of 1/N is simple but wrong whenever traffic is uneven: one
// publisher with one keep-alive connection would get 1/N of its rate. Here
// the hot path costs a mutex and a token bucket, as a per-instance limiter
// did, and the database sees one small write and one read per instance per
// second.
//
// # Accuracy and failure
//
// Once traffic is steady the admitted total is within a few percent of the
// limit (TestSharedRates, TestSharedConnections, and the two-instance tests
// in cmd/api). In the first second after traffic moves, the admitted total
// is lower, never higher, than the limit, except for connections when a
// limit is lowered below what is already held: nothing is cut, new ones are
// refused until the count falls under. An instance that dies holds its
// share until its heartbeat is stale (20 s); its rows then stop counting.
// While the database is unreachable each instance keeps its last shares.
package limit
