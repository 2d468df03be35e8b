package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// endpoint is a tenant's webhook receiver: it records every batch it
// acknowledged, and answers as fail says.
type endpoint struct {
	srv    *httptest.Server
	secret string
	fail   atomic.Int32 // 0: 200; else this status
	hits   atomic.Int64

	mu      sync.Mutex
	batches [][]Event // acknowledged, in order
}

func newEndpoint(t testing.TB, secret string) *endpoint {
	e := &endpoint{secret: secret}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		if got, want := r.Header.Get(HeaderSignature), Sign(e.secret, body); got != want {
			t.Errorf("signature %q, want %q", got, want)
		}
		if r.Header.Get(HeaderKey) != "key-1" {
			t.Errorf("%s = %q", HeaderKey, r.Header.Get(HeaderKey))
		}
		if s := e.fail.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		var b struct {
			TimeMS int64   `json:"time_ms"`
			Events []Event `json:"events"`
		}
		if err := json.Unmarshal(body, &b); err != nil || b.TimeMS == 0 {
			t.Errorf("body %s: %v", body, err)
		}
		e.mu.Lock()
		e.batches = append(e.batches, b.Events)
		e.mu.Unlock()
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// received returns the channels' events as the endpoint acknowledged them, in order.
func (e *endpoint) received() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Event
	for _, b := range e.batches {
		out = append(out, b...)
	}
	return out
}

// loopbackPost posts with a plain client: the tests' endpoints are on
// loopback, which the real Sender refuses unless allowed.
func loopbackPost(ctx context.Context, url string, body []byte, header http.Header) Result {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return Result{Err: err}
	}
	req.Header = header
	start := time.Now()
	res, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return Result{Err: err, Latency: time.Since(start)}
	}
	res.Body.Close()
	return Result{Status: res.StatusCode, Latency: time.Since(start)}
}

type fixture struct {
	pool    *pgxpool.Pool
	targets map[tenant.ID]*endpoint
}

func newFixture(t testing.TB) *fixture {
	return &fixture{pool: pgtest.NewDB(t), targets: map[tenant.ID]*endpoint{}}
}

func (f *fixture) tenant(t testing.TB) (tenant.ID, *endpoint) {
	var id tenant.ID
	if err := f.pool.QueryRow(context.Background(), `INSERT INTO tenants (name, settings) VALUES ('t', '{"webhookUrl":"https://example.com/hook","webhookEvents":["channel_occupied","channel_vacated","member_added","member_removed","client_event","cache_miss"]}') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	e := newEndpoint(t, fmt.Sprint("secret-", id))
	f.targets[id] = e
	return id, e
}

func (f *fixture) worker() *Worker {
	return &Worker{
		Pool: f.pool,
		Targets: func(_ context.Context, id tenant.ID) (Target, bool, error) {
			e, ok := f.targets[id]
			if !ok {
				return Target{}, false, nil
			}
			return Target{URL: e.srv.URL, Key: "key-1", Secret: []byte(e.secret)}, true, nil
		},
		Post:    loopbackPost,
		Backoff: func(int) time.Duration { return 50 * time.Millisecond },
		Tick:    10 * time.Millisecond,
	}
}

// makeDue skips the batch window.
func (f *fixture) makeDue(t testing.TB) {
	if _, err := f.pool.Exec(context.Background(), `UPDATE webhook_queues SET due_at = now() WHERE due_at <> 'infinity' AND attempts = 0`); err != nil {
		t.Fatal(err)
	}
}

func occupied(ch string) Event { return Event{Name: "channel_occupied", Channel: ch} }

func names(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Name+" "+e.Channel)
	}
	return out
}

// TestEnqueueInTheChangesTransaction: events enqueued in a transaction that
// rolls back are never sent; committed ones are, in order, batched by at
// most MaxBatch, after the batch window.
func TestEnqueueInTheChangesTransaction(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id, ep := f.tenant(t)

	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Enqueue(ctx, tx, id, occupied("rolled-back")); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(ctx)

	var want []string
	for i := range 250 {
		e := occupied(fmt.Sprint("c", i))
		want = append(want, e.Name+" "+e.Channel)
		if _, err := Enqueue(ctx, f.pool, id, e); err != nil {
			t.Fatal(err)
		}
	}
	w := f.worker()
	if n, err := w.RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("within the batch window: sent %d (%v), want none yet", n, err)
	}
	f.makeDue(t)
	if n, err := w.RunOnce(ctx); err != nil || n != 3 {
		t.Fatalf("sent %d batches (%v), want 3 (100, 100, 50)", n, err)
	}
	if got := names(ep.received()); !slices.Equal(got, want) {
		t.Errorf("received %d events %v…, want the 250 committed, in order", len(got), got[:min(3, len(got))])
	}
	ep.mu.Lock()
	sizes := []int{}
	for _, b := range ep.batches {
		sizes = append(sizes, len(b))
	}
	ep.mu.Unlock()
	if !slices.Equal(sizes, []int{100, 100, 50}) {
		t.Errorf("batch sizes %v, want 100, 100, 50", sizes)
	}
	if n := pgtest.Count(t, f.pool, `SELECT count(*) FROM webhook_outbox`); n != 0 {
		t.Errorf("%d events left in the outbox after delivery", n)
	}
	ds, err := Recent(ctx, f.pool, id, 10)
	if err != nil || len(ds) != 3 || ds[0].Outcome != "delivered" || ds[0].Status != 200 || ds[0].Events != 50 {
		t.Errorf("recent deliveries %+v (%v)", ds, err)
	}
}

// TestRetriedUntilAcknowledged: an endpoint answering 500 gets the same
// batch again after the backoff, with nothing after it sent first; once it
// answers 200, everything arrives once, in order. Past the window the batch
// is parked and the next one goes; "retry now" sends the parked one again.
func TestRetriedUntilAcknowledged(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id, ep := f.tenant(t)
	ep.fail.Store(500)
	for i := range 3 {
		if _, err := Enqueue(ctx, f.pool, id, occupied(fmt.Sprint("c", i))); err != nil {
			t.Fatal(err)
		}
	}
	f.makeDue(t)
	w := f.worker()
	for range 3 {
		if _, err := w.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond) // the backoff
	}
	if n := ep.hits.Load(); n != 3 {
		t.Errorf("%d attempts over three backoffs, want 3", n)
	}
	ds, _ := Recent(ctx, f.pool, id, 1)
	if len(ds) != 1 || ds[0].Outcome != "retrying" || ds[0].Status != 500 || ds[0].Attempt != 3 || ds[0].NextRetryAt == "" {
		t.Errorf("the last attempt is %+v, want retrying after a 500, attempt 3, with a next retry", ds)
	}
	if _, err := Enqueue(ctx, f.pool, id, occupied("later")); err != nil {
		t.Fatal(err)
	}
	ep.fail.Store(0)
	time.Sleep(60 * time.Millisecond)
	if _, err := w.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := names(ep.received()); !slices.Equal(got, []string{"channel_occupied c0", "channel_occupied c1", "channel_occupied c2", "channel_occupied later"}) {
		t.Errorf("received %v", got)
	}

	// Parked after the window, and the next batch goes on.
	ep.fail.Store(503)
	if _, err := Enqueue(ctx, f.pool, id, occupied("doomed")); err != nil {
		t.Fatal(err)
	}
	f.makeDue(t)
	w.Window = 120 * time.Millisecond
	for range 10 {
		if _, err := w.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond)
	}
	if n := pgtest.Count(t, f.pool, `SELECT count(*) FROM webhook_outbox WHERE parked_at IS NOT NULL`); n != 1 {
		t.Fatalf("%d parked events, want the one that failed past the window", n)
	}
	ds, _ = Recent(ctx, f.pool, id, 1)
	if ds[0].Outcome != "parked" {
		t.Errorf("the last attempt is %+v, want parked", ds[0])
	}
	ep.fail.Store(0)
	if _, err := Enqueue(ctx, f.pool, id, occupied("after")); err != nil {
		t.Fatal(err)
	}
	f.makeDue(t)
	if _, err := w.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := RetryNow(ctx, f.pool, id); err != nil || n != 1 {
		t.Fatalf("RetryNow = %d, %v", n, err)
	}
	if _, err := w.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := names(ep.received())
	if !slices.Equal(got[4:], []string{"channel_occupied after", "channel_occupied doomed"}) {
		t.Errorf("after the park and the retry: %v", got[4:])
	}
}

// TestWorkersShareTheOutbox: four workers on one outbox send every event
// once (the endpoint acknowledges each batch), in order per tenant; a
// tenant whose endpoint hangs does not hold up the others.
func TestWorkersShareTheOutbox(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type tenantCase struct {
		id tenant.ID
		ep *endpoint
	}
	var tenants []tenantCase
	for range 4 {
		id, ep := f.tenant(t)
		tenants = append(tenants, tenantCase{id, ep})
	}
	// A fifth tenant's endpoint hangs past every worker's lease.
	stuck, _ := f.tenant(t)
	hang := make(chan struct{})
	f.targets[stuck].srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	defer close(hang)
	if _, err := Enqueue(ctx, f.pool, stuck, occupied("stuck")); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	for range 4 {
		w := f.worker()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.Run(ctx)
		}()
	}
	const perTenant = 120
	var pub sync.WaitGroup
	for _, tc := range tenants {
		pub.Add(1)
		go func() {
			defer pub.Done()
			for i := range perTenant {
				if _, err := Enqueue(ctx, f.pool, tc.id, occupied(fmt.Sprint("c", i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	pub.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for _, tc := range tenants {
		for len(tc.ep.received()) < perTenant && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		got := names(tc.ep.received())
		var want []string
		for i := range perTenant {
			want = append(want, fmt.Sprint("channel_occupied c", i))
		}
		if !slices.Equal(got, want) {
			t.Errorf("tenant %d received %d events, want %d once each in order (first %v)", tc.id, len(got), perTenant, got[:min(5, len(got))])
		}
	}
	cancel()
	wg.Wait()
}

// TestFailingEndpointsLoseNothing: through the real Sender, with the retry
// schedule shortened, tenants whose endpoints answer 500, hang past the
// timeout, or are down (nothing listening) for many attempts get every
// event once they recover, once each after the 2xx, in order; a healthy
// tenant's events all arrive while the others still fail.
func TestFailingEndpointsLoseNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type failing struct {
		id     tenant.ID
		ep     *endpoint
		broken atomic.Bool
	}
	mk := func() *failing {
		id, ep := f.tenant(t)
		x := &failing{id: id, ep: ep}
		x.broken.Store(true)
		return x
	}
	erroring, hanging, down, healthy := mk(), mk(), mk(), mk()
	healthy.broken.Store(false)
	erroring.ep.fail.Store(500)
	// hanging: the handler waits past the sender's timeout while broken.
	inner := hanging.ep.srv.Config.Handler
	hanging.ep.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hanging.broken.Load() {
			// Read the body first: only then does the server notice the
			// sender giving up and closing the connection.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			return
		}
		inner.ServeHTTP(w, r)
	})
	// down: while broken, its URL is a port nothing listens on.
	closed := httptest.NewServer(http.NotFoundHandler())
	deadURL := closed.URL
	closed.Close()

	sender := NewSender(Options{AllowPrivate: true, Timeout: 300 * time.Millisecond})
	var mu sync.Mutex
	attempts := map[tenant.ID]int{}
	targets := func(_ context.Context, id tenant.ID) (Target, bool, error) {
		mu.Lock()
		attempts[id]++
		mu.Unlock()
		e := f.targets[id]
		url := e.srv.URL
		if id == down.id && down.broken.Load() {
			url = deadURL
		}
		return Target{URL: url, Key: "key-1", Secret: []byte(e.secret)}, true, nil
	}
	for range 2 {
		w := &Worker{Pool: f.pool, Targets: targets, Post: sender.Post,
			Backoff: func(int) time.Duration { return 30 * time.Millisecond }, Tick: 10 * time.Millisecond}
		go func() { _ = w.Run(ctx) }()
	}

	const n = 30
	all := []*failing{erroring, hanging, down, healthy}
	for i := range n {
		for _, x := range all {
			if _, err := Enqueue(ctx, f.pool, x.id, occupied(fmt.Sprint("c", i%3, "-", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.makeDue(t)
	want := func() []string {
		var w []string
		for i := range n {
			w = append(w, fmt.Sprint("channel_occupied c", i%3, "-", i))
		}
		return w
	}()
	waitAll := func(x *failing) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for len(x.ep.received()) < n && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := names(x.ep.received()); !slices.Equal(got, want) {
			t.Errorf("tenant %d received %d events: %v; want %d, once each, in order", x.id, len(got), got, n)
		}
	}
	// The healthy tenant is served while the others fail, again and again.
	waitAll(healthy)
	for _, x := range []*failing{erroring, hanging, down} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			a := attempts[x.id]
			mu.Unlock()
			if a >= 5 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(x.ep.received()) != 0 {
			t.Errorf("tenant %d acknowledged events while broken", x.id)
		}
	}
	// They recover.
	erroring.ep.fail.Store(0)
	for _, x := range all {
		x.broken.Store(false)
	}
	for _, x := range []*failing{erroring, hanging, down} {
		waitAll(x)
		mu.Lock()
		a := attempts[x.id]
		mu.Unlock()
		if a < 5 {
			t.Errorf("tenant %d: %d attempts; its endpoint failed the first few", x.id, a)
		}
	}
	if n := pgtest.Count(t, f.pool, `SELECT count(*) FROM webhook_outbox`); n != 0 {
		t.Errorf("%d events left in the outbox", n)
	}
}

// TestDeadWorkersBatchIsSentByAnother: a worker that leased a queue and
// died (it never records an outcome) holds it only until its lease runs
// out; then another worker sends the batch, and nothing is lost. A Target
// in a log line shows no secret.
func TestDeadWorkersBatchIsSentByAnother(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id, ep := f.tenant(t)
	if _, err := Enqueue(ctx, f.pool, id, occupied("a"), occupied("b")); err != nil {
		t.Fatal(err)
	}
	f.makeDue(t)
	dead := f.worker()
	dead.Lease = 300 * time.Millisecond
	dead.defaults()
	if _, ok, err := dead.claim(ctx); err != nil || !ok {
		t.Fatalf("claim = %v, %v", ok, err)
	}
	other := f.worker()
	if n, err := other.RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("while the lease holds, another worker sent %d batches (%v)", n, err)
	}
	time.Sleep(400 * time.Millisecond)
	if n, err := other.RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("after the lease ran out, another worker sent %d batches (%v), want 1", n, err)
	}
	if got := names(ep.received()); !slices.Equal(got, []string{"channel_occupied a", "channel_occupied b"}) {
		t.Errorf("received %v", got)
	}

	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "target", Target{URL: "https://h.example/p?token=tok", Key: "k", Secret: []byte("s3cret")})
	if strings.Contains(b.String(), "s3cret") || strings.Contains(b.String(), "tok") {
		t.Errorf("a logged Target shows a secret: %s", b.String())
	}
}
