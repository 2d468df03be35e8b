//go:build !linux

package netpoll

import (
	"errors"
	"net"
)

// ErrUnsupported is Watch's answer for a connection it cannot watch: not a
// plain TCP connection (TLS, a pipe), or not on Linux.
var ErrUnsupported = errors.New("netpoll: only TCP connections on Linux can be watched")

// Poller watches nothing off Linux: every Watch is ErrUnsupported.
type Poller struct{}

// Watch is one connection's registration.
type Watch struct{}

// New returns a poller that watches nothing.
func New() (*Poller, error) { return &Poller{}, nil }

// Watch returns ErrUnsupported: the caller reads in a goroutine of its own.
func (p *Poller) Watch(net.Conn, func()) (*Watch, error) { return nil, ErrUnsupported }

// Arm does nothing.
func (w *Watch) Arm() error { return nil }

// Stop does nothing.
func (w *Watch) Stop() {}

// Close does nothing.
func (p *Poller) Close() error { return nil }
