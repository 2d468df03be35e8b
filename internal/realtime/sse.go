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
	"syscall"
	"time"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/web"
)

// readBatch is how many events a stream reads at a time.
const readBatch = 500

// HandleSSE serves GET /api/realtime/sse: the tenant's events on the
// requested channels as a text/event-stream, replayed from the cursor
// (Last-Event-ID, or lastEventId= on a first connect) and then live.
//
// Over HTTP/1.1 the handler takes the TCP connection over (hijacks it) and
// returns, leaving a fresh goroutine to stream: net/http keeps a request's
// read and write buffers, its headers and a deep goroutine stack for as long
// as a handler runs, which is most of an idle stream's memory. Where the
// connection cannot be taken (HTTP/2, a middleware that hides it), the stream
// runs inside the handler through the ResponseWriter.
func HandleSSE(log *slog.Logger, hub *Hub, reg *Registry, verifier *auth.Verifier, limits *Limits) http.HandlerFunc {
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
		st := &sseStream{log: log, hub: hub, reg: reg, verifier: verifier, cfg: lim.stream, s: s, conn: conn, requestID: web.RequestID(ctx)}

		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream

		// Subscribe before the first read: an event committed between the
		// read and the wait still wakes this stream.
		st.sub = hub.Subscribe(s.sub.TenantID, s.channels)

		if nc, err := hijack(w, r); err == nil {
			// Not the write timeout alone: a client starved of CPU for a
			// few seconds (a reconnect storm) must not lose its stream.
			limitUnacked(nc, lim.stream.Heartbeat+lim.stream.WriteTimeout)
			hub.streams.Add(1)
			go st.serveConn(nc, responseHead(h))
			return
		}
		defer st.release()

		rc := http.NewResponseController(w)
		if err := rc.Flush(); errors.Is(err, http.ErrNotSupported) {
			log.Error("realtime: the response writer cannot flush; SSE is impossible behind this middleware", "path", r.URL.Path)
			web.Error(w, http.StatusInternalServerError, "internal", "")
			return
		}
		st.serve(web.StreamContext(ctx), &responseSink{w: w, rc: rc, timeout: lim.stream.WriteTimeout})
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
type sseStream struct {
	log       *slog.Logger
	hub       *Hub
	reg       *Registry
	verifier  *auth.Verifier
	cfg       StreamConfig
	s         subscription
	conn      *Conn
	sub       *Subscription
	requestID string
}

// release unregisters the stream from the hub and the registry.
func (st *sseStream) release() {
	st.sub.Close()
	st.reg.Remove(st.conn)
}

// serveConn streams over a hijacked connection until either side ends it.
// A goroutine blocked in Read notices the client leaving (FIN or RST) at
// once, rather than at the next heartbeat's write.
func (st *sseStream) serveConn(nc net.Conn, head []byte) {
	defer st.hub.streams.Done()
	defer st.release()
	defer nc.Close()
	start := time.Now()

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	go func() {
		var b [64]byte
		for {
			if _, err := nc.Read(b[:]); err != nil {
				cancel(err)
				return
			}
		}
	}()

	out := &connSink{conn: nc, timeout: st.cfg.WriteTimeout, head: head}

	reason := st.serve(ctx, out)
	if (reason == endClientGone || reason == endWriteFailed) && errors.Is(context.Cause(ctx), syscall.ETIMEDOUT) {
		// The kernel gave up on a client that acknowledged nothing for the
		// TCP user timeout: as much a slow consumer as a blocked write.
		reason = endUnacked
		slowConsumers.Inc()
	}
	switch reason {
	case endClientGone, endUnacked, endWriteFailed: // the connection is dead
	default: // ended on purpose: close the body properly
		out.last()
	}
	st.log.LogAttrs(ctx, slog.LevelInfo, "stream ended",
		slog.String("request_id", st.requestID),
		slog.String("connection_id", st.conn.ID),
		slog.String("reason", reason),
		slog.Int64("bytes", out.sent),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
}

// serve writes the stream's frames to out until the stream ends, and says why it ended.
func (st *sseStream) serve(ctx context.Context, out sink) string {
	cfg, s, sub := st.cfg, st.s, st.sub
	flush := func() error {
		err := out.flush()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			slowConsumers.Inc()
		}
		return err
	}

	cursor := s.cursor
	out.write([]byte("retry: " + strconv.FormatInt(cfg.Retry.Milliseconds(), 10) + "\n\n"))
	if s.resync {
		out.write(systemFrame("resync", strconv.FormatInt(cursor, 10), map[string]string{
			"cursor": strconv.FormatInt(cursor, 10),
			"reason": "the requested position is older than the retention period; reload your state",
		}))
	}
	// ready carries the cursor as its id, so a reconnect before any event
	// resumes from here rather than from a later head.
	out.write(systemFrame("ready", strconv.FormatInt(cursor, 10), map[string]any{
		"connectionId": st.conn.ID,
		"cursor":       strconv.FormatInt(cursor, 10),
		"heartbeat":    int(cfg.Heartbeat.Seconds()),
	}))
	if flush() != nil {
		return endClientGone
	}

	heartbeat := time.NewTicker(cfg.Heartbeat)
	defer heartbeat.Stop()
	expiry := time.NewTimer(time.Until(st.conn.Expires()))
	defer expiry.Stop()
	live := false // after the first empty read, events are live, not replayed
	for {
		evs, scanned, err := sub.After(ctx, cursor, readBatch)
		if err != nil {
			if ctx.Err() != nil {
				return endClientGone
			}
			return "store unavailable" // the client resumes with Last-Event-ID
		}
		for _, e := range evs {
			out.write(e.Frame)
		}
		cursor = scanned
		if len(evs) > 0 {
			if flush() != nil {
				return endWriteFailed
			}
			if live { // the newest event's age: what the slowest of the batch waited
				deliveryLatency.Observe(time.Since(evs[len(evs)-1].Time).Seconds())
			}
			sseDelivered.Add(float64(len(evs)))
		}
		if len(evs) == readBatch {
			continue // more backlog
		}
		live = true

		select {
		case <-ctx.Done():
			return endClientGone
		case <-st.hub.Done():
			// Shutting down: ask clients to come back at staggered times,
			// so they do not all reconnect to the other instances at once.
			out.write([]byte("retry: " + strconv.Itoa(500+rand.IntN(4500)) + "\n\n"))
			_ = flush()
			return "shutdown"
		case <-sub.Wake():
		case <-heartbeat.C:
			if !st.keyActive(ctx) {
				out.write(systemFrame("token_expired", "", map[string]string{"reason": "the signing key was revoked"}))
				_ = flush()
				return "signing key revoked"
			}
			out.write([]byte(": ping\n\n"))
			if flush() != nil {
				return endWriteFailed
			}
		case <-st.conn.TenantSuspended():
			out.write(systemFrame("token_expired", "", map[string]string{"code": "tenant_suspended", "reason": "the tenant is suspended by the operator of this service"}))
			_ = flush()
			return "tenant suspended"
		case <-expiry.C:
			if exp := st.reg.refresh(ctx, st.conn); time.Until(exp) > 0 {
				expiry.Reset(time.Until(exp)) // renewed in place
				continue
			}
			out.write(systemFrame("token_expired", "", map[string]string{"reason": "the token expired; get a new one and resume from your last event id"}))
			_ = flush()
			return "token expired"
		}
	}
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
	conn    net.Conn
	timeout time.Duration
	head    []byte      // the response's status line and headers, until the first flush
	batch   net.Buffers // batch[0] is reserved for the chunk's size line
	size    int
	sent    int64
}

func (c *connSink) write(frame []byte) {
	if len(c.batch) == 0 {
		c.batch = append(c.batch, nil)
	}
	c.batch = append(c.batch, frame)
	c.size += len(frame)
}

func (c *connSink) flush() error {
	if c.size == 0 {
		return nil
	}
	line := make([]byte, 0, len(c.head)+18)
	line = append(line, c.head...)
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
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	n, err := c.batch.WriteTo(c.conn) // consumes c.batch
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
