package main

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/faultproxy"
	"github.com/hybridrt/hybridrt/internal/pgtest"
)

// follower is a subscriber that, like the SDKs, reconnects with its last id
// whenever its stream ends, and drops duplicate ids.
type follower struct {
	mu   sync.Mutex
	ids  []int64
	seen map[int64]bool
	stop chan struct{}
	done chan struct{}
}

func (in *instance) follow(tenantID, subject string, channels []string, token string, from int64) *follower {
	f := &follower{seen: map[int64]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		last := strconv.FormatInt(from, 10)
		for {
			select {
			case <-f.stop:
				return
			default:
			}
			s, _ := in.trySubscribe(tenantID, subject, channels, channels, subscribeOpts{token: token, lastEventID: last})
			if s == nil { // the database may be down: retry shortly
				time.Sleep(100 * time.Millisecond)
				continue
			}
		read:
			for {
				select {
				case e := <-s.events:
					id := e.id(in.t)
					f.mu.Lock()
					if !f.seen[id] {
						f.seen[id] = true
						f.ids = append(f.ids, id)
					}
					f.mu.Unlock()
					last = e.ID
				case <-s.done:
					break read
				case <-f.stop:
					s.close()
					return
				}
			}
		}
	}()
	return f
}

// await waits until f has every id in want, then checks order.
func (f *follower) await(t *testing.T, who string, want []int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f.mu.Lock()
		missing := 0
		for _, id := range want {
			if !f.seen[id] {
				missing++
			}
		}
		ids := slices.Clone(f.ids)
		f.mu.Unlock()
		if missing == 0 {
			if !slices.IsSorted(ids) {
				t.Errorf("%s received ids out of order", who)
			}
			return
		}
		if time.Now().After(deadline) {
			var ms []int64
			for _, id := range want {
				if !f.seen[id] {
					ms = append(ms, id)
				}
			}
			t.Fatalf("%s is missing %d of %d acknowledged events after %v: %v", who, missing, len(want), timeout, ms)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (f *follower) close() {
	close(f.stop)
	<-f.done
}

// publishLoad publishes from n goroutines until stop closes, retrying what
// fails, and returns the ids acknowledged with 201.
func publishLoad(in *instance, key string, n int, stop <-chan struct{}) func() []int64 {
	var (
		mu    sync.Mutex
		acked []int64
		wg    sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				res := in.do("POST", "/v1/events", key, fmt.Sprintf(`{"channel":"load","type":"tick","data":[%d,%d]}`, i, j))
				switch {
				case res.status == 201:
					var out struct{ IDs []string }
					res.json(in.t, &out)
					mu.Lock()
					for _, s := range out.IDs {
						id, _ := strconv.ParseInt(s, 10, 64)
						acked = append(acked, id)
					}
					mu.Unlock()
				case res.status == 503 && res.header.Get("Retry-After") != "":
					time.Sleep(50 * time.Millisecond) // refused cleanly: nothing stored
				default:
					in.t.Errorf("publish during a fault = %d %s, want 201 or 503 with Retry-After", res.status, res.body)
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	return func() []int64 {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		slices.Sort(acked)
		return acked
	}
}

// TestListenerKilled: the LISTEN backend is terminated while publishing;
// the listener reconnects, catches up, and every acknowledged event reaches
// every subscriber, on the instance that lost its listener and on another.
func TestListenerKilled(t *testing.T) {
	checkResources(t) // serial, so O4 can count the whole process
	pool := pgtest.NewDB(t)
	a, b := newInstance(t, pool, testConfig()), newInstance(t, pool, testConfig())
	acme := a.signup("Acme")
	p := a.publisher(acme)
	tok := p.token("u", []string{"load"}, 600)
	start := p.head()
	fa := a.follow(acme.Tenant.ID, "u", []string{"load"}, tok, start)
	fb := b.follow(acme.Tenant.ID, "u", []string{"load"}, tok, start)
	defer fa.close()
	defer fb.close()

	stop := make(chan struct{})
	wait := publishLoad(b, acme.APIKey, 4, stop)
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		a.waitReady() // both listeners back from the previous round
		b.waitReady()
		killListeners(t, pool, 2)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	acked := wait()
	if len(acked) < 50 {
		t.Fatalf("only %d events acknowledged; the load did not run", len(acked))
	}
	fa.await(t, "subscriber on a", acked, 20*time.Second)
	fb.await(t, "subscriber on b", acked, 20*time.Second)
	for _, in := range []*instance{a, b} {
		deadline := time.Now().Add(10 * time.Second)
		for !in.svc.hub.Listening() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !in.svc.hub.Listening() {
			t.Errorf("listener did not come back")
		}
	}
}

// killListeners terminates the LISTEN backends of every instance on pool's
// database, as an operator or a crash would, and fails unless there were want.
func killListeners(t *testing.T, pool *pgxpool.Pool, want int) {
	t.Helper()
	var killed int
	err := pool.QueryRow(t.Context(), `
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		 WHERE application_name = 'hybridrt-listener' AND datname = current_database()`).Scan(&killed)
	if err != nil || killed != want {
		t.Fatalf("terminated %d listeners (%v), want %d", killed, err, want)
	}
}

// TestPostgresRestart: PostgreSQL restarts while publishers publish and
// subscribers stream. Publishes in flight fail with 503 (never 500, never a
// 201 without a commit); the pool and the listener recover without a
// process restart; every acknowledged event reaches every subscriber.
func TestPostgresRestart(t *testing.T) {
	checkResources(t) // serial, so O4 can count the whole process
	url, pool, pg, _ := privateCluster(t)
	cfg := testConfig()
	cfg.DatabaseURL = url
	a, b := newInstance(t, pool, cfg), newInstance(t, pool, cfg)
	acme := a.signup("Acme")
	p := a.publisher(acme)
	tok := p.token("u", []string{"load"}, 600)
	start := p.head()
	fa := a.follow(acme.Tenant.ID, "u", []string{"load"}, tok, start)
	fb := b.follow(acme.Tenant.ID, "u", []string{"load"}, tok, start)
	defer fa.close()
	defer fb.close()

	stop := make(chan struct{})
	wait := publishLoad(a, acme.APIKey, 4, stop)
	time.Sleep(500 * time.Millisecond)
	pg("restart")
	restarted := time.Now()
	// Recovery: a publish succeeds again within 5 s.
	for {
		res := b.do("POST", "/v1/events", acme.APIKey, `{"channel":"load","type":"probe"}`)
		if res.status == 201 {
			var out struct{ IDs []string }
			res.json(t, &out)
			t.Logf("publishing recovered %v after the restart", time.Since(restarted).Round(time.Millisecond))
			break
		}
		if time.Since(restarted) > 5*time.Second {
			t.Fatalf("publishing did not recover within 5 s: %d %s", res.status, res.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	acked := wait()
	t.Cleanup(func() {
		if t.Failed() {
			buf := make([]byte, 1<<22)
			n := runtime.Stack(buf, true)
			for _, g := range strings.Split(string(buf[:n]), "\n\n") {
				if strings.Contains(g, "realtime.") {
					t.Logf("%s", g)
				}
			}
		}
	})
	fa.await(t, "subscriber on a", acked, 20*time.Second)
	fb.await(t, "subscriber on b", acked, 20*time.Second)
	if n := pgtest.Count(t, pool, `SELECT count(*) FROM events WHERE type = 'tick' AND id = ANY($1)`, acked); n != len(acked) {
		t.Errorf("%d of %d acknowledged events are stored", n, len(acked))
	}
}

func grepNonRequest(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, `"msg":"request"`) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestListenerBlackholed (TESTPLAN F4): the network path of the LISTEN
// connection silently drops everything. The listener's self-probe notices
// within the heartbeat interval plus 5 s, reconnects when the path heals,
// catches up, and every acknowledged event reaches the subscriber.
func TestListenerBlackholed(t *testing.T) {
	checkResources(t) // serial, so O4 can count the whole process
	pool := pgtest.NewDB(t)
	c := pool.Config().ConnConfig
	proxy, err := faultproxy.StartPostgres(fmt.Sprintf("%s:%d", c.Host, c.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	cfg := testConfig()
	cfg.Stream.Heartbeat = time.Second // also the listener's probe interval
	// Only the listener goes through the proxy; the pool stays direct.
	cfg.DatabaseURL = fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", c.User, proxy.Addr(), c.Database)
	in := newInstance(t, pool, cfg)
	// Events are published on another instance: the subscriber's instance
	// learns of them only through its listener. (Its own publisher hands
	// its hub what it commits without the listener.)
	other := newInstance(t, pool, testConfig())
	acme := in.signup("Acme")
	p := in.publisher(acme)
	tok := p.token("u", []string{"load"}, 600)
	f := in.follow(acme.Tenant.ID, "u", []string{"load"}, tok, p.head())
	defer f.close()

	stop := make(chan struct{})
	wait := publishLoad(other, acme.APIKey, 2, stop)
	time.Sleep(300 * time.Millisecond)
	proxy.Pause()
	paused := time.Now()
	for in.svc.hub.Listening() {
		if time.Since(paused) > cfg.Stream.Heartbeat+5*time.Second+3*time.Second {
			t.Fatalf("the listener did not notice a blackholed connection within %v", time.Since(paused))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("blackholed LISTEN connection noticed after %v", time.Since(paused).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	proxy.Resume()
	close(stop)
	acked := wait()
	f.await(t, "subscriber", acked, 30*time.Second)
	if !in.svc.hub.Listening() {
		t.Errorf("the listener is not back after the path healed")
	}
}

// TestListenerProbeFailsWithoutNotifications (TESTPLAN F10): a LISTEN
// connection that receives no notifications (as behind a pooler in
// transaction mode) keeps the instance unready, with an error that says why.
func TestListenerProbeFailsWithoutNotifications(t *testing.T) {
	checkResources(t) // serial, so O4 can count the whole process
	pool := pgtest.NewDB(t)
	c := pool.Config().ConnConfig
	proxy, err := faultproxy.StartPostgres(fmt.Sprintf("%s:%d", c.Host, c.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	cfg := testConfig()
	cfg.DatabaseURL = fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", c.User, proxy.Addr(), c.Database)
	proxy.DropNotifications(true)
	in := startInstance(t, pool, cfg)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(in.logs.String(), "pooler in transaction mode") {
		if time.Now().After(deadline) {
			t.Fatalf("no self-probe error within 15 s:\n%s", in.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if in.svc.hub.Listening() {
		t.Errorf("the listener counts as live although notifications never arrive")
	}
	if res := in.do("GET", "/readyz", "", ""); res.status != 503 || !strings.Contains(string(res.body), "LISTEN") {
		t.Errorf("GET /readyz = %d %s, want 503 naming the LISTEN connection", res.status, res.body)
	}
	proxy.DropNotifications(false)
	in.waitReady()
}
