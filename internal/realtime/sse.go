package realtime

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/netpoll"
	"github.com/hybridrt/hybridrt/internal/web"
)

// readBatch is how many events a stream reads at a time.
const readBatch = 500

// HandleSSE serves GET /api/realtime/sse: the tenant's events on the
// requested channels as a text/event-stream, replayed from the cursor
// (Last-Event-ID, or lastEventId= on a first connect) and then live.
//
// Over HTTP/1.1 the handler takes the TCP connection over (hijacks it) and
// returns. From then on the stream holds no goroutine while it is idle: the
// hub's wake-up, its timers and the poller (the client left) start one
// only while there is something to do (see sseStream). net/http would
// otherwise keep the request's buffers, its headers and a deep goroutine
// stack for the stream's life, and a second goroutine would sit in Read.
// Where the connection cannot be taken (HTTP/2, a middleware that hides
// it), the stream runs inside the handler through the ResponseWriter.
//
// A stream of a presence channel is one of its members (presence, which
// may be nil): it gets the members after ready, then every join and leave.
func HandleSSE(log *slog.Logger, hub *Hub, reg *Registry, verifier *auth.Verifier, limits *Limits, presence PresenceJoin) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		lim, err := limits.of(ctx, auth.SubscriberFrom(ctx).TenantID)
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		s, err := parseSubscription(ctx, r, hub.store, lim.stream, "lastEventId")
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		conn := newConn(r, s, "sse")
		if err := reg.Add(ctx, conn, s.sub.Expires, lim.maxConnections); err != nil {
			web.Fail(w, r, log, subscribeError(err))
			return
		}
		st := &sseStream{log: log, hub: hub, reg: reg, verifier: verifier, cfg: lim.stream, conn: conn,
			requestID: web.RequestID(ctx), cursor: s.cursor, start: time.Now()}
		st.runner.Step = st.run
		st.runner.Hold() // nothing runs before begin is done, though presence may poke
		if err := st.joinPresence(ctx, presence, s); err != nil {
			reg.Remove(conn)
			web.Fail(w, r, log, err)
			return
		}

		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream

		if nc, err := hijack(w, r); err == nil {
			// Not the write timeout alone: a client starved of CPU for a
			// few seconds (a reconnect storm) must not lose its stream.
			limitUnacked(nc, lim.stream.Heartbeat+lim.stream.WriteTimeout)
			hub.streams.Add(1)
			st.nc = nc
			st.out = &connSink{w: NewSocketWriter(nc), runner: &st.runner, timeout: lim.stream.WriteTimeout, head: responseHead(h)}
			st.runner.Hold() // nothing runs before begin is done
			if st.watch, err = hub.Watch(nc, st.readable); err == nil {
				err = st.watch.Arm()
			}
			if err != nil {
				if st.watch != nil {
					st.watch.Stop()
					st.watch = nil
				}
				go st.readUntilGone() // no poller here: wait in Read as streams used to
			}
			st.begin(s)
			st.runner.Release()
			return
		}

		rc := http.NewResponseController(w)
		if err := rc.Flush(); errors.Is(err, http.ErrNotSupported) {
			reg.Remove(conn)
			log.Error("realtime: the response writer cannot flush; SSE is impossible behind this middleware", "path", r.URL.Path)
			web.Error(w, http.StatusInternalServerError, "internal", "")
			return
		}
		// In the handler: the handler's goroutine does the stream's work
		// whenever it is poked, until the stream ends.
		st.wake = make(chan struct{}, 1)
		st.out = &responseSink{w: w, rc: rc, timeout: lim.stream.WriteTimeout}
		ctx = web.StreamContext(ctx)
		stop := context.AfterFunc(ctx, func() { st.leave(context.Cause(ctx)) })
		defer stop()
		st.begin(s)
		st.poke() // the first step sends the first frames
		for range st.wake {
			if reason := st.step(); reason != "" {
				st.finish(reason)
				return
			}
		}
	}
}

// hijack takes an HTTP/1.1 request's TCP connection over, with no deadline
// left on it. It fails with http.ErrNotSupported where that is impossible.
func hijack(w http.ResponseWriter, r *http.Request) (net.Conn, error) {
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return nil, http.ErrNotSupported
	}
	nc, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	// The server's read and header deadlines stay on a hijacked connection.
	// The buffered reader is dropped: a GET has no body, and an SSE client
	// sends nothing after its request.
	_ = nc.SetDeadline(time.Time{})
	return nc, nil
}

// responseHead is the status line and headers of a hijacked stream's response.
func responseHead(h http.Header) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	// Chunked, as net/http would send it: a connection that drops without
	// the last chunk is an error to the client, not the stream's normal end,
	// and the connection closes after it, being no longer the server's to reuse.
	h.Set("Transfer-Encoding", "chunked")
	h.Set("Connection", "close")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}

// Why a stream ended, for its log line, when the connection itself failed.
const (
	endClientGone  = "client gone"
	endWriteFailed = "write failed or timed out"
	endUnacked     = "client stopped acknowledging"
)

// sseStream is one subscriber's stream, from its first frame to its end.
//
// It is a goroutine only while it has work (see Runner): the hub pokes it
// for new events, its timers for a heartbeat or the token's expiry, the
// tenant's suspension, the poller when the client sends or leaves. At most
// one run goes at a time, so only it writes to the connection and reads
// the stream's own state below. An idle stream is its connection, its hub
// subscription, two timers and this struct.
type sseStream struct {
	log       *slog.Logger
	hub       *Hub
	reg       *Registry
	verifier  *auth.Verifier
	cfg       StreamConfig
	conn      *Conn
	requestID string
	start     time.Time

	sub   *Subscription
	out   sink
	nc    net.Conn       // the hijacked connection, or nil in the handler
	watch *netpoll.Watch // tells when the client on nc sends or leaves; nil without a poller
	wake  chan struct{}  // in the handler, where it runs instead of run

	runner    Runner      // runs step when poked (not in the handler: wake does)
	beat      atomic.Bool // a heartbeat is due
	expired   atomic.Bool // the token's expiry has passed
	suspended atomic.Bool // the tenant was suspended
	gone      atomic.Pointer[error]

	presenceMu     sync.Mutex
	presenceOut    [][]byte                      // presence messages for the client
	presenceQueued atomic.Bool                   // presenceOut is not empty
	leaves         []func(context.Context) error // its presence memberships; the run's own once it runs

	// The run's own.
	cursor      int64
	live        bool // past the first read: events are live, not replayed
	heartbeat   *time.Timer
	expiry      *time.Timer
	unsuspended func() bool
}

// begin writes the stream's first frames and subscribes it: from here on
// the hub, the timers and the tenant's suspension poke it. Its caller then
// lets it run: Runner.Release, or a first poke in the handler. (A hijacked
// stream's runner is held from before the poller may poke it.)
func (st *sseStream) begin(s subscription) {
	cfg, cursor := st.cfg, st.cursor
	st.out.write([]byte("retry: " + strconv.FormatInt(cfg.Retry.Milliseconds(), 10) + "\n\n"))
	if s.resync {
		st.out.write(systemFrame("resync", strconv.FormatInt(cursor, 10), map[string]string{
			"cursor": strconv.FormatInt(cursor, 10),
			"reason": "the requested position is older than the retention period; reload your state",
		}))
	}
	// ready carries the cursor as its id, so a reconnect before any event
	// resumes from here rather than from a later head.
	st.out.write(systemFrame("ready", strconv.FormatInt(cursor, 10), map[string]any{
		"connectionId": st.conn.ID,
		"cursor":       strconv.FormatInt(cursor, 10),
		"heartbeat":    int(cfg.Heartbeat.Seconds()),
	}))
	// The first read happens in the first run, after subscribing: an event
	// committed before it is read, one committed after it wakes the stream.
	st.sub = st.hub.SubscribeFunc(s.sub.TenantID, s.channels, st.poke)
	st.sub.BeforeBlock = st.runner.Blocking
	st.heartbeat = time.AfterFunc(cfg.Heartbeat, func() { st.beat.Store(true); st.poke() })
	st.expiry = time.AfterFunc(time.Until(st.conn.Expires()), func() { st.expired.Store(true); st.poke() })
	st.unsuspended = st.conn.OnTenantSuspended(func() { st.suspended.Store(true); st.poke() })
}

// poke tells the stream there may be something to do. It never blocks.
func (st *sseStream) poke() {
	if st.wake != nil {
		select {
		case st.wake <- struct{}{}:
		default:
		}
		return
	}
	st.runner.Poke()
}

// run is the stream's Runner.Step: its work, or its end.
func (st *sseStream) run() bool {
	if reason := st.step(); reason != "" {
		st.finish(reason)
		return false
	}
	return true
}

// readable is the poller's call: the client sent something or left. It
// reads in a goroutine of its own, which the poller's must not wait for.
func (st *sseStream) readable() { go st.readOnce() }

// readOnce reads what made the connection readable. An SSE client sends
// nothing after its request, so it is almost always the end: EOF or an
// error. Anything else is dropped, and the watch rearmed.
func (st *sseStream) readOnce() {
	var b [64]byte
	_ = st.nc.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := st.nc.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		st.leave(err)
		return
	}
	if err := st.watch.Arm(); err != nil {
		st.leave(err)
	}
}

// readUntilGone waits in Read for the client to leave, where no poller can.
func (st *sseStream) readUntilGone() {
	var b [64]byte
	for {
		if _, err := st.nc.Read(b[:]); err != nil {
			st.leave(err)
			return
		}
	}
}

// leave records that the client left (FIN, RST, or the kernel giving up
// on it), and pokes the stream to end.
func (st *sseStream) leave(cause error) {
	if cause == nil {
		cause = context.Canceled
	}
	st.gone.CompareAndSwap(nil, &cause)
	st.poke()
}

// step does what the stream has to do now, in order: end it, renew the
// token, send new events and a heartbeat. It returns why the stream ended,
// or "" while it goes on.
func (st *sseStream) step() string {
	if st.gone.Load() != nil {
		return endClientGone
	}
	select {
	case <-st.hub.Done():
		// Shutting down: ask clients to come back at staggered times,
		// so they do not all reconnect to the other instances at once.
		st.out.write([]byte("retry: " + strconv.Itoa(500+rand.IntN(4500)) + "\n\n"))
		_ = st.flush()
		return "shutdown"
	default:
	}
	if st.suspended.Load() {
		st.out.write(systemFrame("token_expired", "", map[string]string{"code": "tenant_suspended", "reason": "the tenant is suspended by the operator of this service"}))
		_ = st.flush()
		return "tenant suspended"
	}
	for _, f := range st.takePresence() {
		st.out.write(f) // flushed with the events, or at the end
	}
	if st.expired.Swap(false) {
		st.runner.Blocking()
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		exp := st.reg.refresh(ctx, st.conn)
		cancel()
		if time.Until(exp) <= 0 {
			st.out.write(systemFrame("token_expired", "", map[string]string{"reason": "the token expired; get a new one and resume from your last event id"}))
			_ = st.flush()
			return "token expired"
		}
		st.expiry.Reset(time.Until(exp)) // renewed in place
	}

	for {
		evs, scanned, err := st.sub.After(context.Background(), st.cursor, readBatch)
		if err != nil {
			return "store unavailable" // the client resumes with Last-Event-ID
		}
		sent, bytes := 0, 0
		for _, e := range evs {
			if e.Origin == st.conn.ID {
				continue // a client event this stream's client sent (POST /api/realtime/publish)
			}
			st.out.write(e.Frame)
			sent++
			bytes += len(e.Frame)
		}
		st.cursor = scanned
		if sent > 0 {
			if st.flush() != nil {
				return endWriteFailed
			}
			// The newest event's age: what the slowest of the batch waited.
			st.hub.ObserveDelivery(st.conn.TenantID, "sse", sent, bytes, evs[len(evs)-1].Time, st.live)
		}
		if len(evs) < readBatch {
			break
		}
	}
	st.live = true

	if st.beat.Swap(false) {
		st.runner.Blocking()
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		active := st.keyActive(ctx)
		cancel()
		if !active {
			st.out.write(systemFrame("token_expired", "", map[string]string{"reason": "the signing key was revoked"}))
			_ = st.flush()
			return "signing key revoked"
		}
		st.out.write([]byte(": ping\n\n"))
		st.heartbeat.Reset(st.cfg.Heartbeat)
	}
	if st.flush() != nil { // the first frames, or a heartbeat
		return endWriteFailed
	}
	return ""
}

// flush sends what is written, counting a client too slow to take it.
func (st *sseStream) flush() error {
	err := st.out.flush()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		slowConsumers.Inc()
	}
	return err
}

// finish ends the stream: its last frame when it ended on purpose, its
// timers and registrations, its connection, its log line.
func (st *sseStream) finish(reason string) {
	st.heartbeat.Stop()
	st.expiry.Stop()
	st.unsuspended()
	st.sub.Close()
	if len(st.leaves) > 0 {
		st.runner.Blocking() // leaving is a write to the database
		st.leavePresence()
	}
	st.reg.Remove(st.conn)
	if st.watch != nil {
		st.watch.Stop()
	}
	var cause error
	if p := st.gone.Load(); p != nil {
		cause = *p
	}
	if (reason == endClientGone || reason == endWriteFailed) && errors.Is(cause, syscall.ETIMEDOUT) {
		// The kernel gave up on a client that acknowledged nothing for the
		// TCP user timeout: as much a slow consumer as a blocked write.
		reason = endUnacked
		slowConsumers.Inc()
	}
	var sent int64
	if c, ok := st.out.(*connSink); ok {
		switch reason {
		case endClientGone, endUnacked, endWriteFailed: // the connection is dead
		default: // ended on purpose: close the body properly
			c.last()
		}
		sent = c.sent
		_ = st.nc.Close()
		defer st.hub.streams.Done()
	}
	st.log.LogAttrs(context.Background(), slog.LevelInfo, "stream ended",
		slog.String("request_id", st.requestID),
		slog.String("connection_id", st.conn.ID),
		slog.String("reason", reason),
		slog.Int64("bytes", sent),
		slog.Float64("duration_ms", float64(time.Since(st.start).Microseconds())/1000))
}

// keyActive reports whether the signing key of the stream's latest token is
// still active. A revoked key is checked once more after reading a renewal
// another instance may have written: a stream renewed with a newer key's
// token survives the old key (a rollover). An error (the database away)
// counts as active: the stream keeps going and asks again at the next
// heartbeat.
func (st *sseStream) keyActive(ctx context.Context) bool {
	ok, err := st.verifier.KeyActive(ctx, st.conn.Kid())
	if err != nil || ok {
		return true
	}
	kid := st.conn.Kid()
	st.reg.refresh(ctx, st.conn)
	if st.conn.Kid() == kid {
		return false
	}
	ok, err = st.verifier.KeyActive(ctx, st.conn.Kid())
	return err != nil || ok
}

// sink is where a stream's frames go. write queues a frame; flush sends
// what is queued. A client that stops reading stalls our writes; a flush is
// cut off after the write timeout instead of holding the stream forever.
type sink interface {
	write(frame []byte)
	flush() error
}

// connSink writes HTTP/1.1 chunks to a hijacked connection, one chunk per
// flush. Frames are shared by every stream and never change, so a chunk is
// sent with one writev of references to them, not copied; an idle stream
// holds no buffer at all.
type connSink struct {
	w       *SocketWriter
	runner  *Runner // whose step writes
	timeout time.Duration
	head    []byte      // the response's status line and headers, until the first flush
	batch   net.Buffers // batch[0] is reserved for the chunk's size line
	size    int
	sent    int64
	line    [20]byte  // the chunk's size line, when there is no head to send with it
	bufs    [4][]byte // batch's room for a chunk of up to two frames, with no allocation
}

func (c *connSink) write(frame []byte) {
	if len(c.batch) == 0 {
		c.batch = append(c.bufs[:0], nil)
	}
	c.batch = append(c.batch, frame)
	c.size += len(frame)
}

func (c *connSink) flush() error {
	if c.size == 0 {
		return nil
	}
	line := c.line[:0]
	if c.head != nil {
		line = append(make([]byte, 0, len(c.head)+20), c.head...)
	}
	line = strconv.AppendInt(line, int64(c.size), 16)
	line = append(line, "\r\n"...)
	c.batch[0] = line
	c.batch = append(c.batch, crlf)
	c.head = nil
	return c.send()
}

// last sends the terminating chunk: the stream ended on purpose.
func (c *connSink) last() {
	c.batch = net.Buffers{append(c.head, "0\r\n\r\n"...)}
	_ = c.send()
}

func (c *connSink) send() error {
	n, err := c.w.Write(c.runner, &c.batch, c.timeout) // consumes c.batch
	c.sent += n
	c.batch, c.size = nil, 0
	return err
}

var crlf = []byte("\r\n")

// responseSink writes through net/http's ResponseWriter.
type responseSink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	armed   bool  // the write deadline covers the batch being written
	err     error // the batch's first write error
}

func (s *responseSink) write(frame []byte) {
	if s.err != nil {
		return
	}
	if !s.armed {
		// net/http's buffers fill and write to the network before a flush,
		// so the deadline must cover the batch's writes, not only its flush.
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
		s.armed = true
	}
	_, s.err = s.w.Write(frame)
}

func (s *responseSink) flush() error {
	s.armed = false
	if err := s.err; err != nil {
		return err
	}
	return s.rc.Flush()
}
