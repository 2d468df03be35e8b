package realtime

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLimitUnacked: a hijacked stream's socket gets TCP_USER_TIMEOUT, so the
// kernel drops a peer that stopped acknowledging; over HTTPS the hijacked
// connection is a *tls.Conn, and the option goes on the TCP one under it.
func TestLimitUnacked(t *testing.T) {
	for _, tt := range []struct {
		name string
		wrap func(net.Conn) net.Conn
	}{
		{"tcp", func(c net.Conn) net.Conn { return c }},
		{"tls", func(c net.Conn) net.Conn { return tls.Client(c, &tls.Config{}) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			limitUnacked(tt.wrap(c), 7*time.Second)
			raw, err := c.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var got int
			var gerr error
			if err := raw.Control(func(fd uintptr) {
				got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
			}); err != nil || gerr != nil {
				t.Fatal(err, gerr)
			}
			if got != 7000 {
				t.Errorf("TCP_USER_TIMEOUT = %d ms, want 7000", got)
			}
		})
	}
}
