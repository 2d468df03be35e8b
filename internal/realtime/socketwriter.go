package realtime

import (
	"net"
	"time"
)

// SocketWriter writes batches of frames to a stream's connection (an SSE
// stream's hijacked connection, a WebSocket) from its Runner's step. A
// batch goes in one writev. On a writer it is first written without
// waiting; only when the socket cannot take all of it does the step call
// Blocking and wait, with a write deadline, for the client to read.
type SocketWriter struct {
	conn     net.Conn
	deadline time.Time // the write deadline set on conn
	now      rawWriter // writes without waiting, where the platform and the connection can
}

// NewSocketWriter returns a writer to conn.
func NewSocketWriter(conn net.Conn) *SocketWriter {
	w := &SocketWriter{conn: conn}
	w.now.init(conn)
	return w
}

// Write writes bufs, consuming it, within timeout, and returns the bytes
// written. r is the Runner whose step writes, or nil outside a step.
func (w *SocketWriter) Write(r *Runner, bufs *net.Buffers, timeout time.Duration) (int64, error) {
	var n int64
	if r != nil {
		if r.pooled {
			n = w.now.write(bufs)
			if len(*bufs) == 0 {
				return n, nil
			}
		}
		r.Blocking()
	}
	// A deadline between half the timeout and the timeout away is kept:
	// resetting it is a timer operation on every write, and a client that
	// stops reading is still cut off within half to all of the timeout.
	if now := time.Now(); w.deadline.Sub(now) < timeout/2 || w.deadline.Sub(now) > timeout {
		w.deadline = now.Add(timeout)
		_ = w.conn.SetWriteDeadline(w.deadline)
	}
	m, err := bufs.WriteTo(w.conn)
	return n + m, err
}

// consume drops the first n bytes of bufs.
func consume(bufs *net.Buffers, n int64) {
	for len(*bufs) > 0 {
		first := int64(len((*bufs)[0]))
		if first > n {
			(*bufs)[0] = (*bufs)[0][n:]
			return
		}
		n -= first
		(*bufs)[0] = nil
		*bufs = (*bufs)[1:]
	}
}
