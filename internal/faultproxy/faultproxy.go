// Package faultproxy is a TCP proxy for fault tests: put it between a client
// and a server, then make the network misbehave on demand — blackhole every
// connection (bytes are held, nothing arrives, nothing is closed), reset
// them all, or (in front of PostgreSQL) drop the notifications the server
// sends, as a pooler in transaction mode effectively does.
package faultproxy

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
)

// Proxy forwards connections from Addr to an upstream address.
type Proxy struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	paused bool
	resume chan struct{} // closed when a pause ends

	postgres   bool // the upstream speaks PostgreSQL's protocol (StartPostgres)
	dropNotify atomic.Bool
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

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.ResetAll()
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

// ResetAll closes every connection abruptly (RST).
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
	clear(p.conns)
}

func (p *Proxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
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
		go func() {
			<-p.gate() // a paused network does not complete new connections either
			up, err := net.Dial("tcp", p.upstream)
			if err != nil {
				c.Close()
				return
			}
			p.track(c)
			p.track(up)
			go p.pipe(up, c)
			if p.postgres {
				p.pipeServer(c, up)
			} else {
				p.pipe(c, up)
			}
		}()
	}
}

// pipe copies src to dst, holding each chunk while the proxy is paused.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// DropNotifications makes a proxy from StartPostgres drop PostgreSQL's
// NotificationResponse messages ('A') from server to client while on.
func (p *Proxy) DropNotifications(on bool) { p.dropNotify.Store(on) }

// pipeServer copies the server's messages to the client, one whole message
// at a time, leaving out notifications while DropNotifications is on.
func (p *Proxy) pipeServer(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 0, 64<<10)
	chunk := make([]byte, 32<<10)
	for {
		n, err := src.Read(chunk)
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
			<-p.gate()
			if _, werr := dst.Write(out); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
