package faultproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// serve runs handle for every connection to a new loopback listener and
// returns its address.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echo sends back what it reads, and reports how the read side ended: nil
// for EOF (a FIN), the error otherwise.
func echo(ended chan<- error) func(net.Conn) {
	return func(c net.Conn) {
		_, err := io.Copy(c, c)
		if ended != nil {
			ended <- err
		}
	}
}

func startProxy(t *testing.T, upstream string) *Proxy {
	t.Helper()
	p, err := Start(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads as many bytes back within timeout.
func roundTrip(c net.Conn, msg string, timeout time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, len(msg))
	_, err := io.ReadFull(c, b)
	return string(b), err
}

func TestPauseHoldsAndResumeDelivers(t *testing.T) {
	t.Parallel()
	p := startProxy(t, serve(t, echo(nil)))
	open := dial(t, p)
	if got, err := roundTrip(open, "before", 5*time.Second); err != nil || got != "before" {
		t.Fatalf("echo before the pause = %q, %v", got, err)
	}

	p.Pause()
	late := dial(t, p) // the kernel completes the handshake; the proxy does not go on
	for _, c := range []net.Conn{open, late} {
		if _, err := c.Write([]byte("held")); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range []net.Conn{open, late} {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if n, err := c.Read(make([]byte, 16)); n != 0 || !isTimeout(err) {
			t.Errorf("connection %d while paused: read %d bytes, %v; want nothing and no close", i, n, err)
		}
	}

	p.Resume()
	for i, c := range []net.Conn{open, late} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "held" {
			t.Errorf("connection %d after Resume = %q, %v; want the held bytes", i, b, err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestResetAllGivesECONNRESET(t *testing.T) {
	t.Parallel()
	ended := make(chan error, 1)
	p := startProxy(t, serve(t, echo(ended)))
	c := dial(t, p)
	if _, err := roundTrip(c, "ping", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.ResetAll()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after ResetAll = %v, want ECONNRESET", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("upstream read after ResetAll = %v, want ECONNRESET", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("upstream connection still open 5 s after ResetAll")
	}
}

func TestCloseAllGivesEOF(t *testing.T) {
	t.Parallel()
	ended := make(chan error, 1)
	p := startProxy(t, serve(t, echo(ended)))
	c := dial(t, p)
	if _, err := roundTrip(c, "ping", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.CloseAll()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("client read after CloseAll = %d bytes, %v; want EOF", n, err)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("upstream read after CloseAll = %v, want EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("upstream connection still open 5 s after CloseAll")
	}
	// The proxy still takes new connections.
	if got, err := roundTrip(dial(t, p), "again", 5*time.Second); err != nil || got != "again" {
		t.Errorf("a new connection after CloseAll = %q, %v", got, err)
	}
}

// TestThrottle: 20 KiB at 10 KiB/s cannot arrive in under about 2 s (the
// pacing allows at most one tenth of a second's worth ahead); without the
// cap, 4 MiB arrives in a fraction of the time 10 KiB/s would take (400 s).
func TestThrottle(t *testing.T) {
	t.Parallel()
	size := atomic.Int64{}
	p := startProxy(t, serve(t, func(c net.Conn) {
		c.Write(bytes.Repeat([]byte("x"), int(size.Load())))
	}))
	fetch := func(n int) (time.Duration, error) {
		size.Store(int64(n))
		c := dial(t, p)
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		start := time.Now()
		b, err := io.ReadAll(c)
		if err == nil && len(b) != n {
			err = fmt.Errorf("got %d bytes, want %d", len(b), n)
		}
		return time.Since(start), err
	}

	p.Throttle(10 << 10)
	took, err := fetch(20 << 10)
	if err != nil {
		t.Fatalf("20 KiB at 10 KiB/s: %v", err)
	}
	if took < 1500*time.Millisecond {
		t.Errorf("20 KiB at 10 KiB/s took %v, want at least 1.5 s", took)
	}
	t.Logf("20 KiB at 10 KiB/s took %v", took)

	p.Throttle(0)
	took, err = fetch(4 << 20)
	if err != nil {
		t.Fatalf("4 MiB unthrottled: %v", err)
	}
	if took > 30*time.Second {
		t.Errorf("4 MiB took %v after Throttle(0): still throttled", took)
	}
}

// TestLatency: a round trip through two delayed directions takes at least
// twice the latency, and is back to normal once the latency is removed.
func TestLatency(t *testing.T) {
	t.Parallel()
	p := startProxy(t, serve(t, echo(nil)))
	c := dial(t, p)
	p.Latency(200 * time.Millisecond)
	start := time.Now()
	if got, err := roundTrip(c, "slow", 10*time.Second); err != nil || got != "slow" {
		t.Fatalf("echo with latency = %q, %v", got, err)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("a round trip with 200 ms latency each way took %v, want at least 400 ms", took)
	}
	p.Latency(0)
	if got, err := roundTrip(c, "fast", 10*time.Second); err != nil || got != "fast" {
		t.Errorf("echo after Latency(0) = %q, %v", got, err)
	}
}

// TestDropNextResponse: exactly one request loses its reply, whether the
// control was armed on an open keep-alive connection or before the next
// one; the upstream got that request whole.
func TestDropNextResponse(t *testing.T) {
	t.Parallel()
	var (
		served atomic.Int64
		bodies = make(chan string, 16)
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		fmt.Fprintf(w, "reply %d", served.Add(1))
	}))
	t.Cleanup(up.Close)
	p := startProxy(t, strings.TrimPrefix(up.URL, "http://"))

	// post sends one request on c and reads its reply.
	post := func(c net.Conn, body string) (string, error) {
		fmt.Fprintf(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}
	received := func() string {
		select {
		case b := <-bodies:
			return b
		case <-time.After(5 * time.Second):
			return "(nothing within 5 s)"
		}
	}
	lost := func(what string, c net.Conn, body string, wantServed int64) {
		t.Helper()
		if got, err := post(c, body); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: reply %q, %v; want the connection closed with no reply", what, got, err)
		}
		if n := served.Load(); n != wantServed {
			t.Errorf("%s: the upstream served %d requests, want %d", what, n, wantServed)
		}
		if got := received(); got != body {
			t.Errorf("%s: the upstream got body %q, want %q", what, got, body)
		}
	}
	ok := func(what string, c net.Conn, body, want string) {
		t.Helper()
		if got, err := post(c, body); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", what, got, err, want)
		}
		received()
	}

	keepAlive := dial(t, p)
	ok("first request", keepAlive, "one", "reply 1")
	p.DropNextResponse()
	lost("request on an open connection after DropNextResponse", keepAlive, "two", 2)
	ok("the retry on a new connection", dial(t, p), "two", "reply 3")

	p.DropNextResponse()
	lost("request on a new connection after DropNextResponse", dial(t, p), "four", 4)
	again := dial(t, p)
	ok("the retry", again, "four", "reply 5")
	ok("the next request on the same connection", again, "six", "reply 6")
}

// TestDropNotifications: with DropNotifications on, PostgreSQL's
// notifications never reach the client while other messages still do; once
// off, notifications arrive again.
func TestDropNotifications(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := pgtest.NewURL(t, false)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	p, err := StartPostgres(fmt.Sprintf("%s:%d", cfg.Host, cfg.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	viaCfg := cfg.Copy()
	host, port, _ := net.SplitHostPort(p.Addr())
	viaCfg.Host = host
	fmt.Sscan(port, &viaCfg.Port)
	viaCfg.TLSConfig = nil // the proxy reads PostgreSQL's messages: no TLS
	viaCfg.Fallbacks = nil // and nothing may bypass it
	listener, err := pgx.ConnectConfig(ctx, viaCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN probe"); err != nil {
		t.Fatal(err)
	}
	notify := func(payload string) {
		if _, err := direct.Exec(ctx, "SELECT pg_notify('probe', $1)", payload); err != nil {
			t.Fatal(err)
		}
	}
	next := func() string {
		n, err := listener.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return n.Payload
	}

	notify("1")
	if got := next(); got != "1" {
		t.Fatalf("notification = %q, want 1", got)
	}
	p.DropNotifications(true)
	notify("2")
	// A query through the proxy still works, and pgx keeps any notification
	// that arrives meanwhile for WaitForNotification below.
	var one int
	if err := listener.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 with notifications dropped = %d, %v", one, err)
	}
	time.Sleep(200 * time.Millisecond)
	p.DropNotifications(false)
	notify("3")
	if got := next(); got != "3" {
		t.Errorf("first notification after dropping = %q, want 3 (2 was sent while dropping)", got)
	}
}
