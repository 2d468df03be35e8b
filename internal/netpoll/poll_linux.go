package netpoll

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrUnsupported is Watch's answer for a connection it cannot watch: not a
// plain TCP connection (TLS, a pipe), or not on Linux.
var ErrUnsupported = errors.New("netpoll: only TCP connections on Linux can be watched")

// Poller watches connections for something to read.
type Poller struct {
	epfd   int
	wakeFd int // an eventfd that ends wait on Close

	mu      sync.Mutex
	watches map[uint64]*Watch
	next    uint64
	closed  bool
	done    chan struct{}
}

// Watch is one connection's registration.
type Watch struct {
	p     *Poller
	id    uint64
	rc    syscall.RawConn
	ready func()
	added bool // in the epoll set; Arm's own
}

const events = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// New starts a poller and its goroutine.
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	wakeFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: eventfd: %w", err)
	}
	// id 0 is the eventfd; watches count from 1.
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakeFd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(wakeFd)
		unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: epoll_ctl: %w", err)
	}
	p := &Poller{epfd: epfd, wakeFd: wakeFd, watches: map[uint64]*Watch{}, done: make(chan struct{})}
	go p.wait()
	return p, nil
}

// Watch prepares to call ready, from the poller's goroutine, when nc has
// something to read: bytes, the client's FIN, or an error. ready must not
// block. Nothing happens until Arm, so the caller can keep the watch where
// ready will look for it first. Call Stop before closing nc.
func (p *Poller) Watch(nc net.Conn, ready func()) (*Watch, error) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil, ErrUnsupported
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, net.ErrClosed
	}
	p.next++
	w := &Watch{p: p, id: p.next, rc: rc, ready: ready}
	p.watches[w.id] = w
	p.mu.Unlock()
	return w, nil
}

// Arm asks for one ready: the first, or the next once the owner has read
// what there was. If there is something to read already, ready comes at
// once. Call it from one goroutine at a time (the one that got ready).
func (w *Watch) Arm() error {
	// The ready this asks for runs under p.mu: taking it here orders
	// everything the owner did before Arm before that ready.
	w.p.mu.Lock()
	w.p.mu.Unlock()
	if w.added {
		return w.ctl(unix.EPOLL_CTL_MOD)
	}
	w.added = true
	return w.ctl(unix.EPOLL_CTL_ADD)
}

// Stop ends the watch: when it returns, ready is not running and will not
// run again. It is safe to call more than once, and after nc is closed.
func (w *Watch) Stop() {
	_ = w.rc.Control(func(fd uintptr) {
		_ = unix.EpollCtl(w.p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	w.p.forget(w)
}

func (w *Watch) ctl(op int) error {
	var err error
	cerr := w.rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: events, Fd: int32(w.id), Pad: int32(w.id >> 32)}
		err = unix.EpollCtl(w.p.epfd, op, int(fd), &ev)
	})
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("netpoll: epoll_ctl: %w", err)
	}
	return nil
}

func (p *Poller) forget(w *Watch) {
	p.mu.Lock()
	delete(p.watches, w.id)
	p.mu.Unlock()
}

// wait runs ready for every connection that became readable, until Close.
func (p *Poller) wait() {
	defer close(p.done)
	evs := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, evs, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		for _, ev := range evs[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			// Under the lock, so that Stop waits for a ready in progress.
			if w := p.watches[id]; w != nil {
				w.ready()
			}
		}
		p.mu.Unlock()
	}
}

// Close stops the poller's goroutine. Watches already made stay with
// their owners, who stop them as they close their connections.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	var one = [8]byte{1}
	if _, err := unix.Write(p.wakeFd, one[:]); err != nil {
		return err
	}
	<-p.done
	unix.Close(p.wakeFd)
	return unix.Close(p.epfd)
}
