package realtime

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunnerBlockingFreesTheWriter: steps that wait (after Blocking) on
// every writer at once, and more, do not keep other connections' steps
// from running.
func TestRunnerBlockingFreesTheWriter(t *testing.T) {
	release := make(chan struct{})
	var blocked sync.WaitGroup
	for range runtime.GOMAXPROCS(0) + 2 {
		blocked.Add(1)
		r := &Runner{}
		r.Step = func() bool {
			r.Blocking()
			blocked.Done()
			<-release
			return false
		}
		r.Poke()
	}
	all := make(chan struct{})
	go func() { blocked.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		t.Fatal("steps queued behind steps that called Blocking never ran")
	}

	ran := make(chan struct{})
	var n atomic.Int32
	for range 100 {
		r := &Runner{Step: func() bool {
			if n.Add(1) == 100 {
				close(ran)
			}
			return true
		}}
		r.Poke()
	}
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d of 100 steps ran while others waited after Blocking", n.Load())
	}
	close(release)
}

// TestRunnerStepsInTurn: a connection poked while it runs runs again, and
// never two steps of it at once.
func TestRunnerStepsInTurn(t *testing.T) {
	var (
		r       Runner
		inStep  atomic.Bool
		steps   atomic.Int32
		overlap atomic.Bool
	)
	r.Step = func() bool {
		if inStep.Swap(true) {
			overlap.Store(true)
		}
		steps.Add(1)
		inStep.Store(false)
		return true
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				r.Poke()
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for r.running.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	last := steps.Load()
	r.Poke() // after everything settled: one more step
	for steps.Load() == last && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if overlap.Load() {
		t.Error("two steps of one connection ran at once")
	}
	if steps.Load() == last {
		t.Error("a poke after the runs ended started no step")
	}
}

// TestSocketWriterFullSocket: a write that the socket cannot take at once
// is finished after Blocking, in order, and the writer that started it is
// free meanwhile.
func TestSocketWriterFullSocket(t *testing.T) {
	server, client := loopback(t)

	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB: more than the socket buffers
	w := NewSocketWriter(server)
	r := &Runner{}
	done := make(chan error, 1)
	r.Step = func() bool {
		// Many buffers of uneven sizes, some empty, as a batch of frames is.
		var bufs net.Buffers
		for rest, size := payload, 1; len(rest) > 0; size = size*3%50000 + 1 {
			size = min(size, len(rest))
			bufs = append(bufs, rest[:size], nil)
			rest = rest[size:]
		}
		if len(bufs) > maxIovecs {
			t.Errorf("%d buffers: more than one writev takes, so the raw path is not tested", len(bufs))
		}
		n, err := w.Write(r, &bufs, 30*time.Second)
		if err == nil && n != int64(len(payload)) {
			t.Errorf("wrote %d bytes of %d", n, len(payload))
		}
		done <- err
		return false
	}
	r.Poke()

	// While the client reads nothing, other steps run.
	time.Sleep(100 * time.Millisecond)
	ran := make(chan struct{})
	other := &Runner{Step: func() bool { close(ran); return false }}
	other.Poke()
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("a step waiting for a full socket held its writer")
	}

	got := make([]byte, 0, len(payload))
	buf := make([]byte, 64<<10)
	for len(got) < len(payload) {
		n, err := client.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Error("the bytes read are not the bytes written, in order")
	}
}

// loopback returns both ends of a TCP connection on the loopback
// interface, closed when the test ends.
func loopback(tb testing.TB) (server, client net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		tb.Fatal("accept failed")
	}
	tb.Cleanup(func() { client.Close(); server.Close() })
	return server, client
}

// BenchmarkRawWrite: a batch of 32 frames written to a socket without
// waiting, as a writer does; allocs/op is the figure to watch (writev's
// iovecs are lent from a pool, not made per write).
func BenchmarkRawWrite(b *testing.B) {
	server, client := loopback(b)
	go func() { _, _ = io.Copy(io.Discard, client) }()
	var w rawWriter
	w.init(server)
	frames := make([][]byte, 32)
	for i := range frames {
		frames[i] = bytes.Repeat([]byte{'a' + byte(i)}, 100)
	}
	batch := make([][]byte, len(frames))
	var written int64
	b.ReportAllocs()
	for b.Loop() {
		copy(batch, frames)
		bufs := net.Buffers(batch)
		written += w.write(&bufs)
	}
	b.ReportMetric(float64(written)/float64(b.N), "B/write")
}
