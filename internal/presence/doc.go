// Package presence keeps who is in each presence channel, shared by every
// instance and every door: a user with any number of connections, on any
// instances and transports, is one member until its last connection leaves.
// Doors (internal/pusher, internal/hybridws, and the core's SSE streams and
// long-polls through ForStreams and ForPolls) join and leave for their
// connections and watch a channel for its changes; the core never imports
// this package. A long-poller holds no connection: its row lives until an
// expires_at that each poll pushes forward (JoinUntil), and any instance
// sweeps it when that passes.
//
// # Data flow
//
//	door: subscribe ─► Join(tenant, channel, conn, member)
//	        one transaction, under the presence_channels row's lock:
//	          new user?  refuse past Registry.MaxMembers; INSERT presence_members (one row per connection)
//	          new user ─► version+1, pg_notify(hybridrt_presence, {t, c, v, added, user, info})
//	      ─► Watch(atLeast = that version) ─► the members, then every change after them
//	door: unsubscribe / close ─► Watcher.Stop, Leave ─► its user's last row gone? version+1, notify
//
//	PostgreSQL ─NOTIFY─► the instance's one LISTEN connection (realtime.Hub.AlsoListen)
//	           ─► Registry.Run applies changes to the view of each channel watched here,
//	              in version order, and calls every watcher of that view
//	version skipped, or listener reconnected ─► read the members again, tell watchers the difference
//	every 5 s, any instance ─► sweep rows of instances that stopped beating (20 s), and
//	                           long-pollers' rows past expires_at: removed, notified
//
// # Why a version
//
// Notifications can be lost (the listener reconnects) and arrive after the
// snapshot a new watcher read. Each change bumps the channel's version under
// its row lock, and carries it: an instance applies a change only on top of
// the version before it, ignores what it already has, and reads the members
// again when it sees a gap. A new watcher is given the members as the
// instance's view has them once the view reached the version of its own
// join, so it is told of exactly the changes after that, never its own.
//
// A crashed instance's members are gone within 25 s (its heartbeat is dead
// after 20 s, sweeps run every 5 s); DESIGN asks for 30 s
// (TestPresenceInstanceKilled).
package presence
