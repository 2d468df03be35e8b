package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/limit"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

const (
	// registryFlush is how often new and closed connections are written, so
	// lists of connected clients are at most this much behind.
	registryFlush = time.Second
	// instanceBeat is how often an instance proves it is alive.
	instanceBeat = 5 * time.Second
	// InstanceDead is the heartbeat age after which an instance's
	// connections, and its share of shared limits, no longer count
	// (DESIGN: a dead instance's clients are gone within 30 s).
	InstanceDead = 20 * time.Second
)

var (
	// ErrTooManyConnections is the per-tenant connection limit reached.
	ErrTooManyConnections = errors.New("realtime: too many connections for this tenant")
	// ErrConnNotFound is a renewal for a connection that is not live.
	ErrConnNotFound = errors.New("realtime: no such connection")
)

// Conn is a live subscriber connection: an SSE stream, or a held long-poll.
type Conn struct {
	ID          string    `json:"id"`
	TenantID    tenant.ID `json:"-"`
	Subject     string    `json:"user"`
	Channels    []string  `json:"channels"`
	Transport   string    `json:"transport"`
	Instance    string    `json:"instance"`
	RemoteAddr  string    `json:"remoteAddr"`
	UserAgent   string    `json:"userAgent"`
	ConnectedAt time.Time `json:"connectedAt"`

	expires   atomic.Int64           // unix nanoseconds; renewed in place
	kid       atomic.Pointer[string] // the signing key of the latest token
	suspended context.Context        // cancelled when the tenant is suspended or deleted
}

// Expires returns when the connection's token expires.
func (c *Conn) Expires() time.Time { return time.Unix(0, c.expires.Load()) }

// Kid returns the signing key of the connection's latest token: the one it
// connected with, or the one a renewal in place brought.
func (c *Conn) Kid() string {
	if k := c.kid.Load(); k != nil {
		return *k
	}
	return ""
}

// TenantSuspended is closed when the operator suspends the connection's
// tenant, or the tenant is deleted: at once on the instance that suspends it,
// within tenant.StatusRefresh on the others. The stream or poll must then end.
func (c *Conn) TenantSuspended() <-chan struct{} { return c.suspended.Done() }

// OnTenantSuspended calls f, in a goroutine of its own, when TenantSuspended
// closes: for a stream that holds no goroutine to wait on it. stop undoes it.
func (c *Conn) OnTenantSuspended(f func()) (stop func() bool) {
	return context.AfterFunc(c.suspended, f)
}

// Registry tracks this instance's live connections and mirrors them into the
// connections table, with a heartbeat, so every instance can list every
// tenant's connections and a dead instance's vanish on their own.
type Registry struct {
	pool       *pgxpool.Pool
	status     *tenant.Status
	limits     *limit.Shared // connections per tenant, across instances
	instanceID string

	mu      sync.Mutex
	live    map[string]*Conn
	added   map[string]*Conn // not yet written
	removed map[string]bool  // not yet deleted
}

// NewRegistry returns a registry for this instance. It ends the
// connections of the tenants that status reports suspended, and counts
// every tenant's connections against its limit in limits, which holds for
// the tenant across all instances.
func NewRegistry(pool *pgxpool.Pool, status *tenant.Status, limits *limit.Shared) *Registry {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &Registry{
		pool:       pool,
		status:     status,
		limits:     limits,
		instanceID: fmt.Sprintf("%s-%s", host, hex.EncodeToString(b[:])),
		live:       map[string]*Conn{},
		added:      map[string]*Conn{},
		removed:    map[string]bool{},
	}
}

// InstanceID names this instance in connection lists.
func (g *Registry) InstanceID() string { return g.instanceID }

// NewConnID returns a fresh connection id.
func NewConnID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "c_" + hex.EncodeToString(b[:])
}

// Add registers c, or refuses it with ErrTooManyConnections when its tenant
// has max connections, counted on every instance. From then on, c's
// TenantSuspended closes when its tenant is suspended, at once if it already is
// (it may have been suspended since the request was let in).
func (g *Registry) Add(ctx context.Context, c *Conn, expires time.Time, max int) error {
	c.Instance = g.instanceID
	c.expires.Store(expires.UnixNano())
	if !g.limits.Acquire(ctx, limit.Connections(int64(c.TenantID)), max) {
		return ErrTooManyConnections
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.live[c.ID] = c
	g.added[c.ID] = c
	c.suspended = g.status.Watch(c.TenantID)
	connectionsGauge.WithLabelValues(c.Transport).Inc()
	return nil
}

// Remove unregisters connection c.
func (g *Registry) Remove(c *Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.live[c.ID]; !ok {
		return
	}
	g.status.Unwatch(c.TenantID)
	delete(g.live, c.ID)
	g.limits.Release(limit.Connections(int64(c.TenantID)))
	if _, unwritten := g.added[c.ID]; unwritten {
		delete(g.added, c.ID)
	} else {
		g.removed[c.ID] = true
	}
	connectionsGauge.WithLabelValues(c.Transport).Dec()
}

// SetChannels replaces a live connection's channels, for a connection that
// subscribes as it goes (a WebSocket). Lists and channel counts on every
// instance follow within registryFlush.
func (g *Registry) SetChannels(c *Conn, channels []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.Channels = append([]string{}, channels...)
	g.rewrite(c)
}

// SetSubject names the user of a live connection that authenticated after
// connecting (Pusher's user sign-in).
func (g *Registry) SetSubject(c *Conn, subject string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.Subject = subject
	g.rewrite(c)
}

// rewrite queues a live connection's row to be written again; g.mu is held.
func (g *Registry) rewrite(c *Conn) {
	if _, ok := g.live[c.ID]; ok {
		g.added[c.ID] = c
	}
}

// ChannelCounts returns how many connections on live instances subscribe to
// each of tenantID's channels whose name starts with prefix, as of the last
// flush of every instance (at most about a second old).
func (g *Registry) ChannelCounts(ctx context.Context, tenantID tenant.ID, prefix string) (map[string]int, error) {
	rows, err := g.pool.Query(ctx, `
		SELECT ch, count(*) FROM connections c JOIN instances i ON i.id = c.instance_id, unnest(c.channels) AS ch
		 WHERE c.tenant_id = $1 AND i.heartbeat_at > now() - make_interval(secs => $2) AND starts_with(ch, $3)
		 GROUP BY ch`, tenantID, InstanceDead.Seconds(), prefix)
	if err != nil {
		return nil, fmt.Errorf("realtime: count channel subscribers: %w", err)
	}
	counts := map[string]int{}
	var (
		ch string
		n  int
	)
	_, err = pgx.ForEachRow(rows, []any{&ch, &n}, func() error { counts[ch] = n; return nil })
	if err != nil {
		return nil, fmt.Errorf("realtime: count channel subscribers: %w", err)
	}
	return counts, nil
}

// Count returns the number of live connections on this instance.
func (g *Registry) Count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.live)
}

// Renew extends connection id to expires, signed by kid, on whichever
// instance holds it, if it belongs to tenantID and subject and allows says
// every one of its channels is still granted. It returns ErrConnNotFound
// otherwise, and ErrNotAllowed when the fresh token does not cover the
// channels.
func (g *Registry) Renew(ctx context.Context, tenantID tenant.ID, subject, id string, allows func(string) bool, expires time.Time, kid string) error {
	g.mu.Lock()
	c, local := g.live[id]
	var (
		localChannels []string
		localSubject  string
	)
	if local {
		localChannels, localSubject = c.Channels, c.Subject
	}
	g.mu.Unlock()
	if local {
		if c.TenantID != tenantID || localSubject != subject {
			return ErrConnNotFound
		}
		for _, ch := range localChannels {
			if !allows(ch) {
				return ErrNotAllowed
			}
		}
		c.expires.Store(expires.UnixNano())
		c.kid.Store(&kid)
	}
	// Write it through, for the stream when it lives on another instance.
	var channels []string
	err := g.pool.QueryRow(ctx,
		`SELECT channels FROM connections WHERE id = $1 AND tenant_id = $2 AND subject = $3`,
		id, tenantID, subject).Scan(&channels)
	if errors.Is(err, pgx.ErrNoRows) {
		if local {
			return nil // not written yet; the local stream has the new expiry
		}
		return ErrConnNotFound
	}
	if err != nil {
		return fmt.Errorf("realtime: renew connection: %w", err)
	}
	for _, ch := range channels {
		if !allows(ch) {
			return ErrNotAllowed
		}
	}
	_, err = g.pool.Exec(ctx, `UPDATE connections SET expires_at = $2, kid = $3 WHERE id = $1`, id, expires, kid)
	if err != nil {
		return fmt.Errorf("realtime: renew connection: %w", err)
	}
	return nil
}

// ErrNotAllowed is a channel the token does not grant.
var ErrNotAllowed = errors.New("realtime: channel not allowed")

// refresh takes a renewal written by another instance into account: a later
// expiry, and the signing key of the token that brought it. (A renewal to
// an earlier expiry through another instance is not seen: telling it from
// a row read just before a local renewal's write would need a version.) It
// returns c's expiry.
func (g *Registry) refresh(ctx context.Context, c *Conn) time.Time {
	var (
		exp time.Time
		kid string
	)
	err := g.pool.QueryRow(ctx, `SELECT expires_at, kid FROM connections WHERE id = $1`, c.ID).Scan(&exp, &kid)
	if err == nil && exp.After(c.Expires()) {
		c.expires.Store(exp.UnixNano())
		if kid != "" {
			c.kid.Store(&kid)
		}
	}
	return c.Expires()
}

// List returns tenantID's connections on every live instance.
func (g *Registry) List(ctx context.Context, tenantID tenant.ID) ([]*Conn, error) {
	rows, err := g.pool.Query(ctx, `
		SELECT c.id, c.subject, c.channels, c.transport, c.instance_id, c.remote_addr, c.user_agent, c.connected_at
		  FROM connections c JOIN instances i ON i.id = c.instance_id
		 WHERE c.tenant_id = $1 AND i.heartbeat_at > now() - make_interval(secs => $2)
		 ORDER BY c.connected_at, c.id`, tenantID, InstanceDead.Seconds())
	if err != nil {
		return nil, fmt.Errorf("realtime: list connections: %w", err)
	}
	conns, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Conn, error) {
		c := &Conn{TenantID: tenantID}
		err := row.Scan(&c.ID, &c.Subject, &c.Channels, &c.Transport, &c.Instance, &c.RemoteAddr, &c.UserAgent, &c.ConnectedAt)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("realtime: list connections: %w", err)
	}
	if conns == nil {
		conns = []*Conn{}
	}
	return conns, nil
}

// Run writes the registry to the database until ctx ends, then removes this
// instance and its connections.
func (g *Registry) Run(ctx context.Context, log *slog.Logger) error {
	flush := time.NewTicker(registryFlush)
	defer flush.Stop()
	var lastBeat time.Time
	for {
		if time.Since(lastBeat) >= instanceBeat {
			if err := g.beat(ctx); err != nil {
				if ctx.Err() == nil {
					log.Warn("realtime: instance heartbeat failed", "err", err)
				}
			} else {
				lastBeat = time.Now()
			}
		}
		if !lastBeat.IsZero() {
			if err := g.flush(ctx); err != nil && ctx.Err() == nil {
				log.Warn("realtime: writing connections failed; will retry", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, err := g.pool.Exec(dctx, `DELETE FROM instances WHERE id = $1`, g.instanceID); err != nil {
				// Not fatal: the rows stop counting once the heartbeat is stale.
				log.Warn("realtime: could not remove this instance's connections on exit", "err", err)
			}
			return nil
		case <-flush.C:
		}
	}
}

// beat records this instance as alive, and forgets instances long dead.
func (g *Registry) beat(ctx context.Context) error {
	_, err := g.pool.Exec(ctx, `
		INSERT INTO instances (id) VALUES ($1)
		ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()`, g.instanceID)
	if err != nil {
		return err
	}
	_, err = g.pool.Exec(ctx, `DELETE FROM instances WHERE heartbeat_at < now() - interval '5 minutes'`)
	return err
}

func (g *Registry) flush(ctx context.Context) error {
	g.mu.Lock()
	added, removed := g.added, g.removed
	g.added, g.removed = map[string]*Conn{}, map[string]bool{}
	// Read the rows' fields under the lock: SetChannels and SetSubject
	// change them on live connections.
	var (
		ids, subjects, transports, addrs, agents, kids []string
		tenants                                        []int64
		channels                                       []string // each as a text[] literal
		connected, expires                             []time.Time
	)
	for _, c := range added {
		ids = append(ids, c.ID)
		tenants = append(tenants, int64(c.TenantID))
		subjects = append(subjects, c.Subject)
		channels = append(channels, textArray(c.Channels))
		transports = append(transports, c.Transport)
		addrs = append(addrs, c.RemoteAddr)
		agents = append(agents, c.UserAgent)
		connected = append(connected, c.ConnectedAt)
		expires = append(expires, c.Expires())
		kids = append(kids, c.Kid())
	}
	g.mu.Unlock()
	if len(added) == 0 && len(removed) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	if len(removed) > 0 {
		ids := make([]string, 0, len(removed))
		for id := range removed {
			ids = append(ids, id)
		}
		batch.Queue(`DELETE FROM connections WHERE id = ANY($1)`, ids)
	}
	if len(added) > 0 {
		batch.Queue(`
			INSERT INTO connections (id, instance_id, tenant_id, subject, channels, transport, remote_addr, user_agent, connected_at, expires_at, kid)
			SELECT u.id, $1, u.t, u.s, u.ch::text[], u.tr, u.a, u.ua, u.ca, u.ex, u.k
			  FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::text[])
			       AS u (id, t, s, ch, tr, a, ua, ca, ex, k)
			ON CONFLICT (id) DO UPDATE SET subject = EXCLUDED.subject, channels = EXCLUDED.channels`,
			g.instanceID, ids, tenants, subjects, channels, transports, addrs, agents, connected, expires, kids)
	}
	if err := g.pool.SendBatch(ctx, batch).Close(); err != nil {
		// Put them back for the next flush, unless they changed meanwhile.
		g.mu.Lock()
		for id, c := range added {
			if _, still := g.live[id]; still {
				g.added[id] = c
			}
		}
		for id := range removed {
			g.removed[id] = true
		}
		g.mu.Unlock()
		return err
	}
	return nil
}

// textArray writes names (channel names: no quotes, commas or braces) as a
// PostgreSQL array literal, since unnest cannot take an array of arrays of
// different lengths.
func textArray(names []string) string {
	b := []byte{'{'}
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, n...)
		b = append(b, '"')
	}
	return string(append(b, '}'))
}
