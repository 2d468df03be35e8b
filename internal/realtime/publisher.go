package realtime

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// notifyChannel is the PostgreSQL channel that carries "tenant:first:last".
const notifyChannel = "hybridrt_events"

var (
	// ErrIdempotencyMismatch is an Idempotency-Key reused with another request.
	ErrIdempotencyMismatch = errors.New("realtime: idempotency key reused with a different request")
	// ErrClosed is returned by Publish after the publisher has stopped.
	ErrClosed = errors.New("realtime: publisher stopped")
)

// Publisher writes events with group commit: the requests that arrive while
// one transaction commits are written together by the next, so the database's
// one-commit-at-a-time NOTIFY lock is paid once per group, not per request.
// An idle publisher commits a lone request at once.
type Publisher struct {
	pool     *pgxpool.Pool
	hub      *Hub // this instance's, which gets committed events at once; or nil
	requests chan *publishRequest
	// maxGroup caps the events of one transaction, to bound its size and latency.
	maxGroup int
	done     chan struct{}
	fault    atomic.Pointer[FaultHook] // test-only; see SetFaultHook

	// Meter, when set before Run, counts the events stored, by door.
	Meter Meter
}

// FaultHook runs inside a publish transaction after its INSERT and NOTIFY,
// just before COMMIT; an error it returns rolls the transaction back.
type FaultHook func(ctx context.Context, tx pgx.Tx) error

// SetFaultHook installs h in every later publish transaction (nil removes
// it). It exists for fault-injection tests only (TESTPLAN F5, F8: a NOTIFY
// queue that is full at COMMIT, an error between NOTIFY and COMMIT); the
// service never sets it.
func (p *Publisher) SetFaultHook(h FaultHook) {
	if h == nil {
		p.fault.Store(nil)
		return
	}
	p.fault.Store(&h)
}

type publishRequest struct {
	tenantID tenant.ID
	drafts   []Draft
	idemKey  string // "" when none
	idemHash []byte
	deadline time.Time // the request context's deadline; zero for none

	// Filled in by the group commit.
	ids      []int64
	times    []time.Time // created_at of each stored event
	replayed bool
	err      error
	done     chan struct{}
}

// NewPublisher returns a publisher on pool; Run must be running for Publish
// to return. Committed events go to hub at once, when it is not nil, as
// well as to every instance (this one included) through NOTIFY.
func NewPublisher(pool *pgxpool.Pool, hub *Hub) *Publisher {
	return &Publisher{
		pool:     pool,
		hub:      hub,
		requests: make(chan *publishRequest, 4096),
		maxGroup: 5000,
		done:     make(chan struct{}),
	}
}

// Result is what one publish request got.
type Result struct {
	IDs      []int64
	Replayed bool // an earlier request with the same Idempotency-Key got these ids
}

// Publish stores drafts for tenantID as one all-or-nothing unit and returns
// their ids once they are committed. drafts must be valid (see Validate).
// With a non-empty idemKey, a request repeated within 24 h returns the first
// request's ids and stores nothing; the same key with a different request
// hash is ErrIdempotencyMismatch.
func (p *Publisher) Publish(ctx context.Context, tenantID tenant.ID, drafts []Draft, idemKey string, idemHash []byte) (Result, error) {
	req := &publishRequest{tenantID: tenantID, drafts: drafts, idemKey: idemKey, idemHash: idemHash, done: make(chan struct{})}
	req.deadline, _ = ctx.Deadline()
	select {
	case p.requests <- req:
	case <-p.done:
		return Result{}, ErrClosed
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	// Once queued, wait for the commit even if the client goes away: the
	// outcome must be decided, and the group must not be torn apart.
	select {
	case <-req.done:
		return Result{IDs: req.ids, Replayed: req.replayed}, req.err
	case <-p.done:
		return Result{}, ErrClosed
	}
}

// Run commits groups until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	defer close(p.done)
	p.commitLoop(ctx)
	return nil
}

// commitLoop gathers the requests waiting into a group and commits it,
// until ctx ends.
func (p *Publisher) commitLoop(ctx context.Context) {
	for {
		var first *publishRequest
		select {
		case first = <-p.requests:
		case <-ctx.Done():
			return
		}
		group := []*publishRequest{first}
		n := len(first.drafts)
	gather:
		for n < p.maxGroup {
			select {
			case r := <-p.requests:
				group = append(group, r)
				n += len(r.drafts)
			default:
				break gather
			}
		}
		start := time.Now()
		// Commit with a context of its own: stopping must not abort a commit half-way.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := p.commit(cctx, group)
		cancel()
		observePublish(group, n, time.Since(start), err)
		if err == nil {
			p.count(group)
			if p.hub != nil {
				p.offer(group)
			}
		}
		for _, r := range group {
			if err != nil && r.err == nil {
				r.err = err
			}
			close(r.done)
		}
	}
}

// count tells the Meter what the group stored, by tenant and door.
func (p *Publisher) count(group []*publishRequest) {
	if p.Meter == nil {
		return
	}
	for _, r := range group {
		if r.replayed || r.err != nil {
			continue
		}
		// A request's events come by one door, nearly always: count runs.
		run, door := 0, ""
		for _, d := range r.drafts {
			dd := cmp.Or(d.Door, DoorAPI)
			if dd != door && run > 0 {
				p.Meter.Published(r.tenantID, door, run)
				run = 0
			}
			door = dd
			run++
		}
		if run > 0 {
			p.Meter.Published(r.tenantID, door, run)
		}
	}
}

// offer hands the group's stored events to this instance's hub, tenant by
// tenant in id order, before the 201s go out: the publishing instance's
// subscribers need not wait for NOTIFY and a read of what it just wrote.
func (p *Publisher) offer(group []*publishRequest) {
	byTenant := map[tenant.ID][]*Event{}
	var order []tenant.ID
	for _, r := range group {
		if r.replayed || r.err != nil || len(r.times) == 0 {
			continue
		}
		if _, ok := byTenant[r.tenantID]; !ok {
			order = append(order, r.tenantID)
		}
		for i, d := range r.drafts {
			e := &Event{TenantID: r.tenantID, ID: r.ids[i], Channel: d.Channel, Type: d.Type, Data: d.Data,
				Time: r.times[i], Origin: d.Origin, Sender: d.Sender}
			e.encode()
			byTenant[r.tenantID] = append(byTenant[r.tenantID], e)
		}
	}
	for _, t := range order {
		p.hub.offer(t, byTenant[t])
	}
}

// acquire takes a connection for group, waiting no later than the earliest
// deadline of its requests: a starved pool or an unreachable database then
// fails the group (503) within its requests' deadlines instead of holding
// them until a connection frees. Only the wait is bounded; a transaction,
// once begun, runs to its outcome.
func (p *Publisher) acquire(ctx context.Context, group []*publishRequest) (*pgxpool.Conn, error) {
	var wait time.Time
	for _, r := range group {
		if !r.deadline.IsZero() && (wait.IsZero() || r.deadline.Before(wait)) {
			wait = r.deadline
		}
	}
	if !wait.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, wait)
		defer cancel()
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("realtime: wait for a database connection: %w", err)
	}
	return conn, nil
}

// commit writes a group in one transaction. On error every request in the
// group fails (nothing was stored); a request whose idempotency key replays
// or mismatches gets its own outcome without failing the others.
//
// A group without idempotency keys goes to the database in one round trip:
// its statements are pipelined with one Sync, which PostgreSQL runs as one
// implicit transaction, committed at the Sync or rolled back as a whole.
// So the tenant rows stay locked for the statements and the commit only,
// never for a round trip to us. A group with keys must read their claims
// first, in an explicit transaction, and sends the same statements after.
func (p *Publisher) commit(ctx context.Context, group []*publishRequest) error {
	// Requests in one group with the same tenant and key: the later ones
	// replay the first, as if they had come after it.
	type idem struct {
		tenantID tenant.ID
		key      string
	}
	firstWith := map[idem]*publishRequest{}
	var followers []*publishRequest
	var fresh []*publishRequest
	for _, r := range group {
		if r.idemKey == "" {
			fresh = append(fresh, r)
			continue
		}
		k := idem{r.tenantID, r.idemKey}
		if _, ok := firstWith[k]; ok {
			followers = append(followers, r)
			continue
		}
		firstWith[k] = r
		fresh = append(fresh, r)
	}

	conn, err := p.acquire(ctx, group)
	if err != nil {
		return err
	}
	defer conn.Release()
	hook := p.fault.Load()
	if len(firstWith) == 0 && hook == nil {
		err = sendWrites(ctx, conn, fresh)
	} else {
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			keep, err := claimKeys(ctx, tx, fresh)
			if err != nil {
				return err
			}
			if err := sendWrites(ctx, tx, keep); err != nil {
				return err
			}
			if hook != nil {
				return (*hook)(ctx, tx)
			}
			return nil
		})
	}
	if err != nil {
		for _, r := range group {
			r.ids, r.times, r.replayed, r.err = nil, nil, false, nil
		}
		return err
	}
	for _, f := range followers {
		first := firstWith[idem{f.tenantID, f.idemKey}]
		f.replayed = true
		switch {
		case first.err != nil:
			f.err = first.err
		case !bytes.Equal(first.idemHash, f.idemHash):
			f.err = ErrIdempotencyMismatch
		default:
			f.ids = first.ids
		}
	}
	return nil
}

// claimKeys claims the idempotency keys of requests, and returns those to
// store: the ones without a key, and those whose key is new (or expired).
// The others replay the ids their key recorded, or mismatch.
func claimKeys(ctx context.Context, tx pgx.Tx, requests []*publishRequest) ([]*publishRequest, error) {
	var keep []*publishRequest
	for _, r := range requests {
		if r.idemKey == "" {
			keep = append(keep, r)
			continue
		}
		// A key held by a transaction in flight elsewhere makes this wait
		// for it, then see its committed row.
		var claimed bool
		err := tx.QueryRow(ctx, `
			INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id, key) DO UPDATE
			   SET request_hash = EXCLUDED.request_hash, ids = NULL, created_at = now()
			 WHERE idempotency_keys.created_at < now() - interval '24 hours'
			RETURNING true`, r.tenantID, r.idemKey, r.idemHash).Scan(&claimed)
		if err == nil {
			keep = append(keep, r)
			continue
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, err
		}
		var hash []byte
		if err := tx.QueryRow(ctx, `SELECT request_hash, ids FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`,
			r.tenantID, r.idemKey).Scan(&hash, &r.ids); err != nil {
			return nil, err
		}
		if !bytes.Equal(hash, r.idemHash) {
			r.err = ErrIdempotencyMismatch
		}
		r.replayed = true
	}
	return keep, nil
}

// batchSender is a connection or a transaction.
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// sendWrites stores requests' events in one batch: each tenant's ids, the
// rows, the ids recorded for idempotency keys, one notification per
// tenant. It sets each request's ids.
//
// Ids are taken by updating the tenant's row, in ascending tenant order,
// so two instances' groups lock tenant rows in the same order and cannot
// deadlock. The statements after the UPDATEs read the new sequence values
// from the rows themselves, so the batch needs no round trip between
// taking ids and using them: a draft's id is its tenant's new value minus
// how far from the end of the tenant's range it is ("back"). A tenant
// whose row is gone gives a NULL id, which the INSERT refuses, so the
// whole group fails rather than commit without it.
func sendWrites(ctx context.Context, db batchSender, requests []*publishRequest) error {
	count := map[tenant.ID]int64{}
	for _, r := range requests {
		count[r.tenantID] += int64(len(r.drafts))
	}
	if len(count) == 0 {
		return nil
	}
	tenants := make([]tenant.ID, 0, len(count))
	for t := range count {
		tenants = append(tenants, t)
	}
	slices.Sort(tenants)

	var (
		tids     []int64
		backs    []int64
		channels []string
		types    []string
		datas    []string
		origins  []string
		senders  []string
	)
	taken := map[tenant.ID]int64{} // ids handed out so far, per tenant
	for _, r := range requests {
		r.ids = make([]int64, len(r.drafts))
		for _, d := range r.drafts {
			taken[r.tenantID]++
			tids = append(tids, int64(r.tenantID))
			backs = append(backs, count[r.tenantID]-taken[r.tenantID])
			channels = append(channels, d.Channel)
			types = append(types, d.Type)
			datas = append(datas, string(d.Data))
			origins = append(origins, d.Origin)
			senders = append(senders, d.Sender)
		}
	}

	batch := &pgx.Batch{}
	for _, t := range tenants {
		batch.Queue(`UPDATE tenants SET event_seq = event_seq + $2 WHERE id = $1 RETURNING event_seq`, t, count[t])
	}
	// clock_timestamp, not now(): taken after the tenant lock, so times
	// rise with ids and retention prunes in id order.
	batch.Queue(`
		INSERT INTO events (tenant_id, id, channel, type, data, created_at, origin, sender)
		SELECT t, (SELECT event_seq FROM tenants WHERE id = t) - b, c, ty, d::json, clock_timestamp(), nullif(o, ''), nullif(s, '')
		  FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS u (t, b, c, ty, d, o, s)
		RETURNING tenant_id, id, created_at`,
		tids, backs, channels, types, datas, origins, senders)
	// Webhook rows, after their events: the outbox is read in id order.
	// The tenant's settings as committed decide: the row was built from a
	// cached copy.
	var (
		hookTenants []int64
		hookRows    []string
	)
	for _, r := range requests {
		for _, d := range r.drafts {
			if d.Webhook != nil {
				hookTenants = append(hookTenants, int64(r.tenantID))
				hookRows = append(hookRows, string(d.Webhook))
			}
		}
	}
	if len(hookRows) > 0 {
		batch.Queue(`
			INSERT INTO webhook_outbox (tenant_id, event)
			SELECT u.t, u.e::json FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS u (t, e, n) JOIN tenants ON tenants.id = u.t
			 WHERE `+tenant.WebhookWantsSQL("tenants", "array[u.e::json->>'name']")+`
			 ORDER BY u.n`,
			hookTenants, hookRows)
	}
	i := 0
	for _, r := range requests {
		if r.idemKey != "" {
			batch.Queue(`
				UPDATE idempotency_keys
				   SET ids = (SELECT array_agg(t.event_seq - b ORDER BY n) FROM tenants t, unnest($3::bigint[]) WITH ORDINALITY AS u (b, n) WHERE t.id = $1)
				 WHERE tenant_id = $1 AND key = $2`, r.tenantID, r.idemKey, backs[i:i+len(r.drafts)])
		}
		i += len(r.drafts)
	}
	for _, t := range tenants {
		// The payload names ids only, far below NOTIFY's 8000-byte limit
		// whatever the events' size; listeners read the rows.
		batch.Queue(`SELECT pg_notify($1, id || ':' || (event_seq - $3 + 1) || ':' || event_seq) FROM tenants WHERE id = $2`,
			notifyChannel, t, count[t])
	}

	br := db.SendBatch(ctx, batch)
	last := make(map[tenant.ID]int64, len(tenants))
	for _, t := range tenants {
		var seq int64
		if err := br.QueryRow().Scan(&seq); err != nil {
			_ = br.Close()
			return fmt.Errorf("take ids for tenant %d: %w", t, err)
		}
		last[t] = seq
	}
	type key struct {
		t  tenant.ID
		id int64
	}
	created := make(map[key]time.Time, len(tids))
	rows, err := br.Query()
	if err == nil {
		for rows.Next() {
			var k key
			var at time.Time
			if err = rows.Scan(&k.t, &k.id, &at); err != nil {
				break
			}
			created[k] = at
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		_ = br.Close()
		return err
	}
	if err := br.Close(); err != nil {
		return err
	}
	i = 0
	for _, r := range requests {
		r.times = make([]time.Time, len(r.ids))
		for j := range r.ids {
			r.ids[j] = last[r.tenantID] - backs[i]
			r.times[j] = created[key{r.tenantID, r.ids[j]}]
			i++
		}
	}
	return nil
}
