// Package faultproxy is a TCP proxy for fault tests: put it between a client
// and a server, then make the network misbehave on demand — blackhole every
// connection (bytes are held, nothing arrives, nothing is closed), close or
// reset them all, slow them down (a bandwidth cap, added latency), lose the
// next reply after the server has acted on its request, or (in front of
// PostgreSQL) drop the notifications the server sends, as a pooler in
// transaction mode effectively does.
//
// Every control applies at once to the connections already open and to
// those opened later. The proxy does not pass half-closes on: when either
// side of a connection ends, both are closed.
package faultproxy

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// maxChunk is the most the proxy reads at once from either side.
const maxChunk = 32 << 10

// Proxy forwards connections from Addr to an upstream address.
type Proxy struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	paused bool
	resume chan struct{} // closed when a pause ends

	postgres   bool // the upstream speaks PostgreSQL's protocol (StartPostgres)
	dropNotify atomic.Bool
	rate       atomic.Int64 // Throttle: bytes per second per direction per connection, 0 for no cap
	latency    atomic.Int64 // Latency: a time.Duration
	dropNext   atomic.Bool  // DropNextResponse is armed
}

// link is one proxied connection: the client's side and ours to upstream.
type link struct {
	client, upstream net.Conn
	dropReply        atomic.Bool // what upstream sends next is to be swallowed
}

// Start listens on a free loopback port and forwards to upstream (host:port).
func Start(upstream string) (*Proxy, error) { return start(upstream, false) }

// StartPostgres is Start for an upstream PostgreSQL (without TLS), so that
// DropNotifications can work on its messages.
func StartPostgres(upstream string) (*Proxy, error) { return start(upstream, true) }

func start(upstream string, postgres bool) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, upstream: upstream, postgres: postgres, conns: map[net.Conn]struct{}{}, resume: make(chan struct{})}
	close(p.resume)
	go p.accept()
	return p, nil
}

// Addr is the address clients should dial instead of upstream.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops the proxy and resets every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.ResetAll()
	p.Resume() // let goroutines held by a pause see the closed connections and end
}

// Pause blackholes every connection, present and future: what either side
// sends is held back, as on a network path that silently drops packets.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		p.paused = true
		p.resume = make(chan struct{})
	}
}

// Resume ends a pause; held bytes flow again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		p.paused = false
		close(p.resume)
	}
}

// ResetAll closes every connection abruptly: both sides get a RST, and a
// read on them fails with ECONNRESET.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Every socket is set to reset before any is closed: closing one side
	// ends the pipes, which close the other side too.
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// CloseAll closes every connection gracefully: both sides get a FIN and
// read EOF, as when a peer or a middlebox closes normally. Bytes either
// side sends afterwards draw a RST, as from any closed socket.
func (p *Proxy) CloseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Every FIN goes out first: closing a socket that still has unread
	// input sends a RST and no FIN, and the peer would read ECONNRESET;
	// after the FIN, the peer reads EOF whatever follows. All of them
	// before any close, as closing one side makes the pipes close the other.
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Throttle caps every connection at bytesPerSec in each direction, each
// connection and direction on its own (two connections may move twice as
// much together); 0 lifts the cap. The proxy then also reads at most a tenth
// of a second's worth at a time, so it holds little more than the kernel's
// socket buffers do: a throttled reader looks slow to the server, not fast
// with a big buffer.
func (p *Proxy) Throttle(bytesPerSec int) { p.rate.Store(int64(max(bytesPerSec, 0))) }

// Latency holds each chunk the proxy reads for d before forwarding it, in
// both directions; 0 removes the delay. A request and its reply are then
// each d late. One goroutine forwards each direction, so a continuous
// stream moves at most one chunk (up to 32 KiB) per d.
func (p *Proxy) Latency(d time.Duration) { p.latency.Store(int64(max(d, 0))) }

// DropNextResponse loses one reply after the server has received its
// request, as a connection that breaks between the server's commit and the
// client's read (TESTPLAN F14).
//
// Exactly: the next bytes a client sends, on any connection open or opened
// later, are forwarded upstream whole and mark their connection. The first
// bytes that upstream then sends back on that connection are discarded, and
// both sides of the connection are closed at once: the client reads EOF
// without a byte of the reply (or ECONNRESET, if it had sent more that the
// proxy had not read), and the upstream has received all it was sent. Only
// that one reply is lost: the client's retry, on a new connection, goes
// through. This fits HTTP/1.1, where a client sends a request only once it
// has read the previous reply, so whatever upstream sends after a request
// is that request's reply (not with Expect: 100-continue, whose interim
// reply is the one lost). Mind that Go's http.Transport resends a
// replayable request (a GET, or any request with an Idempotency-Key header)
// by itself when a reused connection fails this way.
func (p *Proxy) DropNextResponse() { p.dropNext.Store(true) }

// DropNotifications makes a proxy from StartPostgres drop PostgreSQL's
// NotificationResponse messages ('A') from server to client while on.
func (p *Proxy) DropNotifications(on bool) { p.dropNotify.Store(on) }

// UpstreamAddrs returns the local addresses of the proxy's open connections
// to upstream: each proxied connection's end, as upstream sees its peer.
func (p *Proxy) UpstreamAddrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for c := range p.conns {
		if c.RemoteAddr().String() == p.upstream {
			out = append(out, c.LocalAddr().String())
		}
	}
	return out
}

// track records c so that ResetAll and CloseAll can find it; it reports
// false, and the caller must close c, once the proxy is closed.
func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *Proxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resume
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

// serve proxies one client connection until either side ends it.
func (p *Proxy) serve(c net.Conn) {
	<-p.gate() // a paused network does not complete new connections either
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, up) {
		c.Close()
		up.Close()
		return
	}
	defer p.untrack(c, up)
	l := &link{client: c, upstream: up}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pipe(l, true)
	}()
	if p.postgres {
		p.pipeServer(l)
	} else {
		p.pipe(l, false)
	}
	<-done
}

// readSize is how much to read at once: a tenth of a second's worth under
// Throttle (see there), else maxChunk.
func (p *Proxy) readSize() int {
	if r := p.rate.Load(); r > 0 {
		return int(min(max(r/10, 1), maxChunk))
	}
	return maxChunk
}

// pipe copies one direction of l: from the client to upstream when toUpstream,
// else back.
func (p *Proxy) pipe(l *link, toUpstream bool) {
	src, dst := l.upstream, l.client
	if toUpstream {
		src, dst = l.client, l.upstream
	}
	defer dst.Close()
	defer src.Close()
	var pace pacer
	buf := make([]byte, maxChunk)
	for {
		n, err := src.Read(buf[:p.readSize()])
		if n > 0 {
			read := time.Now()
			if toUpstream && p.dropNext.CompareAndSwap(true, false) {
				l.dropReply.Store(true) // before forwarding: the reply cannot come first
			}
			if !toUpstream && l.dropReply.Load() {
				return // swallow the reply: the deferred closes end both sides
			}
			if p.forward(dst, buf[:n], read, &pace) != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// forward writes b, read at the time read, to dst as the controls say: d
// after it was read under Latency, in paced pieces under Throttle, and not
// while the proxy is paused.
func (p *Proxy) forward(dst net.Conn, b []byte, read time.Time, pace *pacer) error {
	if d := time.Duration(p.latency.Load()); d > 0 {
		time.Sleep(time.Until(read.Add(d)))
	}
	for len(b) > 0 {
		piece := b[:min(len(b), p.readSize())]
		pace.wait(len(piece), p.rate.Load())
		<-p.gate()
		if _, err := dst.Write(piece); err != nil {
			return err
		}
		b = b[len(piece):]
	}
	return nil
}

// pacer spaces out one direction's writes under Throttle.
type pacer struct{ next time.Time }

// wait sleeps until n more bytes fit under bytesPerSec. Each piece books its
// share of a second after the previous one, and idle time is not saved up,
// so the cap holds from the first byte of a burst: n bytes in k pieces take
// at least (k-1)/k of n/bytesPerSec.
func (pc *pacer) wait(n int, bytesPerSec int64) {
	if bytesPerSec <= 0 {
		return
	}
	now := time.Now()
	if pc.next.Before(now) {
		pc.next = now
	}
	time.Sleep(pc.next.Sub(now))
	pc.next = pc.next.Add(time.Duration(int64(n) * int64(time.Second) / bytesPerSec))
}

// pipeServer copies the server's messages to the client, one whole message
// at a time, leaving out notifications while DropNotifications is on.
func (p *Proxy) pipeServer(l *link) {
	src, dst := l.upstream, l.client
	defer dst.Close()
	defer src.Close()
	var pace pacer
	buf := make([]byte, 0, 64<<10)
	chunk := make([]byte, maxChunk)
	for {
		n, err := src.Read(chunk[:p.readSize()])
		read := time.Now()
		if n > 0 && l.dropReply.Load() {
			return
		}
		buf = append(buf, chunk[:n]...)
		// Forward every complete message: type byte, then a length that counts itself.
		var out []byte
		for len(buf) >= 5 {
			size := int(binary.BigEndian.Uint32(buf[1:5])) + 1
			if len(buf) < size {
				break
			}
			if !(buf[0] == 'A' && p.dropNotify.Load()) {
				out = append(out, buf[:size]...)
			}
			buf = buf[size:]
		}
		buf = append(buf[:0:0], buf...)
		if len(out) > 0 {
			if p.forward(dst, out, read, &pace) != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
