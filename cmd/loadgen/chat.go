package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// scenarioChat is -scenario presence-chat: every subscriber is a member of
// one presence channel that publishes client events to the others.
const scenarioChat = "presence-chat"

// presenceRoom is the scenario's channel: -channel, made a presence channel.
func presenceRoom(channel string) string {
	if strings.HasPrefix(channel, "presence-") {
		return channel
	}
	return "presence-" + channel
}

// setUpRoom signs up a tenant, turns its client events on, and mints one
// token per member: its own sub (m0, m1, …), allowed to subscribe and
// publish to room, as a tenant's backend would for each of its users.
func (a *api) setUpRoom(ctx context.Context, operatorToken, room string, n int, ttl time.Duration) ([]string, error) {
	su, err := a.newTenant(ctx, operatorToken)
	if err != nil {
		return nil, err
	}
	settings := map[string]any{"clientEvents": true}
	if err := a.call(ctx, http.MethodPatch, "/v1/tenant/settings", su.apiKey, settings, &struct{}{}); err != nil {
		return nil, fmt.Errorf("turn client events on: %w", err)
	}
	tokens := make([]string, n)
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
	)
	for range min(n, 16) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				var tok struct {
					Token string `json:"token"`
				}
				req := map[string]any{"sub": memberName(i), "channels": []string{room}, "publish": []string{room}, "ttl": int64(ttl / time.Second)}
				if err := a.call(ctx, http.MethodPost, "/v1/tokens", su.apiKey, req, &tok); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("mint the token of %s: %w", memberName(i), err) })
					return
				}
				tokens[i] = tok.Token
			}
		}()
	}
	wg.Wait()
	return tokens, firstErr
}

// runChat measures client events in a presence channel: N members join
// one channel over hybridrt's own WebSocket, wait until each has seen all
// N, then publish -rate events/s between them (rate/N each) for -duration.
// Every acknowledged event must reach each of the other N−1 members once,
// in id order, and never its sender. ok is false when one did not, when a
// member could not join, see everyone or stay connected, or when a publish
// was refused or never answered: then the run did not carry the load it was
// asked to.
func runChat(ctx context.Context, o options, out io.Writer) (ok bool, err error) {
	n := o.subscribers
	room := presenceRoom(o.channel)
	nofile, err := raiseNoFile()
	if err != nil {
		progress("cannot raise the open-files limit: %v", err)
	}
	if need := uint64(n + 64); nofile > 0 && need > nofile {
		progress("warning: %d members need about %d open files; the limit is %d", n, need, nofile)
	}
	target, err := url.Parse(strings.TrimSuffix(o.url, "/"))
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return false, fmt.Errorf("-url %q is not an http(s) URL such as http://127.0.0.1:8080", o.url)
	}
	d, err := newDialer(target, o.sources)
	if err != nil {
		return false, err
	}
	a := &api{base: target.String(), client: d.httpClient(16)}
	ttl := min(max(time.Hour, 2*(o.duration+o.settle+o.joinWait)), 24*time.Hour)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second+time.Duration(n)*20*time.Millisecond)
	tokens, err := a.setUpRoom(sctx, o.operatorToken, room, n, ttl)
	cancel()
	if err != nil {
		return false, err
	}

	srv, err := watchServer(ctx, o.pid, a, metricsClient)
	if err != nil {
		return false, err
	}

	// Join, a bounded number at a time, then wait until every member has
	// seen all N: only then is every event due to N−1 members.
	latency, stored := new(histogram), new(histogram)
	scfg := &streamConfig{dialer: d, native: room, latency: latency, stored: stored, bufSize: 32 << 10}
	if n > 1000 {
		scfg.bufSize = 4 << 10
	}
	rcfg := &roomConfig{channel: room, members: n, acks: new(histogram)}
	memCtx, cancelMembers := context.WithCancel(ctx)
	defer cancelMembers()
	members := make([]*member, n)
	ended := make([]atomic.Bool, n)
	var (
		membersDone, joinedWG   sync.WaitGroup
		joined, failures, nFull atomic.Int64
		firstErrMu              sync.Mutex
		firstErr                error
	)
	slots := make(chan struct{}, o.openParallel)
	openStart := time.Now()
	joinedWG.Add(n)
	for i := range members {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		m := newMember(scfg, rcfg, i, tokens[i])
		members[i] = m
		membersDone.Add(1)
		go func() {
			defer membersDone.Done()
			defer ended[i].Store(true)
			m.run(memCtx, func(err error) {
				if err == nil {
					joined.Add(1)
				} else {
					failures.Add(1)
					firstErrMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					firstErrMu.Unlock()
				}
				select {
				case <-slots:
				default:
				}
				joinedWG.Done()
			}, func() { nFull.Add(1) })
		}()
	}
	joinedWG.Wait()
	openTime := time.Since(openStart)
	progress("joined %d/%d (failed %d) in %.1f s; waiting up to %s for every member to see all %d", joined.Load(), n, failures.Load(), openTime.Seconds(), o.joinWait, n)
	if firstErr != nil {
		progress("first member failure: %v", firstErr)
	}
	waitStart, lastTick := time.Now(), time.Now()
	for nFull.Load() < joined.Load() && time.Since(waitStart) < o.joinWait && ctx.Err() == nil {
		if time.Since(lastTick) >= time.Second {
			progress("%d/%d members see all %d", nFull.Load(), joined.Load(), n)
			lastTick = time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	var lastFull time.Time
	fullBefore := 0
	for _, m := range members {
		if m.full.Load() {
			fullBefore++
			if m.fullAt.After(lastFull) {
				lastFull = m.fullAt
			}
		}
	}
	joinTime := lastFull.Sub(openStart)
	loadgenGoroutines := runtime.NumGoroutine()
	srv.loaded()

	// Publish: rate/N a second from each member, staggered over one interval.
	interval := time.Duration(float64(time.Second) * float64(n) / o.rate)
	interval = max(interval, 1)
	var before, after cpuSample
	before.take(o.pid)
	progress("publishing %g events/s (%.3g per member) for %s", o.rate, o.rate/float64(n), o.duration)
	pubStart := time.Now()
	deadline := pubStart.Add(o.duration)
	var pubsDone sync.WaitGroup
	for i, m := range members {
		if !m.connected {
			continue
		}
		pubsDone.Add(1)
		go func() {
			defer pubsDone.Done()
			m.publish(ctx, pubStart, interval*time.Duration(i)/time.Duration(n), interval, deadline)
		}()
	}
	pubsDone.Wait()
	if d := time.Until(deadline); d > 0 {
		time.Sleep(d) // rates are per -duration, as in the fan-out run
	}
	pubTime := time.Since(pubStart)
	after.take(o.pid)

	// Settle: every publish answered, and every live member holding every
	// acknowledged event but its own, or -settle at most.
	progress("waiting up to %s for answers and deliveries", o.settle)
	settled, settleTime := settle(ctx, o.settle, func() bool {
		var total int64
		for _, m := range members {
			total += m.nAcked.Load()
		}
		for i, m := range members {
			if m.connected && !ended[i].Load() && (m.nPending.Load() > 0 || m.count.Load() < total-m.nAcked.Load()) {
				return false
			}
		}
		return true
	})
	srv.ended()
	cancelMembers()
	membersDone.Wait()

	srv.settled(ctx, "members")

	t := tallyChat(members)
	r := report{out}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	r.line("date", "%s", time.Now().UTC().Format(time.RFC3339))
	r.line("url", "%s", o.url)
	r.line("scenario", "%s", scenarioChat)
	r.line("transport", "ws")
	r.line("channel", "%s", room)
	r.line("members requested", "%d", n)
	r.line("members joined", "%d", t.connected)
	r.line("members failed to join", "%d", n-t.connected)
	r.line("members lost after joining", "%d", t.lost)
	r.line("join open time s", "%.2f", openTime.Seconds())
	r.line("members seeing all before publishing", "%d/%d", fullBefore, t.connected)
	r.line("presence join time s", "%.2f", joinTime.Seconds())
	r.line("member_removed seen", "%d", t.removed)
	if t.strangers > 0 {
		r.line("members not of this run seen", "%d", t.strangers)
	}
	r.line("target rate events/s", "%g", o.rate)
	r.line("target rate per member events/s", "%.4g", o.rate/float64(n))
	r.line("publish phase s", "%.3f", pubTime.Seconds())
	r.line("events sent", "%d", t.sent)
	r.line("events acknowledged", "%d", t.nAcked)
	r.line("events refused", "%d", t.nRefused)
	if len(t.refused) > 0 {
		r.line("events refused by code", "%s", t.refusedCodes())
	}
	r.line("events unanswered", "%d", t.unanswered)
	if t.unmatched > 0 || t.dupAcked > 0 {
		r.line("answers for no pending publish", "%d", t.unmatched)
		r.line("ids acknowledged twice", "%d", t.dupAcked)
	}
	r.line("publish throughput events/s", "%.1f", float64(t.nAcked)/pubTime.Seconds())
	r.line("publish ack latency p50 ms", "%s", ms(rcfg.acks.quantile(0.50)))
	r.line("publish ack latency p99 ms", "%s", ms(rcfg.acks.quantile(0.99)))
	r.line("settled", "%t", settled)
	r.line("settle time s", "%.3f", settleTime.Seconds())
	r.line("expected deliveries", "%d", t.expected)
	r.line("delivered", "%d", t.delivered)
	r.line("delivered/expected", "%d/%d", t.delivered, t.expected)
	r.line("missing", "%d", t.expected-t.delivered)
	r.line("duplicates", "%d", t.dups)
	r.line("out-of-order", "%d", t.ooo)
	r.line("delivered to the sender", "%d", t.echoed)
	r.line("delivered but not acknowledged", "%d", t.unacked)
	r.line("deliveries/s", "%.0f", float64(t.delivered)/pubTime.Seconds())
	r.line("latency samples", "%d", latency.count())
	r.line("latency p50 ms", "%s", ms(latency.quantile(0.50)))
	r.line("latency p90 ms", "%s", ms(latency.quantile(0.90)))
	r.line("latency p99 ms", "%s", ms(latency.quantile(0.99)))
	r.line("latency p99.9 ms", "%s", ms(latency.quantile(0.999)))
	r.line("latency max ms", "%s", ms(time.Duration(latency.max.Load())))
	if k := latency.over.Load(); k > 0 {
		r.line("latency samples over 10 s", "%d", k)
	}
	r.line("latency from stored p50 ms", "%s", ms(stored.quantile(0.50)))
	r.line("latency from stored p99 ms", "%s", ms(stored.quantile(0.99)))
	after.report(r, before, pubTime, t.delivered)
	if o.pid != 0 {
		r.line("server pid", "%d", o.pid)
		r.line("server rss before members KiB", "%d", srv.rssBefore)
		r.line("server rss with members joined KiB", "%d", srv.rssLoaded)
		srv.reportTail(r)
		srv.reportBeforeAfter(r)
	}
	user, sys, maxRSS := selfUsage()
	r.line("loadgen cpu user s", "%.2f", user.Seconds())
	r.line("loadgen cpu sys s", "%.2f", sys.Seconds())
	r.line("loadgen max rss KiB", "%d", maxRSS)
	r.line("loadgen goroutines with members joined", "%d", loadgenGoroutines)
	r.line("loadgen open files limit", "%d", nofile)
	r.line("nproc", "%d", runtime.NumCPU())

	for _, code := range slices.Sorted(maps.Keys(t.firstRefusal)) {
		progress("first refusal %s: %s", code, t.firstRefusal[code])
	}
	for _, e := range t.errs {
		progress("member lost: %s", e)
	}
	missing := t.expected - t.delivered
	ok = t.connected == n && t.lost == 0 && fullBefore == t.connected && missing == 0 && t.dups == 0 &&
		t.ooo == 0 && t.echoed == 0 && t.nRefused == 0 && t.unanswered == 0 && t.dupAcked == 0
	if !ok {
		progress("FAILED: %d missing, %d duplicates, %d out of order, %d to the sender; %d refused, %d unanswered; %d of %d joined, %d saw all, %d lost",
			missing, t.dups, t.ooo, t.echoed, t.nRefused, t.unanswered, t.connected, n, fullBefore, t.lost)
	}
	if !srv.check("members") {
		ok = false
	}
	return ok, nil
}

// chatTally is what the members sent and received, added up.
type chatTally struct {
	connected, lost                      int
	sent, nAcked, nRefused, unanswered   int64
	unmatched, dupAcked                  int64
	expected, delivered, echoed, unacked int64
	dups, ooo, removed, strangers        int64
	refused                              map[string]int64
	firstRefusal                         map[string]string
	errs                                 []string
}

// tallyChat adds up the members, once their goroutines have returned. A
// member's due events are every acknowledged one but its own.
func tallyChat(members []*member) chatTally {
	t := chatTally{refused: map[string]int64{}, firstRefusal: map[string]string{}}
	sets := make([]*idSet, 0, len(members))
	for _, m := range members {
		sets = append(sets, &m.acked)
	}
	all, overlap := mergeSets(sets) // an id given to two members' publishes
	t.dupAcked = overlap
	t.nAcked = all.len()
	for _, m := range members {
		t.sent += m.sent
		t.unmatched += m.unmatched
		t.dupAcked += m.dupAcked
		t.unanswered += int64(len(m.pending))
		for code, k := range m.refused {
			t.refused[code] += k
			t.nRefused += k
			if _, ok := t.firstRefusal[code]; !ok {
				t.firstRefusal[code] = m.firstRefusal[code]
			}
		}
		if !m.connected {
			continue
		}
		t.connected++
		if m.err != nil {
			t.lost++
			if len(t.errs) < 3 {
				t.errs = append(t.errs, m.err.Error())
			}
		}
		inAcked := intersectLen(&m.ids, all)
		echoed := intersectLen(&m.ids, &m.acked)
		t.expected += t.nAcked - m.acked.len()
		t.delivered += inAcked - echoed
		t.echoed += echoed
		t.unacked += m.ids.len() - inAcked
		t.dups += m.dups
		t.ooo += m.ooo
		t.removed += m.removed
		t.strangers += m.strangers
	}
	return t
}

// refusedCodes is "code=count …", by code.
func (t chatTally) refusedCodes() string {
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(t.refused)) {
		parts = append(parts, fmt.Sprintf("%s=%d", code, t.refused[code]))
	}
	return strings.Join(parts, " ")
}

// cpuSample is where the server's and the machine's counters stood at one
// moment: the publish phase is measured between two of them.
type cpuSample struct {
	server      time.Duration
	writes      int64         // the server's write system calls
	busy, total int64         // the machine's CPU ticks
	self        time.Duration // the load generator's own CPU
	ok          bool          // the server's counters were read
}

func (c *cpuSample) take(pid int) {
	c.busy, c.total, _ = machineCPU()
	u, s, _ := selfUsage()
	c.self = u + s
	if pid == 0 {
		return
	}
	var err1, err2 error
	c.server, err1 = procCPU(pid)
	c.writes, err2 = procWrites(pid)
	c.ok = err1 == nil && err2 == nil
}

// report writes the publish phase's CPU: the server's, its writes per
// second and events per write, the load generator's, and the machine's.
func (c cpuSample) report(r report, before cpuSample, elapsed time.Duration, delivered int64) {
	s := elapsed.Seconds()
	if c.ok && before.ok {
		cpu := c.server - before.server
		writes := c.writes - before.writes
		r.line("server cpu during publish s", "%.2f", cpu.Seconds())
		r.line("server cpu during publish cores", "%.2f", cpu.Seconds()/s)
		r.line("server write syscalls/s during publish", "%.0f", float64(writes)/s)
		if writes > 0 {
			r.line("deliveries per server write syscall", "%.2f", float64(delivered)/float64(writes))
		}
		if delivered > 0 {
			r.line("server cpu per delivery us", "%.2f", float64(cpu.Microseconds())/float64(delivered))
		}
	}
	r.line("loadgen cpu during publish cores", "%.2f", (c.self-before.self).Seconds()/s)
	if total := c.total - before.total; total > 0 {
		r.line("machine busy during publish %", "%.1f", 100*float64(c.busy-before.busy)/float64(total))
	}
}
