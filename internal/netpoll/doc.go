// Package netpoll tells when idle connections have something to read, with
// one goroutine for all of them rather than one blocked in Read on each.
//
// A stream that only sends (SSE) or mostly sends (a WebSocket) would
// otherwise keep a goroutine parked in Read for its whole life only to
// learn that the client left or said something: a stack of at least a few
// KiB per connection, most of what an idle connection costs.
//
// # Data flow
//
//	Watch(conn, ready), Arm() ─► epoll_ctl(ADD, EPOLLIN|EPOLLRDHUP|EPOLLONESHOT)
//	kernel: bytes, FIN or RST arrive ─► the poller's goroutine (epoll_wait)
//	        ─► ready()            (must not block: it starts a goroutine)
//	the owner reads what is there ─► Arm()  (one-shot: no second ready
//	                                          until the owner asks)
//	Stop() ─► epoll_ctl(DEL); no ready runs after it returns ─► conn.Close()
//
// The poller's epoll set is its own: Go's runtime keeps the descriptor in
// its netpoller too, so the connection's deadlines and blocking reads and
// writes work as usual. Reads and writes still go through net.Conn; the
// poller only says when a read will not wait.
//
// Only TCP connections on Linux can be watched; anywhere else Watch returns
// ErrUnsupported and the caller reads in a goroutine of its own, as it
// would without this package.
package netpoll
