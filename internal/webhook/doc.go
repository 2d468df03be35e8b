// Package webhook sends a tenant's webhooks to its backend, in Pusher's
// shape and with Pusher's signature, so that Pusher webhook handlers work
// unchanged (DESIGN.md, "Webhooks").
//
// # Data flow
//
//	presence join/leave ──► presence.Registry.Changed = MemberChanged ──┐ member_added,
//	                          (in the join's or leave's transaction)     │ member_removed
//	client event ─────────► Draft.Webhook = ClientEvent ────────────────┤ client_event
//	                          (stored by the publisher with the event)   │
//	connections table ────► Occupancy.Decide, one instance at a time ───┤ channel_occupied,
//	(every instance's,        (advisory lock; with webhook_channels,     │ channel_vacated
//	 written each second)      grace period for vacated)                 │
//	Pusher cache- miss ───► CacheMiss (no change to commit with) ───────┤ cache_miss
//	                                                                     ▼
//	        webhook_outbox rows, only of the events the tenant takes (tenant.WebhookWantsSQL);
//	        a trigger makes the tenant's webhook_queues row due in 1 s
//	                                   │
//	                                   ▼
//	Worker, on every instance: leases a due tenant queue (FOR UPDATE SKIP
//	LOCKED; one worker a queue at a time), reads its first 100 events
//	                                   │
//	                                   ▼
//	Sender.Post: POST {"time_ms":…,"events":[…]}, X-Pusher-Key, X-Pusher-Signature;
//	every connection's address checked; no proxy, no redirects, a timeout,
//	the answer's body read to 64 KiB and discarded
//	                                   │
//	        2xx: delivered, the rows deleted ─ else: the queue waits out a
//	        backoff (5 s doubling to 1 h, jittered), for 25 h, then the
//	        batch is parked for the console's "retry now"
//
// Every attempt is recorded in webhook_deliveries for the console. Order is
// per tenant: a tenant's batches go one at a time, in outbox id order, so
// a failing endpoint holds up only its own tenant.
//
// # Where a webhook may go
//
// A tenant chooses the URL, so without care a webhook is a request the
// service makes on an attacker's behalf (SSRF): to the cloud metadata
// service that hands out credentials, to the database, to a neighbour.
// CheckURL refuses what is wrong in the URL itself: not https, user info,
// a fragment, an internal IP address written in it. Sender.Check resolves
// the host when the URL is set, for an early and clear error.
//
// Neither is what keeps webhooks in: a name may resolve to a public
// address when checked and to 127.0.0.1 a second later (DNS rebinding).
// So the Sender checks the address of every connection in the dialer's
// Control function, after resolution and just before connect(2): the
// address checked is the address connected to. It refuses loopback,
// private, link-local, carrier-grade NAT, multicast, broadcast, reserved
// and metadata addresses, in IPv4, IPv6 and IPv4-mapped IPv6 forms,
// unless the operator sets WEBHOOK_ALLOW_PRIVATE=true for development.
// For the same reason it uses no proxy and follows no redirect.
//
// Errors are written to be shown to the tenant. None carries a secret:
// not the signing secret, which never leaves the caller except as a
// signature, nor the URL's path or query, where a tenant may keep one.
package webhook
