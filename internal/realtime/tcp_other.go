//go:build !linux

package realtime

import (
	"net"
	"time"
)

// limitUnacked is Linux-only (TCP_USER_TIMEOUT); elsewhere a vanished client
// is noticed when a write blocks past the write deadline, or by TCP itself.
func limitUnacked(net.Conn, time.Duration) {}
