package wsconn

import (
	"bufio"
	"encoding/binary"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hybridrt/hybridrt/internal/realtime"
)

// WebSocket opcodes (RFC 6455, 5.2) of the frames the doors send.
const (
	OpText  = 0x1
	OpClose = 0x8
	OpPong  = 0xA
)

// AppendFrame appends one unfragmented, unmasked frame: what a server
// sends. The doors encode their frames themselves, not through
// gorilla/websocket, so that one event's frame is built once for every
// connection and a batch of frames leaves in one writev, as an SSE chunk does.
func AppendFrame(b []byte, op byte, payload []byte) []byte {
	b = append(b, 0x80|op) // FIN
	switch n := len(payload); {
	case n <= 125:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// Text is payload as a text frame.
func Text(payload []byte) []byte {
	return AppendFrame(make([]byte, 0, len(payload)+10), OpText, payload)
}

// Close is a close frame with code and reason.
func Close(code int, reason string) []byte {
	return AppendFrame(nil, OpClose, websocket.FormatCloseMessage(code, reason))
}

// Hijacker lets gorilla/websocket take the connection through middleware
// that wraps the ResponseWriter (and unwraps, as http.ResponseController
// needs), and gives it a Conn, so that it reads no further than a frame
// and writes only between the door's own writes. Upgrade with
// Hijacker{w}; the upgraded connection's NetConn is then a *Conn.
type Hijacker struct{ http.ResponseWriter }

// Hijack takes the connection over.
func (h Hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &Conn{Conn: nc, Mu: &sync.Mutex{}}, brw, nil
}

// Conn is the connection as gorilla/websocket sees it, for reading
// and for the few frames gorilla writes itself (a close after a protocol
// error). Two things differ from the TCP connection under it:
//
//   - Reads never go past the end of the frame being read. gorilla reads
//     through a buffer; were it to hold the start of the next message,
//     the poller, which watches the socket, would not know there is one.
//     So after a message, everything not yet read is still in the kernel.
//   - Writes take Mu, which the door's writer holds for its own writes,
//     so a frame gorilla writes never lands inside one of ours.
type Conn struct {
	net.Conn
	Mu *sync.Mutex

	// Where the reader is in the current frame; the reader's own.
	hdr  [14]byte
	have int    // header bytes read
	need int    // header bytes the frame has (2 until the second byte is read)
	left uint64 // payload bytes not yet read, once the header is complete
}

func (f *Conn) Write(p []byte) (int, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return f.Conn.Write(p)
}

// Read reads at most up to the next frame boundary, and never more than
// the header field it is in: a frame's first two bytes, then the rest of
// its header, then its payload.
func (f *Conn) Read(p []byte) (int, error) {
	if f.need == 0 {
		f.need = 2
	}
	if f.have < f.need { // in the header
		n, err := f.Conn.Read(p[:min(len(p), f.need-f.have)])
		copy(f.hdr[f.have:], p[:n])
		f.have += n
		if f.have == 2 {
			switch f.hdr[1] & 0x7F {
			case 126:
				f.need += 2
			case 127:
				f.need += 8
			}
			if f.hdr[1]&0x80 != 0 { // masked, as every client frame must be
				f.need += 4
			}
		}
		if f.have == f.need {
			switch l := f.hdr[1] & 0x7F; l {
			case 126:
				f.left = uint64(binary.BigEndian.Uint16(f.hdr[2:4]))
			case 127:
				f.left = binary.BigEndian.Uint64(f.hdr[2:10])
			default:
				f.left = uint64(l)
			}
			if f.left == 0 {
				f.have, f.need = 0, 0 // next frame
			}
		}
		return n, err
	}
	n, err := f.Conn.Read(p[:min(uint64(len(p)), f.left)])
	f.left -= uint64(n)
	if f.left == 0 {
		f.have, f.need = 0, 0
	}
	return n, err
}

// Writer writes a door's frames to a connection, never inside a frame
// gorilla writes itself.
type Writer struct {
	mu     *sync.Mutex
	socket *realtime.SocketWriter
}

// NewWriter returns a writer to c.
func NewWriter(c *Conn) *Writer {
	return &Writer{mu: c.Mu, socket: realtime.NewSocketWriter(c.Conn)}
}

// Write writes frames, shared with other connections and never changed, in
// one writev of references to them, within timeout. r is the connection's
// Runner when its step writes, else nil.
func (w *Writer) Write(r *realtime.Runner, timeout time.Duration, frames ...[]byte) error {
	if !w.mu.TryLock() {
		// gorilla is writing a control frame, and may wait for the client.
		if r != nil {
			r.Blocking()
		}
		w.mu.Lock()
	}
	defer w.mu.Unlock()
	bufs := net.Buffers(frames)
	_, err := w.socket.Write(r, &bufs, timeout)
	return err
}
