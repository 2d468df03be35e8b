package wsconn

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hybridrt/hybridrt/internal/netpoll"
	"github.com/hybridrt/hybridrt/internal/realtime"
)

// Socket is a WebSocket connection as a door holds it, with no goroutine
// while it is idle.
//
// Reading: the hub's poller says when the client has sent something, and
// a goroutine reads one message and hands it to the door (ReadOne), then
// asks the poller for the next; so messages are handled one at a time, in
// order. (Where there is no poller, one goroutine reads them all.)
//
// Writing: the door's write step (Writer.Step) sends everything the client
// gets. It runs only while there is something to send, on the realtime
// core's writers: Poke starts it, and at most one runs at a time, so frames
// leave in the order they were queued.
type Socket struct {
	WS     *websocket.Conn // for reading messages; frames are written to NC
	NC     net.Conn        // the TCP (or TLS) connection under WS
	Wire   *Writer         // writes frames to NC, between gorilla's
	Writer realtime.Runner // runs the door's write step when poked
	Ctx    context.Context // ends with the connection

	// ReadOne reads one message with WS and acts on it; false ends the
	// connection. Set it before Serve.
	ReadOne func() bool

	cancel       context.CancelFunc
	writeTimeout time.Duration
	watch        *netpoll.Watch // nil where reads run in a loop (no poller)
	reads        sync.WaitGroup // reads in progress
	readEnded    atomic.Bool    // no message will be read any more
	lastRead     atomic.Int64   // unix nanoseconds of the last message read
	pinged       atomic.Bool    // pinged since the last message read
}

// Init readies s for ws, upgraded through Hijacker, with the door's write
// step. Writer is held until Serve: the step may queue replies meanwhile.
func (s *Socket) Init(ws *websocket.Conn, writeTimeout time.Duration, step func() bool) {
	fc := ws.NetConn().(*Conn)
	s.WS, s.NC, s.Wire, s.writeTimeout = ws, fc.Conn, NewWriter(fc), writeTimeout
	// gorilla answers a client's close frame itself unless told otherwise,
	// and then the write step sends its own: two close frames, a protocol
	// error browsers log ("Close received after close"). The write step's
	// is the one.
	ws.SetCloseHandler(func(int, string) error { return nil })
	s.Ctx, s.cancel = context.WithCancel(context.Background())
	s.lastRead.Store(time.Now().UnixNano())
	s.Writer.Step = step
	s.Writer.Hold()
}

// Serve starts reading messages of at most maxMessage bytes, from the hub's
// poller or, without one, in a goroutine of their own, and lets the write
// step run.
func (s *Socket) Serve(hub *realtime.Hub, maxMessage int64) {
	s.WS.SetReadLimit(maxMessage)
	w, err := hub.Watch(s.NC, s.readable)
	if err == nil {
		s.watch = w
		if err = w.Arm(); err != nil {
			w.Stop()
			s.watch = nil
		}
	}
	if err != nil {
		s.reads.Add(1)
		go s.readLoop()
	}
	s.Writer.Release()
}

// readable is the poller's call: the client sent something, or left. The
// message is read in a goroutine of its own, which the poller's must not
// wait for; reads counts it before the poller lets go, so Shutdown, having
// stopped the watch, can wait for it.
func (s *Socket) readable() {
	s.reads.Add(1)
	go func() {
		defer s.reads.Done()
		if !s.ReadOne() {
			s.endReads()
			return
		}
		if err := s.watch.Arm(); err != nil {
			s.endReads()
		}
	}()
}

// readLoop reads every message in turn, where there is no poller.
func (s *Socket) readLoop() {
	defer s.reads.Done()
	for s.ReadOne() {
	}
	s.endReads()
}

// endReads records that no message will be read any more, and pokes the
// write step to end the connection.
func (s *Socket) endReads() {
	s.readEnded.Store(true)
	s.Poke()
}

// ReadEnded reports that the client left, or that reading ended the
// connection: what is left for the write step is to close it.
func (s *Socket) ReadEnded() bool { return s.readEnded.Load() }

// Poke tells the write step there is something to do, starting it unless
// it runs. It never blocks.
func (s *Socket) Poke() { s.Writer.Poke() }

// Touch records that the client sent a message: it is alive.
func (s *Socket) Touch() {
	s.lastRead.Store(time.Now().UnixNano())
	s.pinged.Store(false)
}

// Silent returns how long the client has sent nothing, at now.
func (s *Socket) Silent(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, s.lastRead.Load()))
}

// FirstPing reports whether the client is to be pinged now: true once
// after each message it sent.
func (s *Socket) FirstPing() bool { return s.pinged.CompareAndSwap(false, true) }

// Send writes frames within the write timeout, from the write step. A
// client that does not take them in time is cut off, and counted as a slow
// consumer.
func (s *Socket) Send(frames ...[]byte) error {
	if len(frames) == 0 {
		return nil
	}
	err := s.Wire.Write(&s.Writer, s.writeTimeout, frames...)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		realtime.CountSlowConsumer()
	}
	return err
}

// SendClose writes the last frames (a close frame, after what the door
// says first), briefly, from the write step: the client may be gone.
func (s *Socket) SendClose(frames ...[]byte) {
	_ = s.Wire.Write(&s.Writer, time.Second, frames...)
}

// Refuse ends a connection that was never served: frames, briefly, then
// the socket.
func (s *Socket) Refuse(frames ...[]byte) {
	_ = s.Wire.Write(nil, time.Second, frames...)
	_ = s.NC.Close()
	s.cancel()
}

// Shutdown closes the socket and waits until no read runs or will start:
// what the door's cleanup does first, from the write step.
func (s *Socket) Shutdown() {
	_ = s.NC.Close()
	s.cancel()
	if s.watch != nil {
		s.watch.Stop() // no read starts after this
	}
	s.reads.Wait()
}

// Sweep calls look every interval until ctx ends, with whether keyCheck
// has passed since it last said so (time to ask whether keys were
// revoked). When hub shuts down it calls shutdown once (ask every client
// to reconnect elsewhere) and waits for ctx. One sweep for all of a door's
// connections, rather than timers for each.
func Sweep(ctx context.Context, hub *realtime.Hub, interval, keyCheck time.Duration, shutdown func(), look func(now time.Time, checkKeys bool)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	lastKeyCheck := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hub.Done():
			shutdown()
			<-ctx.Done()
			return
		case <-t.C:
		}
		now := time.Now()
		checkKeys := now.Sub(lastKeyCheck) >= keyCheck
		if checkKeys {
			lastKeyCheck = now
		}
		look(now, checkKeys)
	}
}
