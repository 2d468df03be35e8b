package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// Target is where a tenant's webhooks go and what signs them, read for
// each batch, so a changed URL or a rotated key applies to the next one.
type Target struct {
	URL    string
	Key    string // X-Pusher-Key: the signing key's id, the Pusher app key
	Secret []byte
}

// LogValue keeps the secret out of logs.
func (t Target) LogValue() slog.Value {
	return slog.GroupValue(slog.String("url", redactURL(t.URL)), slog.String("key", t.Key))
}

// Targets returns a tenant's Target, or ok false when it has no webhook
// URL any more (its waiting events are then parked, not lost).
type Targets func(ctx context.Context, id tenant.ID) (t Target, ok bool, err error)

// Result is how one POST went.
type Result struct {
	Status  int // 0 when there was no answer
	Latency time.Duration
	Err     error // nil when the endpoint answered; a 3xx, 4xx or 5xx is not an error here
}

// Poster sends one batch. It must honour ctx and never follow redirects.
type Poster func(ctx context.Context, url string, body []byte, header http.Header) Result

// MaxBatch is the most events one POST carries.
const MaxBatch = 100

// Worker sends the outbox's batches: on every instance, any number of
// workers at once, each batch by one of them at a time (a lease on its
// tenant's queue). Set Pool, Targets and Post; the rest have defaults.
type Worker struct {
	Pool    *pgxpool.Pool
	Targets Targets
	Post    Poster
	Log     *slog.Logger
	// Meter, when set, counts each tenant's webhook events acknowledged
	// and POSTs failed (internal/usage).
	Meter interface {
		Webhooks(t tenant.ID, sent, failed int)
	}

	// Window is how long a batch is retried before its events are parked
	// (24 h and a bit); Backoff the wait after the nth failure in a row.
	Window  time.Duration
	Backoff func(n int) time.Duration
	// Lease is how long a worker holds a queue: longer than a POST may take.
	Lease time.Duration
	// Concurrency is how many tenants' batches one worker sends at once
	// (64 unless set): each slot a dead endpoint holds for up to the
	// sender's timeout, so it takes that many dead endpoints on every
	// instance at once before a healthy tenant's batch waits for a slot.
	Concurrency int
	// Tick is how often it looks for due queues.
	Tick time.Duration
}

// DefaultBackoff waits 5 s after the first failure, doubling to at most an
// hour, each wait drawn from its upper 40% so that a fleet of failures
// does not come back in step. Over 24 h that is about 30 attempts.
func DefaultBackoff(n int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 2
	}
	d = min(d, time.Hour)
	return d - time.Duration(rand.Float64()*0.4*float64(d))
}

func (w *Worker) defaults() {
	if w.Log == nil {
		w.Log = slog.Default()
	}
	if w.Window == 0 {
		w.Window = 25 * time.Hour
	}
	if w.Backoff == nil {
		w.Backoff = DefaultBackoff
	}
	if w.Lease == 0 {
		w.Lease = time.Minute
	}
	if w.Concurrency == 0 {
		w.Concurrency = 64
	}
	if w.Tick == 0 {
		w.Tick = 200 * time.Millisecond
	}
}

// Run sends due batches until ctx ends, then waits for those in flight.
func (w *Worker) Run(ctx context.Context) error {
	w.defaults()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, w.Concurrency)
	tick := time.NewTicker(w.Tick)
	defer tick.Stop()
	lastRepair := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if time.Since(lastRepair) > 5*time.Second {
			lastRepair = time.Now()
			if err := w.repair(ctx); err != nil && ctx.Err() == nil {
				w.Log.Warn("webhook: repairing idle queues failed; retrying", "err", err)
			}
			if err := w.measureDepth(ctx); err != nil && ctx.Err() == nil {
				w.Log.Warn("webhook: measuring the outbox failed", "err", err)
			}
		}
	claiming:
		for {
			select {
			case slots <- struct{}{}:
			default:
				break claiming // all slots busy
			}
			q, ok, err := w.claim(ctx)
			if err != nil || !ok {
				<-slots
				if err != nil && ctx.Err() == nil {
					w.Log.Warn("webhook: claiming a queue failed; retrying", "err", err)
				}
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				if err := w.send(ctx, q); err != nil && ctx.Err() == nil {
					w.Log.Warn("webhook: sending a batch failed; its lease runs out and it is sent again", "tenant", q.tenant, "err", err)
				}
			}()
		}
	}
}

// RunOnce claims and sends due batches until none is due, one at a time;
// for tests and tools.
func (w *Worker) RunOnce(ctx context.Context) (sent int, err error) {
	w.defaults()
	for {
		q, ok, err := w.claim(ctx)
		if err != nil || !ok {
			return sent, err
		}
		if err := w.send(ctx, q); err != nil {
			return sent, err
		}
		sent++
	}
}

// queue is a leased tenant queue.
type queue struct {
	tenant      tenant.ID
	attempts    int
	firstFailed *time.Time
	lease       time.Time // leased_until as written: the finalizing update checks it
}

// claim leases the queue due longest, if any. SKIP LOCKED: workers never
// wait on each other's claims.
func (w *Worker) claim(ctx context.Context) (q queue, ok bool, err error) {
	err = w.Pool.QueryRow(ctx,
		`UPDATE webhook_queues SET leased_until = now() + make_interval(secs => $1)
		  WHERE tenant_id = (SELECT tenant_id FROM webhook_queues
		                      WHERE due_at <= now() AND (leased_until IS NULL OR leased_until < now())
		                      ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		 RETURNING tenant_id, attempts, first_failed_at, leased_until`,
		w.Lease.Seconds()).Scan(&q.tenant, &q.attempts, &q.firstFailed, &q.lease)
	if errors.Is(err, pgx.ErrNoRows) {
		return queue{}, false, nil
	}
	if err != nil {
		return queue{}, false, fmt.Errorf("webhook: claim a queue: %w", err)
	}
	return q, true, nil
}

// send posts the head batch of a leased queue and records how it went.
func (w *Worker) send(ctx context.Context, q queue) error {
	var ids []int64
	var events []json.RawMessage
	rows, err := w.Pool.Query(ctx,
		`SELECT id, event::text FROM webhook_outbox WHERE tenant_id = $1 AND parked_at IS NULL ORDER BY id LIMIT $2`,
		q.tenant, MaxBatch)
	if err != nil {
		return fmt.Errorf("webhook: read the batch: %w", err)
	}
	for rows.Next() {
		var id int64
		var e string
		if err := rows.Scan(&id, &e); err != nil {
			rows.Close()
			return fmt.Errorf("webhook: read the batch: %w", err)
		}
		ids = append(ids, id)
		events = append(events, json.RawMessage(e))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("webhook: read the batch: %w", err)
	}
	if len(ids) == 0 {
		_, err := w.Pool.Exec(ctx,
			`UPDATE webhook_queues SET due_at = 'infinity', leased_until = NULL, attempts = 0, first_failed_at = NULL
			  WHERE tenant_id = $1 AND leased_until = $2`, q.tenant, q.lease)
		return err
	}

	target, ok, err := w.Targets(ctx, q.tenant)
	var res Result
	if err != nil {
		// Retried with backoff like a failed POST, and parked in the end:
		// a tenant without a signing key must not be tried every minute.
		res.Err = err
		return w.finish(ctx, q, ids, res, false)
	}
	if !ok {
		res.Err = errors.New("the tenant has no webhook URL any more")
		return w.finish(ctx, q, ids, res, true)
	}
	body, err := json.Marshal(struct {
		TimeMS int64             `json:"time_ms"`
		Events []json.RawMessage `json:"events"`
	}{time.Now().UnixMilli(), events})
	if err != nil {
		return err
	}
	res = w.Post(ctx, target.URL, body, w.header(target, body))
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: the lease runs out, and the batch goes again
	}
	return w.finish(ctx, q, ids, res, false)
}

// finish records a batch's outcome in one transaction: delivered (its
// events leave the outbox), retrying (the queue waits out a backoff), or
// parked (retried for the whole window, or nowhere to send it).
func (w *Worker) finish(ctx context.Context, q queue, ids []int64, res Result, nowhere bool) error {
	delivered := res.Err == nil && res.Status >= 200 && res.Status < 300
	attempt := q.attempts + 1
	outcome := "delivered"
	var next *time.Time
	failedSince := time.Now()
	if q.firstFailed != nil {
		failedSince = *q.firstFailed
	}
	if !delivered {
		outcome = "retrying"
		if nowhere || time.Since(failedSince)+w.Backoff(attempt) > w.Window {
			outcome = "parked"
		} else {
			t := time.Now().Add(w.Backoff(attempt))
			next = &t
		}
	}
	if res.Latency > 0 {
		latency.Observe(res.Latency.Seconds())
	}
	errText := ""
	if res.Err != nil {
		errText = res.Err.Error()
	} else if !delivered {
		errText = statusError(res.Status)
	}
	err := pgx.BeginFunc(ctx, w.Pool, func(tx pgx.Tx) error {
		switch outcome {
		case "delivered":
			if _, err := tx.Exec(ctx, `DELETE FROM webhook_outbox WHERE tenant_id = $1 AND id = ANY($2)`, q.tenant, ids); err != nil {
				return err
			}
		case "parked":
			if _, err := tx.Exec(ctx, `UPDATE webhook_outbox SET parked_at = now() WHERE tenant_id = $1 AND id = ANY($2)`, q.tenant, ids); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO webhook_deliveries (tenant_id, events, first_id, last_id, status, latency_ms, error, attempt, next_retry_at, outcome)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			q.tenant, len(ids), ids[0], ids[len(ids)-1], res.Status, res.Latency.Milliseconds(), errText, attempt, next, outcome); err != nil {
			return err
		}
		// The queue is ours only while our lease is the one written: a
		// worker that took it over after ours ran out decides from here.
		var err error
		if outcome == "retrying" {
			_, err = tx.Exec(ctx,
				`UPDATE webhook_queues SET due_at = $3, leased_until = NULL, attempts = $4, first_failed_at = $5
				  WHERE tenant_id = $1 AND leased_until = $2`, q.tenant, q.lease, *next, attempt, failedSince)
		} else {
			_, err = tx.Exec(ctx,
				`UPDATE webhook_queues SET leased_until = NULL, attempts = 0, first_failed_at = NULL,
				        due_at = CASE WHEN EXISTS (SELECT 1 FROM webhook_outbox WHERE tenant_id = $1 AND parked_at IS NULL)
				                      THEN now() ELSE 'infinity' END
				  WHERE tenant_id = $1 AND leased_until = $2`, q.tenant, q.lease)
		}
		if err != nil {
			return err
		}
		// Keep the last 500 attempts a tenant.
		_, err = tx.Exec(ctx,
			`DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND id <
			   (SELECT id FROM webhook_deliveries WHERE tenant_id = $1 ORDER BY id DESC OFFSET 499 LIMIT 1)`, q.tenant)
		return err
	})
	if err != nil {
		return fmt.Errorf("webhook: record the outcome: %w", err)
	}
	if w.Meter != nil {
		if outcome == "delivered" {
			w.Meter.Webhooks(q.tenant, len(ids), 0)
		} else if !nowhere {
			w.Meter.Webhooks(q.tenant, 0, 1)
		}
	}
	switch outcome {
	case "delivered":
		batches.WithLabelValues("delivered").Inc()
		eventsDelivered.Add(float64(len(ids)))
	case "parked":
		batches.WithLabelValues("parked").Inc()
		eventsParked.Add(float64(len(ids)))
	default:
		batches.WithLabelValues("failed").Inc()
	}
	return nil
}

// repair makes due any idle queue with events waiting. Enqueue marks an
// idle queue due in the same transaction as its events, but a worker
// finishing a batch may have read "nothing more" just before those events
// committed and set the queue idle after them; this puts that right within
// seconds.
func (w *Worker) repair(ctx context.Context) error {
	_, err := w.Pool.Exec(ctx,
		`UPDATE webhook_queues q SET due_at = now()
		  WHERE due_at = 'infinity'
		    AND EXISTS (SELECT 1 FROM webhook_outbox o WHERE o.tenant_id = q.tenant_id AND o.parked_at IS NULL)`)
	return err
}

// RetryNow sends a tenant's waiting webhooks at once: the batch waiting out
// a backoff without waiting longer, and the parked events again, before
// any that came after them (their 24 h start again). The console's "retry
// now". It returns how many parked events it brought back.
func RetryNow(ctx context.Context, pool *pgxpool.Pool, id tenant.ID) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE webhook_outbox SET parked_at = NULL WHERE tenant_id = $1 AND parked_at IS NOT NULL`, id)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx,
			`UPDATE webhook_queues SET due_at = now(),
			        attempts = CASE WHEN $2 THEN 0 ELSE attempts END,
			        first_failed_at = CASE WHEN $2 THEN NULL ELSE first_failed_at END
			  WHERE tenant_id = $1 AND (due_at <> 'infinity' OR $2)`, id, n > 0)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("webhook: retry now: %w", err)
	}
	return n, nil
}

// TestChannel is the channel of the event a test webhook carries.
const TestChannel = "hybridrt-test-webhook"

// SendTest posts a test webhook to a tenant's endpoint at once, outside the
// outbox, and records it among the deliveries (outcome "test"): one
// channel_occupied event for TestChannel, signed like any other, so the
// tenant sees its handler accept or refuse a real webhook. It is not
// retried. ok is false when the tenant has no webhook URL.
//
// It reads only Pool, Targets and Post, so it is safe to call on a Worker
// that is running.
func (w *Worker) SendTest(ctx context.Context, tenantID tenant.ID) (res Result, ok bool, err error) {
	target, ok, err := w.Targets(ctx, tenantID)
	if err != nil || !ok {
		return Result{}, ok, err
	}
	body, err := json.Marshal(struct {
		TimeMS int64   `json:"time_ms"`
		Events []Event `json:"events"`
	}{time.Now().UnixMilli(), []Event{{Name: "channel_occupied", Channel: TestChannel}}})
	if err != nil {
		return Result{}, true, err
	}
	res = w.Post(ctx, target.URL, body, w.header(target, body))
	errText := ""
	if res.Err != nil {
		errText = res.Err.Error()
	} else if res.Status < 200 || res.Status > 299 {
		errText = statusError(res.Status)
	}
	if _, err := w.Pool.Exec(ctx,
		`INSERT INTO webhook_deliveries (tenant_id, events, first_id, last_id, status, latency_ms, error, attempt, outcome)
		 VALUES ($1, 1, 0, 0, $2, $3, $4, 1, 'test')`,
		tenantID, res.Status, res.Latency.Milliseconds(), errText); err != nil {
		return res, true, fmt.Errorf("webhook: record the test delivery: %w", err)
	}
	return res, true, nil
}

// header is the headers of a batch: Pusher's, signed with target's secret.
func (w *Worker) header(target Target, body []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(HeaderKey, target.Key)
	h.Set(HeaderSignature, Sign(string(target.Secret), body))
	return h
}

func statusError(status int) string {
	return "the endpoint answered " + strconv.Itoa(status) + " " + http.StatusText(status) + "; a 2xx acknowledges a batch"
}

// redactURL is raw without its path and query, where a tenant may keep a
// secret: scheme and host only.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host
}
