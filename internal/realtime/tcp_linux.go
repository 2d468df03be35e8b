package realtime

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// limitUnacked makes the kernel drop the connection when data it sent stays
// unacknowledged for d. A client that vanished without FIN or RST (a laptop
// closed, a NAT entry dropped) otherwise keeps a stream for the ~15 minutes
// of TCP's retransmissions: our small heartbeats fit in the send buffer, so
// no write ever blocks long enough for the write deadline to fire.
func limitUnacked(nc net.Conn, d time.Duration) {
	if tlsConn, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = tlsConn.NetConn() // HTTPS (TLS_CERT_FILE): the TCP connection under the TLS one
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
}
