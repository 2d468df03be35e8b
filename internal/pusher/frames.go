package pusher

import (
	"encoding/binary"
	"net"
	"sync"
)

// WebSocket opcodes (RFC 6455, 5.2) of the frames the door sends.
const (
	opText  = 0x1
	opClose = 0x8
	opPong  = 0xA
)

// appendFrame appends one unfragmented, unmasked frame: what a server
// sends. The door encodes its frames itself, not through gorilla/websocket,
// so that one event's frame is built once for every connection and a batch
// of frames leaves in one writev, as an SSE chunk does.
func appendFrame(b []byte, op byte, payload []byte) []byte {
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

// textFrame is payload as a text frame.
func textFrame(payload []byte) []byte {
	return appendFrame(make([]byte, 0, len(payload)+10), opText, payload)
}

// frameConn is the connection as gorilla/websocket sees it, for reading
// and for the few frames gorilla writes itself (a close after a protocol
// error). Two things differ from the TCP connection under it:
//
//   - Reads never go past the end of the frame being read. gorilla reads
//     through a buffer; were it to hold the start of the next message,
//     the poller, which watches the socket, would not know there is one.
//     So after a message, everything not yet read is still in the kernel.
//   - Writes take mu, which the door's writer holds for its own writes,
//     so a frame gorilla writes never lands inside one of ours.
type frameConn struct {
	net.Conn
	mu *sync.Mutex

	// Where the reader is in the current frame; the reader's own.
	hdr  [14]byte
	have int    // header bytes read
	need int    // header bytes the frame has (2 until the second byte is read)
	left uint64 // payload bytes not yet read, once the header is complete
}

func (f *frameConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Conn.Write(p)
}

// Read reads at most up to the next frame boundary, and never more than
// the header field it is in: a frame's first two bytes, then the rest of
// its header, then its payload.
func (f *frameConn) Read(p []byte) (int, error) {
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
