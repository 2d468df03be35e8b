package wsconn

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hybridrt/hybridrt/internal/realtime"
)

// TestFramesReadByGorilla: the frames the door encodes itself are what a
// WebSocket client reads, at every length encoding.
func TestFramesReadByGorilla(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 65535, 65536, 70000}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := websocket.Upgrader{}
		ws, err := u.Upgrade(Hijacker{w}, r, nil)
		if err != nil {
			return
		}
		fc := ws.NetConn().(*Conn)
		var frames [][]byte
		for _, n := range sizes {
			frames = append(frames, Text(bytes.Repeat([]byte("x"), n)))
		}
		frames = append(frames, AppendFrame(nil, OpClose, websocket.FormatCloseMessage(4200, "bye")))
		fw := NewWriter(fc)
		// Written as a connection's step does, on a writer: what the
		// socket does not take at once is written after Blocking.
		var runner realtime.Runner
		done := make(chan struct{})
		runner.Step = func() bool {
			if err := fw.Write(&runner, 5*time.Second, frames...); err != nil {
				t.Error(err)
			}
			close(done)
			return false
		}
		runner.Poke()
		<-done
	}))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for _, n := range sizes {
		typ, data, err := ws.ReadMessage()
		if err != nil || typ != websocket.TextMessage || len(data) != n {
			t.Fatalf("message of %d bytes: got type %d, %d bytes, %v", n, typ, len(data), err)
		}
	}
	_, _, err = ws.ReadMessage()
	if !websocket.IsCloseError(err, 4200) {
		t.Fatalf("after the messages: %v, want close 4200", err)
	}
}

// TestFrameConnStopsAtMessageEnd: when the client sent several messages at
// once, reading one leaves the others in the socket, whole, for the poller
// to see, however the bytes are split in frames and reads.
func TestFrameConnStopsAtMessageEnd(t *testing.T) {
	messages := []string{`{"event":"a"}`, strings.Repeat("y", 300), strings.Repeat("z", 70000), "last"}
	var wg sync.WaitGroup
	wg.Add(1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer wg.Done()
		u := websocket.Upgrader{ReadBufferSize: 256}
		ws, err := u.Upgrade(Hijacker{w}, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer ws.Close()
		fc := ws.NetConn().(*Conn)
		time.Sleep(300 * time.Millisecond) // every message is in the socket
		for i, want := range messages {
			_, data, err := ws.ReadMessage()
			if err != nil || string(data) != want {
				t.Errorf("message %d: %.40q…, %v", i, data, err)
				return
			}
			if fc.have != 0 || fc.left != 0 {
				t.Errorf("message %d: the reader stopped inside a frame (header %d bytes, %d payload bytes left)", i, fc.have, fc.left)
			}
			if i == len(messages)-1 {
				break
			}
			// The next message's first byte is still in the socket: the
			// text opcode (and FIN, unless the client split the message).
			var b [1]byte
			_ = fc.Conn.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := fc.Conn.Read(b[:]); err != nil || b[0]&0x0F != OpText {
				t.Errorf("after message %d the socket holds %#x, %v; want the next message's first byte", i, b[0], err)
				return
			}
			// Put it back in front of the socket for the next read.
			_ = fc.Conn.SetReadDeadline(time.Time{})
			fc.Conn = &prefixed{Conn: fc.Conn, b: []byte{b[0]}}
		}
	}))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for _, m := range messages {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// prefixed is a connection with bytes to read before its own.
type prefixed struct {
	net.Conn
	b []byte
}

func (p *prefixed) Read(b []byte) (int, error) {
	if len(p.b) > 0 {
		n := copy(b, p.b)
		p.b = p.b[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
