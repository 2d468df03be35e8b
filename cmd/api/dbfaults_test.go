package main

// Database faults of TESTPLAN section 1: F3 (PostgreSQL crashes), F5 (NOTIFY
// fails at COMMIT), F6 (large payloads), F7 (busy pool), F8 (rollback after
// NOTIFY), F9 (identical payloads), F22 (read-only database).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/ssetest"
	"github.com/hybridrt/hybridrt/migrations"
)

// notifyChannel is the PostgreSQL channel the publisher NOTIFYs
// (realtime's notifyChannel): tests LISTEN on it to see what is sent.
const notifyChannel = "hybridrt_events"

// dbURL is the URL of the database pool is on.
func dbURL(pool *pgxpool.Pool) string {
	c := pool.Config().ConnConfig
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", c.User, c.Host, c.Port, c.Database)
}

// notifyTap is a session of the test's own that LISTENs on the publisher's
// channel, to check what the publisher sends through NOTIFY.
type notifyTap struct {
	t    *testing.T
	conn *pgx.Conn
}

func tapNotifications(t *testing.T, pool *pgxpool.Pool) *notifyTap {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL(pool))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(t.Context(), "LISTEN "+notifyChannel); err != nil {
		t.Fatal(err)
	}
	return &notifyTap{t: t, conn: conn}
}

// drain returns the payloads received until none arrives for quiet, leaving
// out the listeners' self-probes.
func (n *notifyTap) drain(quiet time.Duration) []string {
	n.t.Helper()
	var out []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), quiet)
		msg, err := n.conn.WaitForNotification(ctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				n.t.Fatalf("notification tap: %v", err)
			}
			return out
		}
		if !strings.HasPrefix(msg.Payload, "probe:") {
			out = append(out, msg.Payload)
		}
	}
}

// privateCluster starts a PostgreSQL cluster of the test's own, which the
// test may crash without disturbing the others. pg runs scripts/pg.sh on it
// ("crash", "start", "restart", ...) and returns what the script printed;
// pool is a pool on it, migrated; dir is its data directory.
//
// Its port is below both the range pg.sh scans (54320-54420) and the
// kernel's ephemeral ports: while it is down for seconds, neither another
// test's cluster nor an httptest server can take it, which would make the
// instances talk to a stranger.
func privateCluster(t *testing.T) (url string, pool *pgxpool.Pool, pg func(cmd string) string, dir string) {
	t.Helper()
	parent, err := os.MkdirTemp("", "hybridrt-dbfault-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(parent, 0o755) // the cluster may run as user postgres
	dir = parent + "/pg"
	// A database name of its own: the ledger keys tenants by database name
	// and tenant id, and every private cluster starts again at tenant 1.
	db := strings.ReplaceAll(filepath.Base(parent), "-", "_")
	run := func(cmd string, env ...string) (string, error) {
		c := exec.Command("../../scripts/pg.sh", cmd, dir)
		c.Env = append(os.Environ(), append(env, "PG_DATABASE="+db)...)
		out, err := c.Output()
		if e, ok := errors.AsType[*exec.ExitError](err); ok {
			err = fmt.Errorf("pg.sh %s: %w\n%s", cmd, err, e.Stderr)
		}
		return strings.TrimSpace(string(out)), err
	}
	pg = func(cmd string) string {
		out, err := run(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Cleanup(func() {
		exec.Command("../../scripts/pg.sh", "stop", dir).Run()
		os.RemoveAll(parent)
	})
	for attempt := 1; ; attempt++ {
		port := 20000 + rand.IntN(10000)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			continue // taken
		} else {
			l.Close()
		}
		if url, err = run("start", fmt.Sprintf("PG_PORT=%d", port)); err == nil {
			break
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		os.Remove(dir + "/hybridrt.port") // and try another port
	}
	pool, err = pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := migrations.Apply(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	return url, pool, pg, dir
}

// lifeline is a raw SSE client that records when its stream shows signs of
// life (any bytes: events, heartbeat comments), and when it ended.
type lifeline struct {
	mu    sync.Mutex
	seen  []time.Time
	pings int
	retry int // the last retry: field, -1 if none
	ended time.Time
	done  chan struct{}
}

func (in *instance) watch(token string, channels ...string) *lifeline {
	in.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", in.url+"/api/realtime/sse?channels="+url.QueryEscape(strings.Join(channels, ",")), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		cancel()
		in.t.Fatalf("watch stream: %v %v", err, res)
	}
	l := &lifeline{retry: -1, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer res.Body.Close()
		p := ssetest.NewParser()
		buf := make([]byte, 64<<10)
		for {
			n, err := res.Body.Read(buf)
			l.mu.Lock()
			if n > 0 {
				l.seen = append(l.seen, time.Now())
				p.Feed(buf[:n])
				l.pings, l.retry = len(p.Comments()), p.Retry()
			}
			if err != nil {
				l.ended = time.Now()
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
		}
	}()
	in.t.Cleanup(func() { cancel(); <-l.done })
	return l
}

// check asserts that the stream kept heartbeating through [from, to] (no
// silence longer than maxGap), or ended announcing a retry: delay, so a
// client reconnects. It returns what happened, for the log.
func (l *lifeline) check(t *testing.T, from, to time.Time, maxGap time.Duration) string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended.IsZero() && l.ended.Before(to) {
		if l.retry <= 0 {
			t.Errorf("the stream ended during the fault without a retry: field")
		}
		return fmt.Sprintf("ended %v into the fault with retry: %d ms", l.ended.Sub(from).Round(time.Millisecond), l.retry)
	}
	last, gap := from, time.Duration(0)
	for _, s := range l.seen {
		if s.Before(from) {
			continue
		}
		if s.After(to) {
			break
		}
		gap = max(gap, s.Sub(last))
		last = s
	}
	gap = max(gap, to.Sub(last))
	if gap > maxGap {
		t.Errorf("the stream was silent for %v during the fault, more than %v", gap, maxGap)
	}
	return fmt.Sprintf("kept heartbeating (longest silence %v, %d pings in all)", gap.Round(time.Millisecond), l.pings)
}

// readiness polls GET /readyz every 50 ms until stop closes and returns each
// answer's time and status.
type readyPoint struct {
	at     time.Time
	status int
}

func (in *instance) pollReadiness(stop <-chan struct{}) func() []readyPoint {
	var points []readyPoint
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			status := 0 // no answer
			if res, err := client.Get(in.url + "/readyz"); err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				status = res.StatusCode
			}
			points = append(points, readyPoint{time.Now(), status})
		}
	}()
	return func() []readyPoint { <-done; return points }
}

// flip returns how long after t readiness first answered status, or -1.
func flip(points []readyPoint, t time.Time, status int) time.Duration {
	for _, p := range points {
		if p.at.After(t) && p.status == status {
			return p.at.Sub(t)
		}
	}
	return -1
}

// TestPostgresCrash (TESTPLAN F3): PostgreSQL crashes (immediate shutdown,
// no checkpoint) while publishers publish and subscribers stream, stays down
// 5 s (the plan says 10; 5 keeps CI short and already exceeds the listener's
// backoff cap), then starts with crash recovery. Publishes get 201 or 503
// with Retry-After, never a 500; /readyz fails within 3 s of the crash and
// is back within 3 s of the restart, on both instances; a stream keeps
// heartbeating (or ends with retry: and resumes); every acknowledged event
// is stored and reaches every subscriber.
func TestPostgresCrash(t *testing.T) {
	t.Parallel()
	url, pool, pg, _ := privateCluster(t)
	cfg := testConfig()
	cfg.DatabaseURL = url
	cfg.Stream.Heartbeat = time.Second
	a, b := newInstance(t, pool, cfg), newInstance(t, pool, cfg)
	acme := a.signup("Acme")
	p := a.publisher(acme)
	tok := p.token("u", []string{"load"}, 600)
	start := p.head()
	fa := a.follow(acme.Tenant.ID, "u", []string{"load"}, tok, start)
	fb := b.follow(acme.Tenant.ID, "u", []string{"load"}, tok, start)
	defer fa.close()
	defer fb.close()
	life := a.watch(tok, "load")
	t.Cleanup(func() {
		if t.Failed() { // show why a request failed, if one did
			for _, l := range strings.Split(a.logs.String(), "\n") {
				if strings.Contains(l, `"level":"ERROR"`) {
					t.Log(l)
				}
			}
		}
	})

	stopLoad, stopPolls := make(chan struct{}), make(chan struct{})
	wait := publishLoad(a, acme.APIKey, 4, stopLoad)
	readyA, readyB := a.pollReadiness(stopPolls), b.pollReadiness(stopPolls)
	time.Sleep(500 * time.Millisecond)

	pg("crash")
	crashed := time.Now()
	const down = 5 * time.Second
	time.Sleep(down)
	// The server accepts connections somewhere inside pg.sh start (which
	// also waits for crash recovery, then checks the database): readiness
	// must stay down until the command begins, and be back within 3 s of
	// its end.
	starting := time.Now()
	if got := pg("start"); got != url {
		t.Fatalf("the cluster came back at %s, not %s", got, url)
	}
	started := time.Now()
	t.Logf("pg.sh start took %v", started.Sub(starting).Round(time.Millisecond))
	// Publishing recovers: a publish succeeds again within 5 s.
	for {
		res := b.do("POST", "/v1/events", acme.APIKey, `{"channel":"load","type":"probe"}`)
		if res.status == 201 {
			t.Logf("publishing recovered %v after the restart", time.Since(started).Round(time.Millisecond))
			break
		}
		if time.Since(started) > 5*time.Second {
			t.Fatalf("publishing did not recover within 5 s: %d %s", res.status, res.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // readiness has its 3 s to come back
	close(stopLoad)
	close(stopPolls)
	acked := wait()
	if len(acked) < 50 {
		t.Fatalf("only %d events acknowledged; the load did not run", len(acked))
	}

	for name, points := range map[string][]readyPoint{"a": readyA(), "b": readyB()} {
		dn, up := flip(points, crashed, 503), flip(points, started, 200)
		t.Logf("instance %s: /readyz failed %v after the crash and was back %v after the restart", name, dn, up)
		if dn < 0 || dn > 3*time.Second {
			t.Errorf("instance %s: /readyz did not fail within 3 s of the crash (%v)", name, dn)
		}
		if up < 0 || up > 3*time.Second {
			t.Errorf("instance %s: /readyz did not recover within 3 s of the restart (%v)", name, up)
		}
		for _, p := range points {
			if p.at.After(crashed.Add(dn)) && p.at.Before(starting) && p.status != 503 {
				t.Errorf("instance %s: /readyz = %d at %v while the database was down", name, p.status, p.at.Sub(crashed))
			}
		}
	}
	t.Logf("a stream through the crash: %s", life.check(t, crashed, started.Add(time.Second), cfg.Stream.Heartbeat+2*time.Second))

	fa.await(t, "subscriber on a", acked, 20*time.Second)
	fb.await(t, "subscriber on b", acked, 20*time.Second)
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events WHERE type = 'tick' AND id = ANY($1)`, acked); n != len(acked) {
		t.Errorf("%d of %d acknowledged events are stored after crash recovery", n, len(acked))
	}
}

// inserted fails the test unless tx has inserted events: a fault hook runs
// after INSERT and NOTIFY, and this proves it.
func inserted(t *testing.T, ctx context.Context, tx pgx.Tx) {
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil || n == 0 {
		t.Errorf("fault hook: the transaction holds %d events (%v), want its insert done", n, err)
	}
}

// raise returns a fault hook that raises a PostgreSQL error with this
// SQLSTATE inside the publish transaction, after INSERT and NOTIFY.
func raise(t *testing.T, sqlstate, message string) realtime.FaultHook {
	return func(ctx context.Context, tx pgx.Tx) error {
		inserted(t, ctx, tx)
		_, err := tx.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '%s', MESSAGE = '%s'; END $$`, sqlstate, message))
		return err
	}
}

// eventNotifications returns the payloads of tenant's event notifications.
func eventNotifications(t *testing.T, payloads []string, tenantID string) []string {
	t.Helper()
	var out []string
	for _, p := range payloads {
		if len(p) >= 100 {
			t.Errorf("NOTIFY payload of %d bytes, want < 100: %.120s", len(p), p)
		}
		if strings.HasPrefix(p, tenantID+":") {
			out = append(out, p)
		}
	}
	return out
}

// TestNotifyQueueFullAtCommit (TESTPLAN F5a): the commit of a publish fails
// with SQLSTATE 54000 "too many notifications in the NOTIFY queue", raised
// (1) by the publisher's fault hook after INSERT and NOTIFY, and (2) by the
// COMMIT itself (a deferred constraint trigger, which fires at COMMIT just
// before PostgreSQL queues the notifications). Each time the client gets
// 503 problem+json with Retry-After, nothing is stored (not even the
// Idempotency-Key) and nothing is delivered or notified; the retry with the
// same Idempotency-Key then stores exactly one event, delivered once.
func TestNotifyQueueFullAtCommit(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("u", []string{"c"}, 600)
	s := in.subscribe(acme.Tenant.ID, "u", []string{"c"}, []string{"c"}, subscribeOpts{token: tok})
	s.connID()
	tap := tapNotifications(t, pool)
	start := p.head()
	const body, key = `{"channel":"c","type":"t","data":{"n":1}}`, "f5-retry-once"

	refused := func(what string) {
		t.Helper()
		res := in.do("POST", "/v1/events", acme.APIKey, body, "Idempotency-Key", key)
		if code := checkProblem(t, what, res, http.StatusServiceUnavailable); code != "unavailable" {
			t.Errorf("%s: code %q, want unavailable", what, code)
		}
		if res.header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", what)
		}
		if strings.Contains(string(res.body), "NOTIFY") {
			t.Errorf("%s: the database's error text reached the client: %s", what, res.body)
		}
		if n := pgtest.Count(t, pool, `SELECT count(*) FROM events`); n != 0 {
			t.Errorf("%s: %d events stored", what, n)
		}
		if n := pgtest.Count(t, pool, `SELECT count(*) FROM idempotency_keys`); n != 0 {
			t.Errorf("%s: the Idempotency-Key was kept", what)
		}
	}

	in.svc.pub.SetFaultHook(raise(t, "54000", "too many notifications in the NOTIFY queue"))
	refused("publish with the NOTIFY queue full (fault hook)")
	in.svc.pub.SetFaultHook(nil)

	_, err := pool.Exec(t.Context(), `
		CREATE FUNCTION notify_queue_full() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION USING ERRCODE = '54000', MESSAGE = 'too many notifications in the NOTIFY queue'; END $$;
		CREATE CONSTRAINT TRIGGER notify_queue_full AFTER INSERT ON events
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION notify_queue_full()`)
	if err != nil {
		t.Fatal(err)
	}
	refused("publish whose COMMIT fails with the NOTIFY queue full")
	if _, err := pool.Exec(t.Context(), `DROP TRIGGER notify_queue_full ON events`); err != nil {
		t.Fatal(err)
	}

	s.quiet(time.Second)
	if got := eventNotifications(t, tap.drain(200*time.Millisecond), acme.Tenant.ID); len(got) != 0 {
		t.Errorf("failed commits sent notifications %q", got)
	}
	if h := p.head(); h != start {
		t.Errorf("the head moved from %d to %d although nothing committed", start, h)
	}

	// The client's retry with the same key now succeeds, once.
	ids := p.events(body, "Idempotency-Key", key)
	if want := strconv.FormatInt(start+1, 10); !slices.Equal(ids, []string{want}) {
		t.Errorf("the retry got ids %v, want [%s]: a failed commit burnt an id", ids, want)
	}
	checkSequence(t, "subscriber", s.collect(1, 10*time.Second), []int64{start + 1})
	res := in.do("POST", "/v1/events", acme.APIKey, body, "Idempotency-Key", key)
	var again struct{ IDs []string }
	if res.json(t, &again); res.status != 201 || !slices.Equal(again.IDs, ids) || res.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("a second retry = %d %s, want a replay of %v", res.status, res.body, ids)
	}
	s.quiet(500 * time.Millisecond)
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events`); n != 1 {
		t.Errorf("%d events stored after the retries, want 1", n)
	}
}

// TestNotifyQueueUsageMetric (TESTPLAN F5, the alert): the instance samples
// pg_notification_queue_usage() into hybridrt_notify_queue_usage and logs a
// warning above its threshold. A real queue backlog is made the way it
// happens in production: a session LISTENs and stays idle in a transaction,
// so the queue cannot advance past it, while notifications pile up. (Real
// usage then is a few millionths of PostgreSQL's 8 GB queue, so the test
// lowers the threshold; a second instance with the default 0.1 stays quiet.)
func TestNotifyQueueUsageMetric(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	cfg.NotifyQueue = realtime.QueueWatch{Every: 100 * time.Millisecond, WarnAbove: 1e-7}
	in := newInstance(t, pool, cfg)
	cfg.NotifyQueue = realtime.QueueWatch{Every: 100 * time.Millisecond} // default threshold
	calm := newInstance(t, pool, cfg)

	stall, err := pgx.Connect(t.Context(), dbURL(pool))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stall.Close(context.Background()) })
	if _, err := stall.Exec(t.Context(), `LISTEN dbfaults_stall`); err != nil {
		t.Fatal(err)
	}
	tx, err := stall.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	// Four notifications of nearly 8 kB fill four of the queue's 8 kB pages.
	_, err = pool.Exec(t.Context(), `SELECT pg_notify('dbfaults_fill', g || repeat('x', 7900)) FROM generate_series(1, 4) g`)
	if err != nil {
		t.Fatal(err)
	}

	gauge := regexp.MustCompile(`(?m)^hybridrt_notify_queue_usage (\S+)$`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := in.do("GET", "/metrics", "", "")
		m := gauge.FindSubmatch(res.body)
		v := -1.0
		if m != nil {
			v, _ = strconv.ParseFloat(string(m[1]), 64)
		}
		warned := strings.Contains(in.logs.String(), "NOTIFY queue is filling up")
		if v > 0 && warned {
			t.Logf("hybridrt_notify_queue_usage = %g", v)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: gauge %g (exported: %v), warning logged: %v", v, m != nil, warned)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(calm.logs.String(), "NOTIFY queue is filling up") {
		t.Errorf("an instance with the default threshold of 0.1 warned about a nearly empty queue")
	}
}

// bodyOfSize returns a publish body of exactly n bytes on channel "big" and
// its data as sent. The data is a JSON string mixing multi-byte UTF-8 and
// escapes, padded with x, so a byte-for-byte comparison means something.
func bodyOfSize(n int) (string, string) {
	const prefix, suffix = `{"channel":"big","type":"blob","data":`, `}`
	data := stringOfSize(n - len(prefix) - len(suffix))
	return prefix + data + suffix, data
}

// stringOfSize returns a JSON string literal of exactly n bytes.
func stringOfSize(n int) string {
	units := []string{`héllo `, `\"quoted\" `, `€ `, `😀`, `\n`, `\u2028`, `tab\t`, `\\`, `<&>`, ` `}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; b.Len()+len(units[i%len(units)])+1 <= n-1; i++ {
		b.WriteString(units[i%len(units)])
		if b.Len() > n/2 { // the rest is padding
			break
		}
	}
	b.WriteString(strings.Repeat("x", n-1-b.Len()))
	b.WriteByte('"')
	return b.String()
}

// TestLargePayloads (TESTPLAN F6): bodies of 7,999, 8,000 and 8,001 bytes
// (around NOTIFY's 8000-byte payload limit) and an event of exactly the
// maximum size are stored and delivered byte for byte over SSE and polling;
// one byte more, and 100 kB, get 413 and store nothing; every NOTIFY payload
// the publisher sends stays under 100 bytes (ids only, never the event).
func TestLargePayloads(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	cfg := testConfig()
	in := newInstance(t, pool, cfg)
	acme := in.signup("Acme")
	p := in.publisher(acme)
	grants := []string{"big"}
	tok := p.token("u", grants, 600)
	s := in.subscribe(acme.Tenant.ID, "u", grants, grants, subscribeOpts{token: tok})
	s.connID()
	tap := tapNotifications(t, pool)
	start := p.head()

	limit := cfg.Publish.MaxEventBytes
	var sent []string
	for _, n := range []int{7999, 8000, 8001} {
		body, data := bodyOfSize(n)
		if len(body) != n {
			t.Fatalf("built a body of %d bytes, want %d", len(body), n)
		}
		p.events(body)
		sent = append(sent, data)
	}
	data := stringOfSize(limit)
	p.events(`{"channel":"big","type":"blob","data":` + data + `}`)
	sent = append(sent, data)

	check := func(how string, got []envelope) {
		t.Helper()
		if len(got) != len(sent) {
			t.Fatalf("%s delivered %d events, want %d", how, len(got), len(sent))
		}
		for i, e := range got {
			if e.id(t) != start+int64(i)+1 {
				t.Errorf("%s event %d has id %s, want %d", how, i, e.ID, start+int64(i)+1)
			}
			if string(e.Data) != sent[i] {
				t.Errorf("%s event %d: data of %d bytes differs from the %d bytes sent", how, i, len(e.Data), len(sent[i]))
			}
		}
	}
	check("SSE", s.collect(len(sent), 10*time.Second))
	page, res := in.poll(acme.Tenant.ID, "u", grants, grants, tok, fmt.Sprintf("cursor=%d&timeout=1", start))
	if res.status != 200 {
		t.Fatalf("poll = %d %s", res.status, res.body)
	}
	check("polling", page.Events)

	for _, size := range []int{limit + 1, 100 << 10} {
		res := in.do("POST", "/v1/events", acme.APIKey, `{"channel":"big","type":"blob","data":`+stringOfSize(size)+`}`)
		if code := checkProblem(t, fmt.Sprintf("event of %d bytes", size), res, http.StatusRequestEntityTooLarge); code != "event_too_large" {
			t.Errorf("event of %d bytes: code %q, want event_too_large", size, code)
		}
	}
	if h := p.head(); h != start+int64(len(sent)) {
		t.Errorf("head = %d after the refused events, want %d", h, start+int64(len(sent)))
	}
	s.quiet(300 * time.Millisecond)

	// The notifications name the ids, in a few bytes, whatever the size.
	covered := map[int64]bool{}
	for _, payload := range eventNotifications(t, tap.drain(500*time.Millisecond), acme.Tenant.ID) {
		parts := strings.Split(payload, ":")
		first, err1 := strconv.ParseInt(parts[1], 10, 64)
		last, err2 := strconv.ParseInt(parts[len(parts)-1], 10, 64)
		if len(parts) != 3 || err1 != nil || err2 != nil {
			t.Errorf("NOTIFY payload %q is not tenant:first:last", payload)
			continue
		}
		for id := first; id <= last; id++ {
			covered[id] = true
		}
	}
	for id := start + 1; id <= start+int64(len(sent)); id++ {
		if !covered[id] {
			t.Errorf("no notification named event %d", id)
		}
	}
}

// TestBusyPool (TESTPLAN F7): all 20 connections of an instance's pool (the
// service's default size) are held by pg_sleep(10). Events committed by
// another instance still reach the starved instance's subscribers (the
// listener has a connection of its own), its streams keep heartbeating,
// and a publish on it gets 503 with Retry-After within the API deadline
// instead of hanging until a connection frees.
func TestBusyPool(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t, true)
	starved, err := pgxpool.New(context.Background(), url+"&pool_max_conns=20")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(starved.Close)
	healthy, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(healthy.Close)
	cfg := testConfig()
	cfg.Stream.Heartbeat = time.Second
	a, b := newInstance(t, starved, cfg), newInstance(t, healthy, cfg)
	acme := b.signup("Acme")
	pa, pb := a.publisher(acme), b.publisher(acme)
	tok := pb.token("u", []string{"c"}, 600)
	s := a.subscribe(acme.Tenant.ID, "u", []string{"c"}, []string{"c"}, subscribeOpts{token: tok})
	s.connID()
	life := a.watch(tok, "c")
	pa.events(`{"channel":"c","type":"warm"}`) // a's key and quota caches are warm
	s.collect(1, 10*time.Second)

	const hold = 10 * time.Second
	var sleepers sync.WaitGroup
	for range int(starved.Config().MaxConns) {
		sleepers.Go(func() {
			if _, err := starved.Exec(context.Background(), `SELECT pg_sleep($1)`, hold.Seconds()); err != nil {
				t.Errorf("pg_sleep: %v", err)
			}
		})
	}
	for starved.Stat().AcquiredConns() < starved.Config().MaxConns {
		time.Sleep(10 * time.Millisecond)
	}
	busy := time.Now()

	// Publishes on the starved instance are refused within the deadline.
	var refusals sync.WaitGroup
	for i := range 3 {
		refusals.Go(func() {
			t0 := time.Now()
			res := a.do("POST", "/v1/events", acme.APIKey, fmt.Sprintf(`{"channel":"c","type":"starved","data":%d}`, i))
			took := time.Since(t0)
			if res.status != 503 || res.header.Get("Retry-After") == "" {
				t.Errorf("publish on the starved instance = %d %s after %v, want 503 with Retry-After", res.status, res.body, took)
			}
			if took > apiDeadline+3*time.Second {
				t.Errorf("publish on the starved instance took %v, more than the %v deadline (+3 s)", took, apiDeadline)
			}
			t.Logf("publish on the starved instance: %d after %v", res.status, took.Round(time.Millisecond))
		})
	}

	// New streams and polls on the starved instance are refused within the
	// same deadline, rather than waiting without bound for a connection.
	for _, path := range []string{"/api/realtime/sse?channels=c", "/api/realtime/polling?channels=c&timeout=1"} {
		refusals.Go(func() {
			t0 := time.Now()
			res, err := a.tryDoVia(&http.Client{Timeout: 15 * time.Second}, "GET", path, tok, "")
			took := time.Since(t0)
			if err != nil {
				t.Errorf("GET %s on the starved instance: %v after %v, want 503 with Retry-After", path, err, took)
				return
			}
			if res.status != 503 || res.header.Get("Retry-After") == "" {
				t.Errorf("GET %s on the starved instance = %d %s after %v, want 503 with Retry-After", path, res.status, res.body, took)
			}
			if took > apiDeadline+3*time.Second {
				t.Errorf("GET %s on the starved instance took %v, more than the %v deadline (+3 s)", path, took, apiDeadline)
			}
			t.Logf("GET %s on the starved instance: %d after %v", path, res.status, took.Round(time.Millisecond))
		})
	}
	// A busy pool does not pull the instance out of the load balancer: it
	// still streams, and its LISTEN connection shows the database is up.
	if res := a.do("GET", "/readyz", "", ""); res.status != 200 || !strings.Contains(string(res.body), `"pool":"busy"`) {
		t.Errorf("/readyz on the starved instance = %d %s, want 200 with pool busy", res.status, res.body)
	}

	// Meanwhile events published through b reach a's subscriber.
	arrived := map[string]time.Time{}
	sentAt := map[string]time.Time{}
	for i := 0; time.Since(busy) < hold-2*time.Second; i++ {
		t0 := time.Now()
		ids := pb.events(fmt.Sprintf(`{"channel":"c","type":"t","data":%d}`, i))
		sentAt[ids[0]] = t0
		e := s.collect(1, 5*time.Second)[0]
		arrived[e.ID] = time.Now()
		time.Sleep(100 * time.Millisecond)
	}
	if starved.Stat().AcquiredConns() < starved.Config().MaxConns {
		t.Fatalf("the pool was not starved throughout the test (%d of %d connections held after %v); make hold longer",
			starved.Stat().AcquiredConns(), starved.Config().MaxConns, time.Since(busy))
	}
	refusals.Wait()
	var delays []time.Duration
	for id, t0 := range sentAt {
		at, ok := arrived[id]
		if !ok {
			t.Errorf("event %s published on b did not reach the starved instance's subscriber", id)
			continue
		}
		delays = append(delays, at.Sub(t0))
	}
	slices.Sort(delays)
	p50, p99 := delays[len(delays)/2], delays[(len(delays)*99)/100]
	t.Logf("publish on b → delivery on starved a, %d events: p50 %v, p99 %v", len(delays), p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	if p99 > 2*time.Second { // the plan's target is 500 ms; this bound is for a loaded 2-core CI machine
		t.Errorf("fan-out p99 %v while the pool is starved, want < 2 s", p99)
	}
	t.Logf("a stream on the starved instance: %s", life.check(t, busy, time.Now(), cfg.Stream.Heartbeat+3*time.Second))

	sleepers.Wait()
	pa.events(`{"channel":"c","type":"after"}`) // and it publishes again once connections free up
}

// TestRollbackAfterNotify (TESTPLAN F8): an error after INSERT and NOTIFY,
// before COMMIT, rolls the publish back. An unknown error answers 500
// "internal" (web.Unavailable maps only known transient database errors to
// 503; the error text stays in the log), a serialization failure answers 503
// with Retry-After. No row is stored, no notification is sent, no subscriber
// on either instance sees a ghost event, and the next publish gets the next
// id: a rolled-back publish neither burns nor exposes an id.
func TestRollbackAfterNotify(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	a, b := newInstance(t, pool, testConfig()), newInstance(t, pool, testConfig())
	acme := a.signup("Acme")
	p := a.publisher(acme)
	tok := p.token("u", []string{"c"}, 600)
	sa := a.subscribe(acme.Tenant.ID, "u", []string{"c"}, []string{"c"}, subscribeOpts{token: tok})
	sb := b.subscribe(acme.Tenant.ID, "u", []string{"c"}, []string{"c"}, subscribeOpts{token: tok})
	sa.connID()
	sb.connID()
	tap := tapNotifications(t, pool)
	start := p.head()

	faults := []struct {
		name   string
		hook   realtime.FaultHook
		status int
		code   string
	}{
		{"an unknown error", func(ctx context.Context, tx pgx.Tx) error {
			inserted(t, ctx, tx)
			return errors.New("injected fault between NOTIFY and COMMIT")
		}, 500, "internal"},
		{"a serialization failure", raise(t, "40001", "injected serialization failure"), 503, "unavailable"},
	}
	for _, f := range faults {
		a.svc.pub.SetFaultHook(f.hook)
		res := a.do("POST", "/v1/events", acme.APIKey, `{"channel":"c","type":"ghost","data":{"x":1}}`)
		a.svc.pub.SetFaultHook(nil)
		if code := checkProblem(t, "publish failing with "+f.name, res, f.status); code != f.code {
			t.Errorf("publish failing with %s: code %q, want %q", f.name, code, f.code)
		}
		if strings.Contains(string(res.body), "injected") {
			t.Errorf("publish failing with %s: the error text reached the client: %s", f.name, res.body)
		}
	}
	if !strings.Contains(a.logs.String(), "injected fault between NOTIFY and COMMIT") {
		t.Errorf("the 500's cause is not in the log")
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events`); n != 0 {
		t.Errorf("%d events stored by rolled-back publishes", n)
	}
	sa.quiet(time.Second)
	sb.quiet(100 * time.Millisecond)
	if got := eventNotifications(t, tap.drain(200*time.Millisecond), acme.Tenant.ID); len(got) != 0 {
		t.Errorf("rolled-back publishes sent notifications %q", got)
	}

	ids := p.events(`{"channel":"c","type":"real"}`)
	if want := strconv.FormatInt(start+1, 10); !slices.Equal(ids, []string{want}) {
		t.Errorf("the next publish got ids %v, want [%s]", ids, want)
	}
	for _, s := range []*stream{sa, sb} {
		if got := s.collect(1, 10*time.Second); got[0].id(t) != start+1 || got[0].Type != "real" {
			t.Errorf("subscriber got %+v, want event %d of type real", got[0], start+1)
		}
	}
}

// TestIdenticalEventsInOneRequest (TESTPLAN F9): a batch of two events with
// the same channel, type and data stores two events with two ids, and both
// are delivered (PostgreSQL folds identical NOTIFYs of one transaction, so
// delivery must never hang on one notification per event).
func TestIdenticalEventsInOneRequest(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("u", []string{"c"}, 600)
	s := in.subscribe(acme.Tenant.ID, "u", []string{"c"}, []string{"c"}, subscribeOpts{token: tok})
	s.connID()
	start := p.head()

	const ev = `{"channel":"c","type":"same","data":{"n":1}}`
	ids := p.events(`{"events":[` + ev + `,` + ev + `]}`)
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("ids %v, want two distinct ids", ids)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events WHERE type = 'same'`); n != 2 {
		t.Errorf("%d rows stored, want 2", n)
	}
	got := s.collect(2, 10*time.Second)
	checkSequence(t, "subscriber", got, []int64{start + 1, start + 2})
	for _, e := range got {
		if string(e.Data) != `{"n":1}` {
			t.Errorf("event %s data %s", e.ID, e.Data)
		}
	}
	s.quiet(300 * time.Millisecond)
}

// TestReadOnlyDatabase (TESTPLAN F22): the database turns read-only
// (default_transaction_read_only, as after a failover to a standby that is
// promoted late, or an operator's maintenance switch). Publishes get 503
// "unavailable" with Retry-After and a detail naming the cause, never a 500.
// PostgreSQL 15 allows LISTEN and NOTIFY in read-only transactions, so the
// listener reconnects, passes its self-probe and the instance stays ready:
// streams go on, and new subscribers are admitted. (A hot standby refuses
// LISTEN outright: "cannot execute LISTEN during recovery"; that keeps the
// listener, and readiness, down.) Once the database is writable again,
// publishing resumes and its events are delivered.
func TestReadOnlyDatabase(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	db := pool.Config().ConnConfig.Database
	in := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("u", []string{"c"}, 600)
	s := in.subscribe(acme.Tenant.ID, "u", []string{"c"}, []string{"c"}, subscribeOpts{token: tok})
	s.connID()
	start := p.head()

	admin, err := pgx.Connect(t.Context(), dbURL(pool))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	readOnly := func(on bool) {
		t.Helper()
		sql := "ALTER DATABASE " + db + " SET default_transaction_read_only = on"
		if !on {
			sql = "ALTER DATABASE " + db + " RESET default_transaction_read_only"
		}
		if _, err := admin.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
		// New sessions take the setting: replace the pool's, and the listener's.
		pool.Reset()
		var n int
		err := admin.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND datname = current_database()`, realtime.ListenerAppName).Scan(&n)
		if err != nil || n != 1 {
			t.Fatalf("terminated %d listeners (%v), want 1", n, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for in.svc.hub.Listening() && time.Now().Before(deadline) { // noticed the loss
			time.Sleep(10 * time.Millisecond)
		}
		in.waitReady()
	}
	readOnly(true)
	t.Cleanup(func() { admin.Exec(context.Background(), "ALTER DATABASE "+db+" RESET default_transaction_read_only") })

	var ro string
	if err := pool.QueryRow(t.Context(), `SHOW default_transaction_read_only`).Scan(&ro); err != nil || ro != "on" {
		t.Fatalf("the pool's sessions have default_transaction_read_only = %q (%v), want on", ro, err)
	}
	res := in.do("POST", "/v1/events", acme.APIKey, `{"channel":"c","type":"t"}`)
	if code := checkProblem(t, "publish to a read-only database", res, http.StatusServiceUnavailable); code != "unavailable" {
		t.Errorf("publish to a read-only database: code %q, want unavailable", code)
	}
	if res.header.Get("Retry-After") == "" || !strings.Contains(string(res.body), "read-only") {
		t.Errorf("publish to a read-only database = %s %s, want Retry-After and a detail naming read-only", res.header, res.body)
	}
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events`); n != 0 {
		t.Errorf("%d events stored in a read-only database", n)
	}
	// LISTEN and the probe's NOTIFY work in read-only sessions: still ready.
	if res := in.do("GET", "/readyz", "", ""); res.status != 200 {
		t.Errorf("GET /readyz on a read-only database = %d %s, want 200 (LISTEN works there)", res.status, res.body)
	}
	s2 := in.subscribe(acme.Tenant.ID, "u", []string{"c"}, []string{"c"}, subscribeOpts{token: tok})
	s2.connID()

	readOnly(false)
	ids := p.events(`{"channel":"c","type":"t"}`)
	if want := strconv.FormatInt(start+1, 10); !slices.Equal(ids, []string{want}) {
		t.Errorf("first publish after the database is writable got %v, want [%s]", ids, want)
	}
	for _, st := range []*stream{s, s2} {
		checkSequence(t, "subscriber", st.collect(1, 10*time.Second), []int64{start + 1})
	}
}

// TestStandbyDatabase (TESTPLAN F22, the standby): DATABASE_URL leads to a
// hot standby (the cluster restarted in standby mode, as after a failover
// that left the DSN on the old primary's replica). LISTEN is impossible
// there ("cannot execute LISTEN during recovery"): the listener says so in
// the log, naming the standby, and the instance is not ready. Publishes get
// 503 "unavailable" saying read-only. Once the server is a primary again,
// readiness and publishing come back.
func TestStandbyDatabase(t *testing.T) {
	t.Parallel()
	url, pool, pg, dir := privateCluster(t)
	cfg := testConfig()
	cfg.DatabaseURL = url
	in := newInstance(t, pool, cfg)
	acme := in.signup("Acme")
	p := in.publisher(acme)
	start := p.head()

	// standby.signal makes the server start in standby mode: in recovery,
	// read-only, waiting for WAL that never comes.
	standby := func(on bool) {
		t.Helper()
		pg("stop")
		if on {
			writeAsOwner(t, dir+"/standby.signal", dir)
		} else if err := os.Remove(dir + "/standby.signal"); err != nil {
			t.Fatal(err)
		}
		pg("start")
		pool.Reset() // drop the connections the stop closed
	}
	standby(true)
	var recovering bool
	if err := pool.QueryRow(t.Context(), `SELECT pg_is_in_recovery()`).Scan(&recovering); err != nil || !recovering {
		t.Fatalf("pg_is_in_recovery() = %v (%v), want a standby", recovering, err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(in.logs.String(), "cannot execute LISTEN during recovery") {
		if time.Now().After(deadline) {
			t.Fatalf("no listener error naming recovery within 10 s:\n%s", in.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(in.logs.String(), "point DATABASE_URL at the primary") {
		t.Errorf("the listener's error does not say what to do")
	}
	if in.svc.hub.Listening() {
		t.Errorf("the listener counts as live on a standby")
	}
	if res := in.do("GET", "/readyz", "", ""); res.status != 503 || !strings.Contains(string(res.body), "LISTEN") {
		t.Errorf("GET /readyz on a standby = %d %s, want 503 naming the LISTEN connection", res.status, res.body)
	}
	res := in.do("POST", "/v1/events", acme.APIKey, `{"channel":"c","type":"t"}`)
	if code := checkProblem(t, "publish to a standby", res, http.StatusServiceUnavailable); code != "unavailable" {
		t.Errorf("publish to a standby: code %q, want unavailable", code)
	}
	if !strings.Contains(string(res.body), "read-only") || res.header.Get("Retry-After") == "" {
		t.Errorf("publish to a standby = %s %s, want Retry-After and a detail naming read-only", res.header, res.body)
	}

	standby(false)
	in.waitReady()
	ids := p.events(`{"channel":"c","type":"t"}`)
	if want := strconv.FormatInt(start+1, 10); !slices.Equal(ids, []string{want}) {
		t.Errorf("first publish on the primary again got %v, want [%s]", ids, want)
	}
}

// writeAsOwner creates an empty file owned by the owner of dir (the cluster
// runs as user postgres when the tests run as root).
func writeAsOwner(t *testing.T, name, dir string) {
	t.Helper()
	if err := os.WriteFile(name, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Chown(name, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}
}
