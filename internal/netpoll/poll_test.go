//go:build linux

package netpoll

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func newPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func within(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("no ready within 5 s: %s", what)
	}
}

func quiet(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("ready came, but should not have: %s", what)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestReadyOnDataThenRearm: ready comes once per arming, for data and then
// for the client's FIN, and not while the watch is disarmed.
func TestReadyOnDataThenRearm(t *testing.T) {
	p := newPoller(t)
	server, client := pair(t)
	ready := make(chan struct{}, 10)
	w, err := p.Watch(server, func() { ready <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	quiet(t, ready, "not armed yet")
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	within(t, ready, "armed with data waiting")
	if _, err := server.Read(make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	quiet(t, ready, "nothing more was sent")

	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	within(t, ready, "after the client wrote")
	if _, err := client.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	quiet(t, ready, "disarmed until Rearm")

	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	within(t, ready, "data was waiting when rearmed")
	buf := make([]byte, 64)
	_ = server.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := server.Read(buf); err != nil || string(buf[:n]) != "hellomore" {
		t.Fatalf("read %q, %v; want hellomore", buf[:n], err)
	}

	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	quiet(t, ready, "everything was read")
	client.Close()
	within(t, ready, "after the client closed")
	if _, err := server.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("read after FIN: %v, want EOF", err)
	}
}

// TestStopEndsReady: after Stop returns, ready never runs, even for data
// that arrives later; and Stop after Close is harmless.
func TestStopEndsReady(t *testing.T) {
	p := newPoller(t)
	server, client := pair(t)
	var calls atomic.Int32
	w, err := p.Watch(server, func() { calls.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	w.Stop()
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := calls.Load(); n != 0 {
		t.Fatalf("ready ran %d times after Stop", n)
	}
	server.Close()
	w.Stop()
}

// TestManyConnections: one goroutine serves a thousand watches, each told
// only about its own connection.
func TestManyConnections(t *testing.T) {
	p := newPoller(t)
	const n = 1000
	servers := make([]net.Conn, n)
	clients := make([]net.Conn, n)
	got := make([]atomic.Int32, n)
	done := make(chan struct{}, n)
	for i := range n {
		servers[i], clients[i] = pair(t)
		w, err := p.Watch(servers[i], func() { got[i].Add(1); done <- struct{}{} })
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Arm(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 2 { // every other one speaks
		if _, err := clients[i].Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for range n / 2 {
		within(t, done, "every writing client's watch")
	}
	time.Sleep(100 * time.Millisecond)
	for i := range n {
		want := int32(1 - i%2)
		if g := got[i].Load(); g != want {
			t.Fatalf("connection %d: ready ran %d times, want %d", i, g, want)
		}
	}
}

func TestUnsupported(t *testing.T) {
	p := newPoller(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := p.Watch(a, func() {}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Watch(pipe) = %v, want ErrUnsupported", err)
	}
}
