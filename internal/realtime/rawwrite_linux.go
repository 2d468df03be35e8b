package realtime

import (
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawWriter writes to a connection's socket without waiting: one writev of
// what the socket takes now. Its fields are reused from write to write, so
// that a write allocates nothing.
type rawWriter struct {
	rc  syscall.RawConn // nil: the connection has no socket of its own (TLS)
	fn  func(fd uintptr) bool
	iov [][]byte
	n   int
}

// maxIovecs is the most buffers one writev takes (IOV_MAX).
const maxIovecs = 1024

func (w *rawWriter) init(conn net.Conn) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	w.rc = rc
	w.fn = w.writev
}

// write writes what the socket takes of bufs now, consumes it, and returns
// how much that was. An error is left for the waiting write to meet.
func (w *rawWriter) write(bufs *net.Buffers) int64 {
	if w.rc == nil || len(*bufs) > maxIovecs {
		return 0
	}
	w.iov, w.n = *bufs, 0
	if err := w.rc.Write(w.fn); err != nil || w.n <= 0 {
		w.iov = nil
		return 0
	}
	w.iov = nil
	consume(bufs, int64(w.n))
	return int64(w.n)
}

// iovecs lends writev its iovec arrays. unix.Writev allocates one for
// more than eight buffers on every write, which a batched stream always
// has; one kept per connection would stay with it while idle.
var iovecs = sync.Pool{New: func() any { return new([maxIovecs]unix.Iovec) }}

// writev is the RawConn's callback: true, never wait for the socket.
func (w *rawWriter) writev(fd uintptr) bool {
	iov := iovecs.Get().(*[maxIovecs]unix.Iovec)
	n := 0
	for _, b := range w.iov {
		if len(b) > 0 {
			iov[n].Base = &b[0]
			iov[n].SetLen(len(b))
			n++
		}
	}
	w.n = 0
	for n > 0 {
		r, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			w.n = -1
		} else {
			w.n = int(r)
		}
		break
	}
	clear(iov[:n]) // hold no frame past the write
	iovecs.Put(iov)
	return true
}
