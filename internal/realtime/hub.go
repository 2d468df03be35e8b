package realtime

import (
	"context"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hybridrt/hybridrt/internal/netpoll"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// DefaultRingSize is how many recent events the hub keeps per tenant: about a
// second at 15,000 events/s, so a stream that waits its turn on a busy CPU
// still finds its events in memory rather than in the store.
const DefaultRingSize = 16384

// maxRingBytes bounds a ring's memory whatever the events' size: 4096
// events of 64 KiB would otherwise hold 256 MiB per tenant.
const maxRingBytes = 8 << 20

// Hub holds, per tenant with subscribers on this instance, a ring of recent
// events and the set of subscriptions to wake when new ones arrive. The
// listener is the only writer of rings; streams read them by cursor.
type Hub struct {
	store    *Store
	ringSize int

	// ProbeEvery is how long the listener may go without a notification
	// before it sends itself one, to prove its connection still carries them:
	// a silently dead connection is noticed within ProbeEvery + 5 s.
	ProbeEvery time.Duration

	// Meter, when set before the hub serves, counts what is delivered to
	// each tenant's subscribers, on every door (ObserveDelivery).
	Meter Meter

	mu      sync.Mutex
	rooms   map[tenant.ID]*room
	pending []*room // rooms the listener has not yet positioned

	notified []Notified // doors' notification channels on the listener's connection

	pollOnce sync.Once
	poller   *netpoll.Poller // nil where it cannot run: streams then read in goroutines of their own

	poke      atomic.Pointer[context.CancelFunc] // interrupts the listener's wait
	listening atomic.Bool
	done      chan struct{}
	closeOnce sync.Once
	streams   sync.WaitGroup // streams on hijacked connections, which http.Server.Shutdown cannot wait for
}

// room is one tenant's state on this instance.
type room struct {
	tenantID tenant.ID

	mu    sync.RWMutex
	ready bool     // last has been set from the database by the listener
	last  int64    // the highest id ingested; the ring holds (last-n, last]
	ring  []*Event // circular, len ringSize
	start int      // index of the oldest event
	n     int
	bytes int // sum of the ring's frame sizes

	subs      map[*Subscription]struct{}
	idleSince time.Time

	// Wake-ups, at most one per wakeGap while events keep coming.
	lastWake time.Time
	deferred map[string]bool // channels touched since lastWake, when a wake is due; nil when none is
}

// wakeGap is the least time between two wake-ups of a room's n
// subscribers while its events keep coming. Most of what an event costs a
// stream is the write to its socket (7 to 10 µs of system call on loopback,
// whatever the write holds), so a room woken for every group commit under
// heavy publishing spends its instance's CPU in writes. The gap grows with
// the room, by wakeGapPerSubscriber, so that a room's wake-ups cost at most
// about a tenth of a core in writes, up to maxWakeGap; a room too big even
// for that is batched by the writers anyway (a stream still waiting for a
// writer takes every event that came meanwhile in one write). The first
// event after a quiet spell wakes at once; only events that follow within
// the gap wait, for at most the gap, and go out together. See
// docs/benchmarks.md for the figures that chose it.
func wakeGap(n int) time.Duration {
	return min(time.Duration(n)*wakeGapPerSubscriber, maxWakeGap)
}

const (
	wakeGapPerSubscriber = 100 * time.Microsecond
	maxWakeGap           = 10 * time.Millisecond
)

// Subscription is one stream's registration with the hub: a wake-up channel
// of capacity one, and the channels it wants.
type Subscription struct {
	room     *room
	hub      *Hub
	all      bool // every channel of the tenant (the console's event log)
	channels map[string]bool
	list     []string // nil when all
	wake     chan struct{}
	notify   func() // instead of wake, when set (SubscribeFunc)

	// BeforeBlock, when set, is called before After reads the store: a
	// stream's Runner.Blocking, so that the read does not hold a writer.
	BeforeBlock func()
}

// wants reports whether the subscription reads channel c.
func (s *Subscription) wants(c string) bool {
	if s.all {
		return true
	}
	if s.channels != nil {
		return s.channels[c]
	}
	return slices.Contains(s.list, c)
}

// NewHub returns a hub that reads missing history from store.
func NewHub(store *Store, ringSize int) *Hub {
	if ringSize <= 0 {
		ringSize = DefaultRingSize
	}
	return &Hub{store: store, ringSize: ringSize, ProbeEvery: 15 * time.Second, rooms: map[tenant.ID]*room{}, done: make(chan struct{})}
}

// Done is closed when the hub shuts down; streams end on it.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Close ends every stream, so http.Server.Shutdown does not wait on them:
// it closes Done, and wakes every subscription to see it.
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		close(h.done)
		h.wakeAll()
		h.pollOnce.Do(func() {}) // no poller starts after this
		if h.poller != nil {
			_ = h.poller.Close()
		}
	})
}

// Watch calls ready when the client on nc sends something or leaves, so a
// stream learns it without a goroutine blocked in Read (see package
// netpoll). It fails with netpoll.ErrUnsupported where that cannot be done
// (TLS, not Linux); the stream then reads in a goroutine of its own.
func (h *Hub) Watch(nc net.Conn, ready func()) (*netpoll.Watch, error) {
	h.pollOnce.Do(func() {
		p, err := netpoll.New()
		if err == nil {
			h.poller = p
		}
	})
	if h.poller == nil {
		return nil, netpoll.ErrUnsupported
	}
	return h.poller.Watch(nc, ready)
}

// WaitStreams waits, after Close, until every stream on a hijacked
// connection has sent its last frame and closed, or ctx ends.
func (h *Hub) WaitStreams(ctx context.Context) error {
	done := make(chan struct{})
	go func() { h.streams.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Hold counts a stream on a hijacked connection (another door's), which
// WaitStreams waits for; call the function it returns when the stream ends.
func (h *Hub) Hold() (release func()) {
	h.streams.Add(1)
	var once sync.Once
	return func() { once.Do(h.streams.Done) }
}

// Last returns the id up to which this instance has read tenantID's events,
// if it keeps them: a cheap "now" for a connection that starts from now.
func (h *Hub) Last(tenantID tenant.ID) (int64, bool) {
	r := h.room(tenantID)
	if r == nil {
		return 0, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.last, r.ready
}

// Listening reports whether the listener holds a live LISTEN connection.
func (h *Hub) Listening() bool { return h.listening.Load() }

// Subscribe registers interest in tenantID's channels. Subscribe before the
// first read, so an event committed between the read and the wait still
// wakes the stream.
func (h *Hub) Subscribe(tenantID tenant.ID, channels []string) *Subscription {
	s := &Subscription{hub: h, wake: make(chan struct{}, 1)}
	s.channels, s.list = channelSet(channels)
	return h.join(tenantID, s)
}

// setAbove is the number of channels above which a subscription looks
// channels up in a set rather than its list: most streams have one or two,
// which a scan of the list finds faster than a map, and without the map's
// memory.
const setAbove = 8

// channelSet is channels as a subscription holds them: a list that is never
// nil (a nil list reads every channel from the store), and a set when there
// are more than setAbove.
func channelSet(channels []string) (map[string]bool, []string) {
	list := append([]string{}, channels...)
	if len(channels) <= setAbove {
		return nil, list
	}
	m := make(map[string]bool, len(channels))
	for _, c := range channels {
		m[c] = true
	}
	return m, list
}

// SubscribeFunc is Subscribe for a stream that is not a goroutine waiting
// on Wake: notify is called instead, from the hub's own goroutines, and
// must not block. A door whose idle connections hold no goroutine uses it.
func (h *Hub) SubscribeFunc(tenantID tenant.ID, channels []string, notify func()) *Subscription {
	s := &Subscription{hub: h, notify: notify}
	s.channels, s.list = channelSet(channels)
	return h.join(tenantID, s)
}

// SubscribeAll registers interest in every channel of tenantID, for the
// console's event log. Authorisation is the caller's: it bypasses channel rules.
func (h *Hub) SubscribeAll(tenantID tenant.ID) *Subscription {
	return h.join(tenantID, &Subscription{hub: h, all: true, wake: make(chan struct{}, 1)})
}

func (h *Hub) join(tenantID tenant.ID, s *Subscription) *Subscription {
	h.mu.Lock()
	r, ok := h.rooms[tenantID]
	if !ok {
		r = &room{tenantID: tenantID, ring: make([]*Event, h.ringSize), subs: map[*Subscription]struct{}{}}
		h.rooms[tenantID] = r
		h.pending = append(h.pending, r)
	}
	s.room = r
	// Join the room before releasing h.mu, so dropIdle cannot remove the
	// room between our choosing it and joining it.
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	h.mu.Unlock()
	if !ok {
		h.pokeListener()
	}
	return s
}

// Set replaces the subscription's channels, for a connection that subscribes
// and unsubscribes as it goes (a WebSocket). Events already read are not
// read again; the caller decides from which id a new channel's events count.
// Call it from the goroutine that calls After.
func (s *Subscription) Set(channels []string) {
	m, list := channelSet(channels)
	r := s.room
	r.mu.Lock()
	s.channels, s.list = m, list
	r.mu.Unlock()
}

// Wake returns the channel that receives a value when new events may match.
func (s *Subscription) Wake() <-chan struct{} { return s.wake }

// Close removes the subscription from the hub.
func (s *Subscription) Close() {
	r := s.room
	r.mu.Lock()
	delete(r.subs, s)
	if len(r.subs) == 0 {
		r.idleSince = time.Now()
	}
	r.mu.Unlock()
}

func (h *Hub) pokeListener() {
	if cancel := h.poke.Load(); cancel != nil {
		(*cancel)()
	}
}

// After returns up to limit events after cursor on the subscription's
// channels, from the ring when it reaches back far enough, else from the
// store and then the ring, and the id up to which it looked: the next
// cursor, even when no event matched. It never returns an event twice for
// rising cursors.
func (s *Subscription) After(ctx context.Context, cursor int64, limit int) ([]*Event, int64, error) {
	r := s.room
	var out []*Event
	for {
		r.mu.RLock()
		if r.ready && cursor >= r.last-int64(r.n) {
			evs, scanned := r.scan(s, cursor, limit-len(out))
			r.mu.RUnlock()
			return append(out, evs...), scanned, nil
		}
		ready, floor := r.ready, r.last-int64(r.n)
		r.mu.RUnlock()

		// The store, rarely read, with a deadline of its own: the ring, read
		// most of the time, needs no context at all.
		evs, upTo, err := s.readStore(ctx, ready, floor, cursor, limit-len(out))
		if err != nil || cursor >= upTo {
			return out, cursor, err
		}
		out = append(out, evs...)
		if len(out) == limit {
			return out, evs[len(evs)-1].ID, nil
		}
		cursor = upTo
		if !ready {
			return out, cursor, nil
		}
		// Caught up to the ring's floor: go on with the ring now, rather
		// than wait for a wake-up. The events already in the ring woke
		// their subscribers before this one joined, and may be all there is.
	}
}

// readStore reads up to limit events after cursor from the store, up to
// the ring's floor, or the store's head when the ring is not ready, and
// returns where it read up to.
func (s *Subscription) readStore(ctx context.Context, ready bool, floor, cursor int64, limit int) ([]*Event, int64, error) {
	if s.BeforeBlock != nil {
		s.BeforeBlock()
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	upTo := floor // events above the ring's floor are the ring's to serve
	if !ready {
		pos, err := s.hub.store.Position(ctx, s.room.tenantID)
		if err != nil {
			return nil, cursor, err
		}
		upTo = pos.Head
	}
	if cursor >= upTo {
		return nil, upTo, nil
	}
	evs, err := s.hub.store.ReadChannels(ctx, s.room.tenantID, s.list, cursor, upTo, limit)
	return evs, upTo, err
}

// scan reads the ring after cursor; r.mu is held for reading.
func (r *room) scan(s *Subscription, cursor int64, limit int) ([]*Event, int64) {
	var evs []*Event
	first := r.last - int64(r.n) + 1
	for id := max(cursor+1, first); id <= r.last; id++ {
		e := r.ring[(r.start+int(id-first))%len(r.ring)]
		if s.wants(e.Channel) {
			evs = append(evs, e)
			if len(evs) == limit {
				return evs, id
			}
		}
	}
	return evs, max(cursor, r.last)
}

// room returns tenantID's room, or nil.
func (h *Hub) room(tenantID tenant.ID) *room {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[tenantID]
}

// takePending returns the rooms created since the last call.
func (h *Hub) takePending() []*room {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pending
	h.pending = nil
	return p
}

func (h *Hub) hasPending() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.pending) > 0
}

// allRooms returns every room.
func (h *Hub) allRooms() []*room {
	h.mu.Lock()
	defer h.mu.Unlock()
	rooms := make([]*room, 0, len(h.rooms))
	for _, r := range h.rooms {
		rooms = append(rooms, r)
	}
	return rooms
}

// position sets the room's starting point, once the listener is listening:
// every event up to head is in the store, and every later one will be notified.
func (r *room) position(head int64) {
	r.mu.Lock()
	clear(r.ring)
	r.last, r.n, r.start, r.bytes, r.ready = head, 0, 0, 0, true
	r.mu.Unlock()
}

// ingest appends events, which follow r.last without a gap, and wakes the
// subscriptions whose channels they touch. It never blocks on a subscriber.
func (r *room) ingest(evs []*Event) {
	if len(evs) == 0 {
		return
	}
	r.mu.Lock()
	touched := r.append(evs)
	touched = r.due(touched)
	r.mu.Unlock()
	r.wake(touched)
}

// offer gives the room events this instance has just committed, ahead of
// their notification, and reports whether it took them: only when they
// follow the room's last id. Events of other instances committed in
// between come first, and then these come again with the notification.
func (r *room) offer(evs []*Event) bool {
	r.mu.Lock()
	if !r.ready || len(evs) == 0 || evs[0].ID != r.last+1 {
		r.mu.Unlock()
		return false
	}
	touched := r.append(evs)
	touched = r.due(touched)
	r.mu.Unlock()
	r.wake(touched)
	return true
}

// due returns the channels to wake now: touched, unless the room woke its
// subscribers less than wakeGap ago; then they are kept for a wake-up at
// the end of the gap, and due returns none. r.mu is held.
func (r *room) due(touched map[string]bool) map[string]bool {
	if len(touched) == 0 {
		return nil
	}
	if r.deferred != nil {
		maps.Copy(r.deferred, touched)
		return nil
	}
	now := time.Now()
	if wait := r.lastWake.Add(wakeGap(len(r.subs))).Sub(now); wait > 0 {
		r.deferred = touched
		time.AfterFunc(wait, r.wakeDeferred)
		return nil
	}
	r.lastWake = now
	return touched
}

// wakeDeferred wakes the subscriptions of the channels due kept.
func (r *room) wakeDeferred() {
	r.mu.Lock()
	touched := r.deferred
	r.deferred = nil
	r.lastWake = time.Now()
	r.mu.Unlock()
	r.wake(touched)
}

// append adds events to the ring and returns the channels they touch.
// r.mu is held.
func (r *room) append(evs []*Event) map[string]bool {
	touched := make(map[string]bool, 4)
	for _, e := range evs {
		if e.ID <= r.last {
			continue // already have it
		}
		if e.ID != r.last+1 {
			// A gap the listener failed to fill: restart the ring here, and
			// streams behind it read the store.
			clear(r.ring)
			r.n, r.start, r.bytes = 0, 0, 0
		}
		// Evict the oldest events until this one fits by count and by size.
		for r.n > 0 && (r.n == len(r.ring) || r.bytes+len(e.Frame) > maxRingBytes) {
			r.bytes -= len(r.ring[r.start].Frame)
			r.ring[r.start] = nil
			r.start = (r.start + 1) % len(r.ring)
			r.n--
		}
		r.ring[(r.start+r.n)%len(r.ring)] = e
		r.n++
		r.bytes += len(e.Frame)
		r.last = e.ID
		touched[e.Channel] = true
	}
	return touched
}

// wake signals the subscriptions that read any of channels. It takes the
// read lock only: sends never block, and readers (streams calling After)
// are not held up.
func (r *room) wake(channels map[string]bool) {
	if len(channels) == 0 {
		return
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for s := range r.subs {
		for c := range channels {
			if s.wants(c) {
				s.signal()
				break
			}
		}
	}
}

// offer hands the hub events this instance's publisher has just committed,
// in id order, one tenant's: its subscribers get them without waiting for
// the notification and the read after it. See room.offer.
func (h *Hub) offer(tenantID tenant.ID, evs []*Event) {
	if r := h.room(tenantID); r != nil {
		r.offer(evs)
	}
}

// signal wakes s without blocking: a full channel already holds a wake-up,
// which is all the subscriber needs.
func (s *Subscription) signal() {
	if s.notify != nil {
		s.notify()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wakeAll wakes every subscription, after a reconnect may have lost notifications.
func (h *Hub) wakeAll() {
	for _, r := range h.allRooms() {
		r.mu.RLock()
		for s := range r.subs {
			s.signal()
		}
		r.mu.RUnlock()
	}
}

// dropIdle forgets rooms that have had no subscriber for a minute.
func (h *Hub) dropIdle(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, r := range h.rooms {
		r.mu.RLock()
		idle := len(r.subs) == 0 && now.Sub(r.idleSince) > time.Minute
		r.mu.RUnlock()
		if idle {
			delete(h.rooms, id)
		}
	}
}
