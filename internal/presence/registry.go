package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// NotifyChannel is the PostgreSQL channel that announces joins and leaves.
const NotifyChannel = "hybridrt_presence"

// Limits (DESIGN: Pusher's).
const (
	DefaultMaxMembers = 100  // distinct users in one presence channel, unless Registry.MaxMembers says otherwise
	MaxInfoSize       = 1024 // bytes of one member's info, encoded
	MaxUserID         = 200  // bytes of a user id
)

var (
	// ErrFull is a join of a new user into a channel that has MaxMembers.
	// Doors say the limit with Registry.MaxMembers.
	ErrFull = errors.New("presence: the channel has the most members it may have")
	// ErrInvalidMember is a user id or info outside the limits.
	ErrInvalidMember = errors.New("presence: invalid member")
)

// sweepEvery is how often a live instance looks for members of dead
// instances. With realtime.InstanceDead (20 s) a crashed instance's members
// are gone within 25 s (DESIGN: 30 s).
const sweepEvery = 5 * time.Second

// waitView bounds how long a watch waits for this instance's view to reach
// the version of a join, before reading the members from the store instead.
const waitView = 2 * time.Second

// Change is a member joining (Added) or leaving a channel.
type Change struct {
	Added  bool
	Member Member
}

// Registry keeps presence channels' members in PostgreSQL, shared by every
// instance and every door, and tells each local watcher of a channel about
// every join and leave, in order, exactly once.
type Registry struct {
	// MaxMembers is the most distinct users one presence channel may have
	// (PRESENCE_MAX_MEMBERS; Pusher's 100 by default). Set it before use.
	MaxMembers int
	// Changed, when set, is called for every join of a new member and every
	// leave of a member's last connection, inside the transaction that
	// makes the change (the webhooks' outbox writes there). An error rolls
	// the change back. Set it before use.
	Changed func(ctx context.Context, tx pgx.Tx, tenantID tenant.ID, channel string, c Change) error

	pool       *pgxpool.Pool
	instanceID string

	notes  chan note     // from the listener
	reload chan struct{} // the listener reconnected: notifications may be lost

	mu    sync.Mutex
	views map[key]*view
}

type key struct {
	tenant  tenant.ID
	channel string
}

// view is what this instance knows of one channel with local watchers: its
// members as of version, kept current by notifications applied in version
// order. Every watcher of the channel on this instance reads from it.
type view struct {
	version  int64
	members  map[string]Member // by user id
	watchers map[*Watcher]struct{}
	stale    bool       // a version was skipped: read the members again
	changed  *sync.Cond // broadcast when version moves
}

// Watcher receives a channel's changes after the members it was given.
type Watcher struct {
	r   *Registry
	k   key
	fn  func(Change)
	off bool
}

// note is a notification, decoded.
type note struct {
	Tenant  tenant.ID       `json:"t"`
	Channel string          `json:"c"`
	Version int64           `json:"v"`
	Added   bool            `json:"a"`
	UserID  string          `json:"u"`
	Info    json.RawMessage `json:"i,omitempty"`
}

// NewRegistry returns a registry for this instance (instanceID as in the
// instances table: realtime.Registry.InstanceID).
func NewRegistry(pool *pgxpool.Pool, instanceID string) *Registry {
	return &Registry{
		pool: pool, instanceID: instanceID,
		notes: make(chan note, 4096), reload: make(chan struct{}, 1),
		views:      map[key]*view{},
		MaxMembers: DefaultMaxMembers,
	}
}

// Notified is the registry's share of the instance's LISTEN connection.
func (p *Registry) Notified() realtime.Notified {
	return realtime.Notified{
		Channel: NotifyChannel,
		Handle: func(payload string) {
			var n note
			if json.Unmarshal([]byte(payload), &n) != nil {
				return
			}
			select {
			case p.notes <- n:
			default: // too far behind: read every channel again
				p.Reconnected()
			}
		},
		Reconnected: p.Reconnected,
	}
}

// Reconnected makes every view read its members again, since notifications
// sent while the listener was away are lost.
func (p *Registry) Reconnected() {
	select {
	case p.reload <- struct{}{}:
	default:
	}
}

// CheckMember reports why m cannot be a member, or nil.
func CheckMember(m Member) error {
	switch {
	case m.UserID == "":
		return fmt.Errorf("%w: a member needs a user id", ErrInvalidMember)
	case len(m.UserID) > MaxUserID:
		return fmt.Errorf("%w: a user id is at most %d bytes", ErrInvalidMember, MaxUserID)
	case len(m.Info) > MaxInfoSize:
		return fmt.Errorf("%w: user info is %d bytes encoded, more than %d", ErrInvalidMember, len(m.Info), MaxInfoSize)
	case len(m.Info) > 0 && !json.Valid(m.Info):
		return fmt.Errorf("%w: user info is not JSON", ErrInvalidMember)
	}
	return nil
}

// Join adds connection connID as member m of tenantID's channel, and
// returns the channel's version after it: pass it to Watch. A user already
// in the channel through another connection is not announced again.
func (p *Registry) Join(ctx context.Context, tenantID tenant.ID, channel, connID string, m Member) (int64, error) {
	version, _, err := p.join(ctx, tenantID, channel, connID, m, nil)
	return version, err
}

// JoinUntil is Join for a member that no connection holds (a long-poller,
// connID its own id): it stays until until, whichever instance answers its
// requests, and joining again pushes that forward. It reports whether
// connID was not in the channel before.
func (p *Registry) JoinUntil(ctx context.Context, tenantID tenant.ID, channel, connID string, m Member, until time.Time) (bool, error) {
	_, fresh, err := p.join(ctx, tenantID, channel, connID, m, &until)
	return fresh, err
}

func (p *Registry) join(ctx context.Context, tenantID tenant.ID, channel, connID string, m Member, until *time.Time) (version int64, fresh bool, err error) {
	if err := CheckMember(m); err != nil {
		return 0, false, err
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var err error
		if version, err = lockChannel(ctx, tx, tenantID, channel); err != nil {
			return err
		}
		var present bool
		var users int
		if err := tx.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM presence_members WHERE tenant_id = $1 AND channel = $2 AND user_id = $3),
			       (SELECT count(DISTINCT user_id) FROM presence_members WHERE tenant_id = $1 AND channel = $2)`,
			tenantID, channel, m.UserID).Scan(&present, &users); err != nil {
			return err
		}
		if !present && users >= p.MaxMembers {
			return ErrFull
		}
		// xmax is 0 in a row this statement inserted, not updated.
		err = tx.QueryRow(ctx, `
			INSERT INTO presence_members (tenant_id, channel, conn_id, instance_id, user_id, user_info, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (tenant_id, channel, conn_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
			 WHERE presence_members.expires_at IS NOT NULL
			RETURNING xmax = 0`,
			tenantID, channel, connID, p.instanceID, m.UserID, nullJSON(m.Info), until).Scan(&fresh)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) { // no row: a connection's, already there
			return err
		}
		if present {
			return nil
		}
		version++
		return p.announce(ctx, tx, note{Tenant: tenantID, Channel: channel, Version: version, Added: true, UserID: m.UserID, Info: m.Info})
	})
	if err != nil {
		return 0, false, fmt.Errorf("presence: join %q: %w", channel, err)
	}
	return version, fresh, nil
}

// Leave removes connection connID from tenantID's channel, and announces
// its user's leaving when it was the user's last connection there.
func (p *Registry) Leave(ctx context.Context, tenantID tenant.ID, channel, connID string) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		version, err := lockChannel(ctx, tx, tenantID, channel)
		if err != nil {
			return err
		}
		var userID string
		err = tx.QueryRow(ctx, `
			DELETE FROM presence_members WHERE tenant_id = $1 AND channel = $2 AND conn_id = $3
			RETURNING user_id`, tenantID, channel, connID).Scan(&userID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // swept already, or never joined
		}
		if err != nil {
			return err
		}
		_, err = p.leftIfLast(ctx, tx, tenantID, channel, version, []string{userID})
		return err
	})
	if err != nil {
		return fmt.Errorf("presence: leave %q: %w", channel, err)
	}
	return nil
}

// lockChannel takes the channel's row lock, creating the row, and returns
// its version. Joins and leaves of one channel serialise on it.
func lockChannel(ctx context.Context, tx pgx.Tx, tenantID tenant.ID, channel string) (int64, error) {
	var version int64
	err := tx.QueryRow(ctx, `
		INSERT INTO presence_channels (tenant_id, channel) VALUES ($1, $2)
		ON CONFLICT (tenant_id, channel) DO UPDATE SET version = presence_channels.version
		RETURNING version`, tenantID, channel).Scan(&version)
	return version, err
}

// leftIfLast announces, for each of users that has no connection left in
// the channel, that it left; the channel's lock is held at version. It
// returns the new version.
func (p *Registry) leftIfLast(ctx context.Context, tx pgx.Tx, tenantID tenant.ID, channel string, version int64, users []string) (int64, error) {
	rows, err := tx.Query(ctx, `
		SELECT u FROM unnest($3::text[]) AS u
		 WHERE NOT EXISTS (SELECT 1 FROM presence_members WHERE tenant_id = $1 AND channel = $2 AND user_id = u)`,
		tenantID, channel, users)
	if err != nil {
		return version, err
	}
	gone, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return version, err
	}
	for _, u := range gone {
		version++
		if err := p.announce(ctx, tx, note{Tenant: tenantID, Channel: channel, Version: version, UserID: u}); err != nil {
			return version, err
		}
	}
	return version, nil
}

// announce records a change's version, tells Changed, and notifies every
// instance.
func (p *Registry) announce(ctx context.Context, tx pgx.Tx, n note) error {
	payload, err := json.Marshal(n)
	if err != nil {
		return err
	}
	if p.Changed != nil {
		if err := p.Changed(ctx, tx, n.Tenant, n.Channel, Change{Added: n.Added, Member: Member{UserID: n.UserID, Info: n.Info}}); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE presence_channels SET version = $3 WHERE tenant_id = $1 AND channel = $2`,
		n.Tenant, n.Channel, n.Version); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, string(payload))
	return err
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// alive is the SQL condition of a member row m that counts, with the
// seconds after which an instance's silence means it is dead as $3: one
// held by a connection of a live instance, or one whose time has not
// passed (a long-poller's).
// Never NULL, so that NOT alive is the rows to sweep.
const alive = `(CASE WHEN m.expires_at IS NOT NULL THEN m.expires_at > now()
	ELSE EXISTS (SELECT 1 FROM instances i WHERE i.id = m.instance_id AND i.heartbeat_at > now() - make_interval(secs => $3)) END)`

// Members returns tenantID's channel's members on live instances (and the
// long-pollers whose time has not passed), ordered by user id.
func (p *Registry) Members(ctx context.Context, tenantID tenant.ID, channel string) ([]Member, error) {
	members, _, err := readMembers(ctx, p.pool, tenantID, channel)
	return members, err
}

// readMembers returns a channel's members and version, in one snapshot.
func readMembers(ctx context.Context, pool *pgxpool.Pool, tenantID tenant.ID, channel string) ([]Member, int64, error) {
	var (
		members []Member
		version int64
	)
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT coalesce((SELECT version FROM presence_channels WHERE tenant_id = $1 AND channel = $2), 0)`,
			tenantID, channel).Scan(&version)
		if err != nil {
			return err
		}
		// A user's info is its earliest connection's. Members of dead
		// instances not yet swept do not count.
		rows, err := tx.Query(ctx, `
			SELECT DISTINCT ON (m.user_id) m.user_id, coalesce(m.user_info::text, '')
			  FROM presence_members m
			 WHERE m.tenant_id = $1 AND m.channel = $2 AND `+alive+`
			 ORDER BY m.user_id, m.joined_at`, tenantID, channel, realtime.InstanceDead.Seconds())
		if err != nil {
			return err
		}
		members, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Member, error) {
			var m Member
			var info string
			err := row.Scan(&m.UserID, &info)
			if info != "" {
				m.Info = json.RawMessage(info)
			}
			return m, err
		})
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("presence: read the members of %q: %w", channel, err)
	}
	if members == nil {
		members = []Member{}
	}
	return members, version, nil
}

// UserCounts returns the number of members of each of tenantID's presence
// channels whose name starts with prefix and that has any.
func (p *Registry) UserCounts(ctx context.Context, tenantID tenant.ID, prefix string) (map[string]int, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT m.channel, count(DISTINCT m.user_id)
		  FROM presence_members m
		 WHERE m.tenant_id = $1 AND starts_with(m.channel, $2) AND `+alive+`
		 GROUP BY m.channel`, tenantID, prefix, realtime.InstanceDead.Seconds())
	if err != nil {
		return nil, fmt.Errorf("presence: count members: %w", err)
	}
	counts := map[string]int{}
	var (
		ch string
		n  int
	)
	if _, err := pgx.ForEachRow(rows, []any{&ch, &n}, func() error { counts[ch] = n; return nil }); err != nil {
		return nil, fmt.Errorf("presence: count members: %w", err)
	}
	return counts, nil
}
