package realtime

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// ListenerAppName is the application_name of the LISTEN connection, so an
// operator (or a fault test) can find it in pg_stat_activity.
const ListenerAppName = "hybridrt-listener"

// maxBackoff caps the wait between reconnection attempts. It is short so
// that live delivery (and readiness) come back within about a second of the
// database (TESTPLAN F3: readiness flips within 3 s): one refused attempt a
// second per instance costs PostgreSQL nothing worth saving.
const maxBackoff = time.Second

// probeTimeout is how long a self-probe notification may take to come back.
const probeTimeout = 5 * time.Second

// queryTimeout bounds the listener's reads: a path that goes silent in the
// middle of one (blackholed, no RST) must not hold the listener forever,
// out of reach of its self-probe.
const queryTimeout = 5 * time.Second

// errNoNotifications is a LISTEN connection that does not receive what is
// notified: typically a pooler in transaction mode between us and PostgreSQL.
var errNoNotifications = errors.New("realtime: LISTEN receives no notifications on this connection: " +
	"if DATABASE_URL points at a pooler in transaction mode (such as pgbouncer), point it at PostgreSQL " +
	"or at a session-mode pool; LISTEN needs a session of its own")

// errStandby is a LISTEN refused because the database is a standby in
// recovery (after a failover, or a DATABASE_URL naming a replica).
var errStandby = errors.New("realtime: the database is a read-only standby, where LISTEN is impossible: " +
	"point DATABASE_URL at the primary (after a failover, at the promoted server)")

// Listen holds one dedicated connection in LISTEN and feeds the hub until ctx
// ends. It reconnects with jittered backoff from 100 ms to maxBackoff; after
// every (re)connect it catches up every room from the store and wakes every
// stream, because notifications sent while it was away are lost.
func (h *Hub) Listen(ctx context.Context, databaseURL string, log *slog.Logger) error {
	// Parsed as the pool parses it, which takes the pool's own settings
	// (pool_max_conns and friends) out: sent to PostgreSQL as run-time
	// parameters they would make it refuse the connection.
	pcfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("realtime: listener config: %w", err)
	}
	cfg := pcfg.ConnConfig
	cfg.RuntimeParams["application_name"] = ListenerAppName
	// Interrupt a wait by a socket deadline, not a cancel request: a poke
	// then costs nothing and leaves the connection usable.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}

	backoff := 100 * time.Millisecond
	for {
		err := h.listenOnce(ctx, cfg, log)
		h.listening.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		listenerReconnects.Inc()
		wait := backoff/2 + rand.N(backoff/2+1)
		log.Warn("realtime: listener lost its connection; reconnecting", "err", err, "retry_in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
		if err == nil { // it had been connected: start the backoff over
			backoff = 100 * time.Millisecond
		}
	}
}

// listenOnce serves one connection. It returns nil after having been
// connected, or the error that kept it from connecting.
func (h *Hub) listenOnce(ctx context.Context, cfg *pgx.ConnConfig, log *slog.Logger) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	lctx, cancel := context.WithTimeout(ctx, queryTimeout)
	_, err = conn.Exec(lctx, "LISTEN "+notifyChannel)
	cancel()
	if err != nil {
		if e, ok := errors.AsType[*pgconn.PgError](err); ok && e.Code == "25006" {
			err = fmt.Errorf("%w (%w)", errStandby, err)
			log.Error("realtime: the database refuses LISTEN; live delivery is paused", "err", err)
		}
		return err
	}
	for _, n := range h.notified {
		lctx, cancel := context.WithTimeout(ctx, queryTimeout)
		_, err = conn.Exec(lctx, "LISTEN "+pgx.Identifier{n.Channel}.Sanitize())
		cancel()
		if err != nil {
			return err
		}
	}
	// Prove that notifications reach this connection before relying on it.
	if err := h.probe(ctx, conn); err != nil {
		log.Error("realtime: the listener's self-probe failed; live delivery is paused", "err", err)
		return err
	}

	// Catch up: every event committed up to now is in the store; every one
	// committed from now on will be notified.
	for _, r := range h.allRooms() {
		if err := h.catchUp(ctx, conn, r); err != nil {
			return err
		}
	}
	h.takePending() // all rooms were just caught up
	h.listening.Store(true)
	h.wakeAll()
	for _, n := range h.notified {
		if n.Reconnected != nil {
			n.Reconnected()
		}
	}
	log.Info("realtime: listener connected")

	lastDrop := time.Now()
	for {
		if time.Since(lastDrop) > time.Minute {
			h.dropIdle(time.Now())
			lastDrop = time.Now()
		}
		for _, r := range h.takePending() {
			if err := h.catchUp(ctx, conn, r); err != nil {
				log.Warn("realtime: listener failed", "err", err)
				return nil
			}
		}
		wctx, cancel := context.WithTimeout(ctx, h.ProbeEvery)
		h.poke.Store(&cancel)
		if h.hasPending() { // a room created just before the poke was armed
			cancel()
		}
		n, err := conn.WaitForNotification(wctx)
		h.poke.Store(nil)
		why := wctx.Err() // before cancel, which would make it Canceled
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && errors.Is(why, context.Canceled):
			continue // poked: a new room to position
		case err != nil && errors.Is(why, context.DeadlineExceeded):
			// Quiet for ProbeEvery: make sure the connection still carries
			// notifications (a ping would not notice a path that drops them).
			if err := h.probe(ctx, conn); err != nil {
				log.Warn("realtime: listener connection failed its self-probe; reconnecting", "err", err)
				return nil
			}
			continue
		case err != nil:
			log.Warn("realtime: listener failed", "err", err)
			return nil
		}
		if err := h.handle(ctx, conn, drain(ctx, conn, n)...); err != nil {
			log.Warn("realtime: listener failed", "err", err)
			return nil
		}
	}
}

// drain returns first and every notification that has arrived since,
// without waiting: at thousands of commits a second they queue up while the
// listener reads, and one read per tenant then serves them all.
func drain(ctx context.Context, conn *pgx.Conn, first *pgconn.Notification) []*pgconn.Notification {
	notes := []*pgconn.Notification{first}
	done, cancel := context.WithCancel(ctx)
	cancel() // a done context returns queued notifications, and never waits
	for len(notes) < 1000 {
		n, err := conn.WaitForNotification(done)
		if err != nil {
			break
		}
		notes = append(notes, n)
	}
	return notes
}

// Notified is a door's use of the listener's connection: notifications on
// Channel go to Handle, and Reconnected is called after every (re)connect,
// since notifications sent while the listener was away are lost. Both run
// on the listener's goroutine and must not block: hand the work to your own.
type Notified struct {
	Channel     string
	Handle      func(payload string)
	Reconnected func()
}

// AlsoListen adds a door's notification channel to the listener. Call it
// before Listen: an instance holds one LISTEN connection, whoever needs it.
func (h *Hub) AlsoListen(n Notified) {
	h.notified = append(h.notified, n)
}

// probe notifies this connection's own channel and waits, at most
// probeTimeout, for the notification to come back, handling the events that
// arrive meanwhile as usual.
func (h *Hub) probe(ctx context.Context, conn *pgx.Conn) error {
	var b [8]byte
	_, _ = crand.Read(b[:])
	token := "probe:" + hex.EncodeToString(b[:])
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if _, err := conn.Exec(pctx, `SELECT pg_notify($1, $2)`, notifyChannel, token); err != nil {
		return fmt.Errorf("realtime: send self-probe: %w", err)
	}
	for {
		n, err := conn.WaitForNotification(pctx)
		if err != nil {
			if pctx.Err() != nil && ctx.Err() == nil && conn.PgConn().IsClosed() == false {
				return errNoNotifications
			}
			return err
		}
		if n.Payload == token {
			return nil
		}
		if err := h.handle(ctx, conn, n); err != nil {
			return err
		}
	}
}

// catchUp brings a room up to the store's head: a new room starts there, a
// known one reads what it missed.
func (h *Hub) catchUp(ctx context.Context, conn *pgx.Conn, r *room) error {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	pos, err := position(qctx, conn, r.tenantID)
	if errors.Is(err, tenant.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	r.mu.RLock()
	ready, last := r.ready, r.last
	r.mu.RUnlock()
	if !ready {
		r.position(pos.Head)
		r.wakeAllSubs()
		return nil
	}
	return readInto(ctx, conn, r, last, pos.Head)
}

// readPage is how many ids the listener reads at a time, each read with its
// own deadline: a catch-up after a long outage may be far behind.
const readPage = 1000

// readInto reads a room's events after have up to upTo into the room.
func readInto(ctx context.Context, conn *pgx.Conn, r *room, have, upTo int64) error {
	for have < upTo {
		to := min(upTo, have+readPage) // ids are gapless: at most readPage events
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		evs, err := readRange(qctx, conn, r.tenantID, have, to)
		cancel()
		if err != nil {
			return err
		}
		r.ingest(evs)
		have = to
	}
	return nil
}

// handle reads the events that notifications announce into their rooms,
// one read per tenant. It reads from the room's last id, not a
// notification's first, so a notification lost or reordered leaves no gap.
func (h *Hub) handle(ctx context.Context, conn *pgx.Conn, notes ...*pgconn.Notification) error {
	newest := map[tenant.ID]int64{}
	var order []tenant.ID // tenants in the order first notified
	for _, n := range notes {
		if n.Channel != notifyChannel {
			for _, d := range h.notified {
				if d.Channel == n.Channel {
					d.Handle(n.Payload)
				}
			}
			continue
		}
		tenantID, _, last, ok := parseNotification(n.Payload)
		if !ok {
			continue // a self-probe's token
		}
		if have, seen := newest[tenantID]; !seen {
			order = append(order, tenantID)
		} else if have > last {
			continue
		}
		newest[tenantID] = last
	}
	for _, tenantID := range order {
		r := h.room(tenantID)
		if r == nil {
			continue // no subscriber on this instance
		}
		r.mu.RLock()
		ready, have := r.ready, r.last
		r.mu.RUnlock()
		if !ready || newest[tenantID] <= have {
			continue
		}
		if err := readInto(ctx, conn, r, have, newest[tenantID]); err != nil {
			return err
		}
	}
	return nil
}

func parseNotification(p string) (tenant.ID, int64, int64, bool) {
	parts := strings.Split(p, ":")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	t, err1 := strconv.ParseInt(parts[0], 10, 64)
	first, err2 := strconv.ParseInt(parts[1], 10, 64)
	last, err3 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, 0, false
	}
	return tenant.ID(t), first, last, true
}

func (r *room) wakeAllSubs() {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for s := range r.subs {
		s.signal()
	}
}
