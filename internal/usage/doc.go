// Package usage counts what each tenant uses over time, for its console,
// for billing (GET /v1/usage) and for the operator (GET /v1/operator/usage).
//
// # Data flow
//
//	Publisher, after a commit ──► Meter.Published(tenant, door, n)   api, pusher, client
//	Hub.ObserveDelivery ────────► Meter.Delivered(tenant, n, bytes)  every door, every transport
//	web.Fail of a limit's 4xx ──► Meter.Rejected(tenant, reason)     via web.ObserveProblems
//	webhook.Worker ─────────────► Meter.Webhooks(tenant, sent, failed)
//	     │  in memory: a map of (tenant, minute) to atomic counters; nothing
//	     │  on the publish or delivery path waits for the database
//	     ▼  every 10 s (FlushEvery), and at a graceful stop
//	usage_minutes (+=, one transaction a flush; forgotten only once committed)
//	     ▲
//	     │  every 10 s, one instance at a time (advisory lock):
//	Meter.Sample: connections by transport on live instances ─► peak_* = greatest(…)
//	     │
//	     ▼  every minute, one instance at a time: Rollup
//	usage_days: the rows of the days with minutes left recomputed from them,
//	each column the greater of old and new (idempotent: a second roll-up, or
//	a restart, counts nothing twice; a day losing its first minutes keeps its counts);
//	minutes older than 48 h and days older than 400 are dropped
//	     │
//	     ▼
//	Read: by minute buckets, day or month; one tenant's, or the service's
//
// A restart never counts twice: a flush adds in one transaction and the
// meter forgets its counts only after the commit. What a killed instance
// had counted and not yet flushed, at most 10 s of it, is lost; usage errs
// low, never high.
package usage
