//go:build !linux

package realtime

import "net"

// rawWriter writes nothing without waiting where writev is not at hand:
// every write on a writer then calls Blocking first, and runs as if each
// stream had its own goroutine.
type rawWriter struct{}

func (w *rawWriter) init(net.Conn) {}

func (w *rawWriter) write(*net.Buffers) int64 { return 0 }
