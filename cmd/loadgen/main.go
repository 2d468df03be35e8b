// Command loadgen measures a hybridrt server: it signs up a tenant of its
// own, opens subscribers on one channel (SSE; with -transport ws WebSocket
// connections of hybridrt's own protocol; with -transport pusher WebSocket
// connections speaking the Pusher Channels protocol to the server's
// /app/{key} door), publishes timestamped events
// with concurrent publishers, and checks that every subscriber received
// every acknowledged event exactly once and in order, with the delivery
// latency. With -pid it also checks that the server's goroutines return to
// their baseline once the subscribers close; with -raw-db it measures, in
// the same run, how many INSERT + pg_notify transactions PostgreSQL itself
// commits per second, the ceiling of a publish path that commits each
// event. The report is plain text, one "name: value" per line; the exit
// status is 1 when an event was missing or duplicated, a subscriber could
// not connect, or the server's goroutines stayed above their baseline.
//
// With -scenario presence-chat the subscribers are instead the members of
// one presence channel, each a user of its own over hybridrt's own
// WebSocket, that wait until each has seen all the others and then publish
// client events to one another (chat.go): every acknowledged event must
// reach every member but its sender, once and in order.
//
//	go run ./cmd/loadgen -subscribers 100 -publishers 16 -duration 10s
//	go run ./cmd/loadgen -subscribers 10000 -rate 1 -publishers 1 -duration 30s -pid $(pgrep -n api) -idle-sample
//	go run ./cmd/loadgen -subscribers 100 -publishers 16 -duration 10s -pid $API_PID -raw-db $DATABASE_URL
//	go run ./cmd/loadgen -transport pusher -subscribers 10000 -rate 1 -publishers 1 -duration 30s -pid $API_PID -idle-sample
//	go run ./cmd/loadgen -transport ws -subscribers 10000 -rate 1 -publishers 1 -duration 30s -pid $API_PID -idle-sample
//	go run ./cmd/loadgen -scenario presence-chat -subscribers 1000 -rate 100 -duration 20s -settle 30s -pid $API_PID
//
// See docs/benchmarks.md for how the project's figures were taken.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

type options struct {
	url           string
	transport     string
	subscribers   int
	channel       string
	publishers    int
	rate          float64
	batch         int
	duration      time.Duration
	settle        time.Duration
	pid           int
	sources       int
	idleSample    bool
	idleWait      time.Duration
	openParallel  int
	operatorToken string
	cpuProfile    string
	rawDB         string
	scenario      string
	joinWait      time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:8080", "the server's base URL")
	flag.StringVar(&o.transport, "transport", "sse", "how subscribers connect: sse, ws (hybridrt's own WebSocket protocol, hybridrt.v1), or pusher (WebSocket, Pusher Channels protocol 7, on a channel the run makes public)")
	flag.IntVar(&o.subscribers, "subscribers", 100, "subscriber connections to open")
	flag.StringVar(&o.channel, "channel", "load", "the channel to publish and subscribe to")
	flag.IntVar(&o.publishers, "publishers", 16, "concurrent publishers, each with one request in flight")
	flag.Float64Var(&o.rate, "rate", 0, "target events per second in total; 0 publishes as fast as possible")
	flag.IntVar(&o.batch, "batch", 1, "events per publish request (1 sends a single event, more send {\"events\":[…]})")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of the publish phase")
	flag.DurationVar(&o.settle, "settle", 5*time.Second, "how long to wait for deliveries after the publish phase")
	flag.IntVar(&o.pid, "pid", 0, "the server's process id, to read its memory and CPU time from /proc")
	flag.IntVar(&o.sources, "sources", 8, "spread client source addresses over 127.0.0.1..127.0.0.K (loopback servers only)")
	flag.BoolVar(&o.idleSample, "idle-sample", false, "measure the server's memory per idle connection: RSS before the subscribers and after they are connected and idle (needs -pid)")
	flag.DurationVar(&o.idleWait, "idle-wait", 5*time.Second, "with -idle-sample, how long the connections sit idle before the second RSS reading")
	flag.IntVar(&o.openParallel, "open-concurrency", 200, "subscribers being opened at once")
	flag.StringVar(&o.operatorToken, "operator-token", os.Getenv("OPERATOR_TOKEN"), "bearer token for sign-up when the server runs with SIGNUP=closed (default $OPERATOR_TOKEN)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file, to check what it costs")
	flag.StringVar(&o.rawDB, "raw-db", "", "after the run, measure PostgreSQL's own rate of BEGIN; INSERT; SELECT pg_notify; COMMIT transactions in the database at this `DATABASE_URL`, with -publishers clients for -duration, in a scratch table "+rawTable+" that is dropped afterwards; the report compares the publish rate with it")
	flag.StringVar(&o.scenario, "scenario", "fanout", "fanout: -publishers publish over HTTP to -subscribers; "+scenarioChat+": -subscribers members of the presence channel presence-<channel> (hybridrt.v1 WebSocket, a token and user each) publish client events to each other, -rate events/s in all, each delivered to every member but its sender")
	flag.DurationVar(&o.joinWait, "join-wait", time.Minute, "with -scenario "+scenarioChat+", how long to wait, once all have joined, for every member to see all the others")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: loadgen [flags]\n\nLoad-tests a hybridrt server over HTTP and SSE or WebSocket; see docs/benchmarks.md.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fail("unexpected argument %q; every setting is a flag (-h lists them)", flag.Arg(0))
	}
	transportSet := false
	flag.Visit(func(f *flag.Flag) { transportSet = transportSet || f.Name == "transport" })
	if o.scenario == scenarioChat && !transportSet {
		o.transport = "ws" // members need the protocol that publishes and has presence
	}
	switch {
	case o.scenario != "fanout" && o.scenario != scenarioChat:
		fail("-scenario %q: fanout or %s", o.scenario, scenarioChat)
	case o.scenario == scenarioChat && o.transport != "ws":
		fail("-scenario %s runs over hybridrt's own WebSocket: leave -transport out or give ws", scenarioChat)
	case o.scenario == scenarioChat && o.subscribers < 2:
		fail("-scenario %s needs at least 2 members (-subscribers)", scenarioChat)
	case o.scenario == scenarioChat && o.rate <= 0:
		fail("-scenario %s needs -rate, the client events per second of all members together", scenarioChat)
	case o.scenario == scenarioChat && (o.rawDB != "" || o.idleSample):
		fail("-scenario %s takes neither -raw-db nor -idle-sample", scenarioChat)
	case o.joinWait <= 0:
		fail("-join-wait must be positive")
	case o.transport != "sse" && o.transport != "ws" && o.transport != "pusher":
		fail("-transport %q: sse, ws or pusher", o.transport)
	case o.subscribers < 0:
		fail("-subscribers must be 0 or more")
	case o.publishers < 1:
		fail("-publishers must be at least 1")
	case o.batch < 1:
		fail("-batch must be at least 1")
	case o.rate < 0:
		fail("-rate must be 0 (as fast as possible) or more")
	case o.duration <= 0:
		fail("-duration must be positive")
	case o.settle < 0:
		fail("-settle must not be negative")
	case o.openParallel < 1:
		fail("-open-concurrency must be at least 1")
	case o.idleSample && o.pid == 0:
		fail("-idle-sample reads the server's memory: give its process id with -pid")
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fail("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail("%v", err)
		}
	}
	ok, err := run(o, os.Stdout)
	if o.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		fail("%v", err)
	}
	if !ok {
		os.Exit(1)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(2)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
}

// report collects "name: value" lines.
type report struct{ w io.Writer }

func (r report) line(name, format string, args ...any) {
	fmt.Fprintf(r.w, "%s: %s\n", name, fmt.Sprintf(format, args...))
}

// run does one measurement and writes its report to out. ok is false when
// an event was missing or duplicated, a subscriber never connected, or (with
// -pid) the server kept more than goroutineSlack goroutines beyond its
// baseline once the subscribers had closed.
func run(o options, out io.Writer) (ok bool, err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.scenario == scenarioChat {
		return runChat(ctx, o, out)
	}
	if o.transport == "" {
		o.transport = "sse"
	}

	nofile, err := raiseNoFile()
	if err != nil {
		progress("cannot raise the open-files limit: %v", err)
	}
	if need := uint64(o.subscribers + o.publishers + 64); nofile > 0 && need > nofile {
		progress("warning: %d subscribers need about %d open files; the limit is %d", o.subscribers, need, nofile)
	}
	target, err := url.Parse(strings.TrimSuffix(o.url, "/"))
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return false, fmt.Errorf("-url %q is not an http(s) URL such as http://127.0.0.1:8080", o.url)
	}
	d, err := newDialer(target, o.sources)
	if err != nil {
		return false, err
	}
	a := &api{base: target.String(), client: d.httpClient(o.publishers)}

	var rawPool *pgxpool.Pool
	if o.rawDB != "" {
		// Connect now, so that a wrong URL stops the run before it starts.
		if rawPool, err = openRaw(ctx, o.rawDB, o.publishers); err != nil {
			return false, err
		}
		defer rawPool.Close()
	}

	// The token must outlive the whole run: opening, idling, publishing, settling.
	ttl := max(time.Hour, 2*(o.duration+o.settle+o.idleWait)+time.Duration(o.subscribers)*10*time.Millisecond)
	ttl = min(ttl, 24*time.Hour)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	su, err := a.signUp(sctx, o.operatorToken, o.channel, ttl, o.transport == "pusher")
	cancel()
	if err != nil {
		return false, err
	}

	srv, err := watchServer(ctx, o.pid, a, metricsClient)
	if err != nil {
		return false, err
	}

	// Open the subscribers, a bounded number at a time.
	latency, stored := new(histogram), new(histogram)
	scfg := &streamConfig{
		dialer:  d,
		path:    "/api/realtime/sse?channels=" + url.QueryEscape(o.channel),
		token:   su.token,
		latency: latency,
		stored:  stored,
		bufSize: 32 << 10,
	}
	switch o.transport {
	case "pusher":
		scfg.path, scfg.pusher = pusherPath(su.appKey), o.channel
	case "ws":
		scfg.path, scfg.native = nativePath, o.channel
	}
	if o.subscribers > 1000 {
		scfg.bufSize = 4 << 10 // memory: two buffers per subscriber
	}
	subCtx, cancelSubs := context.WithCancel(ctx)
	defer cancelSubs()
	subs := make([]*subscriber, o.subscribers)
	var (
		subsDone         sync.WaitGroup
		readyWG          sync.WaitGroup
		opened, failures atomic.Int64
		firstErrMu       sync.Mutex
		firstErr         error
	)
	slots := make(chan struct{}, o.openParallel)
	openStart := time.Now()
	ticker := time.NewTicker(time.Second)
	tickDone := make(chan struct{})
	go func() {
		for {
			select {
			case <-ticker.C:
				progress("opened %d/%d (failed %d)", opened.Load(), o.subscribers, failures.Load())
			case <-tickDone:
				return
			}
		}
	}()
	readyWG.Add(o.subscribers)
	for i := range subs {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		s := &subscriber{cfg: scfg}
		subs[i] = s
		subsDone.Add(1)
		go func() {
			defer subsDone.Done()
			s.run(subCtx, func(err error) {
				if err == nil {
					opened.Add(1)
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
				readyWG.Done()
			})
		}()
	}
	readyWG.Wait()
	ticker.Stop()
	close(tickDone)
	openTime := time.Since(openStart)
	progress("opened %d/%d (failed %d) in %.1f s", opened.Load(), o.subscribers, failures.Load(), openTime.Seconds())
	if firstErr != nil {
		progress("first subscriber failure: %v", firstErr)
	}
	loadgenGoroutines := runtime.NumGoroutine()
	if o.idleSample {
		progress("idle for %s before reading the server's memory", o.idleWait)
		select {
		case <-time.After(o.idleWait):
		case <-ctx.Done():
		}
	}
	srv.loaded()

	// Publish.
	var interval time.Duration
	if o.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(o.publishers*o.batch) / o.rate)
		if interval <= 0 {
			interval = 1
		}
	}
	pcfg := &publishConfig{
		client:   a.client,
		url:      a.base + "/v1/events",
		apiKey:   su.apiKey,
		channel:  o.channel,
		batch:    o.batch,
		interval: interval,
		latency:  new(histogram),
	}
	var cpuBefore, cpuAfter time.Duration
	if o.pid != 0 {
		cpuBefore, _ = procCPU(o.pid)
	}
	progress("publishing for %s", o.duration)
	pubs := make([]*publisher, o.publishers)
	var pubsDone sync.WaitGroup
	pubStart := time.Now()
	deadline := pubStart.Add(o.duration)
	for i := range pubs {
		p := &publisher{cfg: pcfg, idx: i}
		pubs[i] = p
		offset := time.Duration(0)
		if interval > 0 {
			offset = interval * time.Duration(i) / time.Duration(o.publishers) // stagger the publishers
		}
		pubsDone.Add(1)
		go func() {
			defer pubsDone.Done()
			p.run(ctx, pubStart, offset, deadline)
		}()
	}
	pubsDone.Wait()
	pubTime := time.Since(pubStart)
	if o.pid != 0 {
		cpuAfter, _ = procCPU(o.pid)
	}

	sets := make([]*idSet, len(pubs))
	var reqOK, short, dupAcked int64
	failed := map[string]int64{}
	firstPubErr := map[string]string{}
	for i, p := range pubs {
		sets[i] = &p.acked
		reqOK += p.ok
		short += p.short
		dupAcked += p.dupAcked
		for k, v := range p.failed {
			failed[k] += v
			if _, seen := firstPubErr[k]; !seen {
				firstPubErr[k] = p.firstErr[k]
			}
		}
	}
	acked, overlap := mergeSets(sets)
	dupAcked += overlap
	nAcked, maxAcked := acked.len(), acked.max()

	// Settle: wait until every connected subscriber has as many events as
	// were acknowledged, up to the last one, or for -settle at most.
	progress("published %d events; waiting up to %s for deliveries", nAcked, o.settle)
	settled, settleTime := settle(ctx, o.settle, func() bool {
		for _, s := range subs {
			if s.connected && (s.count.Load() < nAcked || s.high.Load() < maxAcked) {
				return false
			}
		}
		return true
	})
	srv.ended()
	cancelSubs()
	subsDone.Wait()

	// Back to baseline? The publishers' kept-alive connections are closed
	// first: each is a goroutine on the server until then.
	srv.settled(ctx, "subscribers")

	// The raw ceiling, with the server idle again.
	var raw rawResult
	var rawErr error
	if rawPool != nil && ctx.Err() == nil {
		progress("measuring raw INSERT+NOTIFY commits with %d clients for %s", o.publishers, o.duration)
		raw, rawErr = measureRaw(ctx, rawPool, o.publishers, o.duration)
	}

	// Tally.
	var (
		connected                          int
		delivered, received, dups, ooo     int64
		reconnects, resyncs, expired, lost int
		noTime                             int64
		subErrs                            []string
	)
	for _, s := range subs {
		if !s.connected {
			continue
		}
		connected++
		delivered += intersectLen(&s.ids, acked)
		received += s.ids.len()
		dups += s.dups
		ooo += s.ooo
		reconnects += s.reconnects
		resyncs += s.resyncs
		expired += s.tokenExpired
		noTime += s.noTime
		if s.err != nil {
			lost++
			if len(subErrs) < 3 {
				subErrs = append(subErrs, s.err.Error())
			}
		}
	}
	expected := nAcked * int64(connected)
	missing := expected - delivered
	unacked := received - delivered

	r := report{out}
	r.line("date", "%s", time.Now().UTC().Format(time.RFC3339))
	r.line("url", "%s", o.url)
	r.line("transport", "%s", o.transport)
	r.line("subscribers", "%d", connected)
	r.line("subscribers requested", "%d", o.subscribers)
	r.line("subscribers failed to connect", "%d", o.subscribers-connected)
	r.line("subscriber open time s", "%.2f", openTime.Seconds())
	r.line("subscriber reconnects", "%d", reconnects)
	r.line("subscribers gave up", "%d", lost)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	r.line("publishers", "%d", o.publishers)
	r.line("batch", "%d", o.batch)
	if o.rate > 0 {
		r.line("target rate events/s", "%g", o.rate)
	} else {
		r.line("target rate events/s", "max")
	}
	r.line("publish phase s", "%.3f", pubTime.Seconds())
	var nFailed int64
	keys := make([]string, 0, len(failed))
	for k, v := range failed {
		nFailed += v
		keys = append(keys, k)
	}
	slices.Sort(keys)
	r.line("publish requests ok", "%d", reqOK)
	r.line("publish requests failed", "%d", nFailed)
	if len(keys) > 0 {
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", k, failed[k]))
		}
		r.line("publish requests failed by status", "%s", strings.Join(parts, " "))
	}
	r.line("events acknowledged", "%d", nAcked)
	r.line("publish throughput events/s", "%.1f", float64(nAcked)/pubTime.Seconds())
	r.line("publish throughput requests/s", "%.1f", float64(reqOK)/pubTime.Seconds())
	r.line("publish latency p50 ms", "%s", ms(pcfg.latency.quantile(0.50)))
	r.line("publish latency p99 ms", "%s", ms(pcfg.latency.quantile(0.99)))
	if short > 0 || dupAcked > 0 {
		r.line("publish answers with a wrong number of ids", "%d", short)
		r.line("ids acknowledged twice", "%d", dupAcked)
	}
	r.line("settled", "%t", settled)
	r.line("settle time s", "%.3f", settleTime.Seconds())
	r.line("delivered/expected", "%d/%d", delivered, expected)
	r.line("missing", "%d", missing)
	r.line("duplicates", "%d", dups)
	r.line("out-of-order", "%d", ooo)
	r.line("delivered but not acknowledged", "%d", unacked)
	if resyncs > 0 || expired > 0 || noTime > 0 {
		r.line("resync events", "%d", resyncs)
		r.line("token_expired events", "%d", expired)
		r.line("events without a send time", "%d", noTime)
	}
	r.line("latency samples", "%d", latency.count())
	r.line("latency p50 ms", "%s", ms(latency.quantile(0.50)))
	r.line("latency p90 ms", "%s", ms(latency.quantile(0.90)))
	r.line("latency p99 ms", "%s", ms(latency.quantile(0.99)))
	r.line("latency p99.9 ms", "%s", ms(latency.quantile(0.999)))
	r.line("latency max ms", "%s", ms(time.Duration(latency.max.Load())))
	r.line("latency mean ms", "%s", ms(latency.mean()))
	if n := latency.over.Load(); n > 0 {
		r.line("latency samples over 10 s", "%d", n)
	}
	// From the envelope's time, taken by the server as it stored the event:
	// the fan-out alone, without the publish request's own queueing and
	// commit. Millisecond resolution, so up to 1 ms high; measured on one
	// event in storedSample (ids that are multiples of it). A Pusher frame
	// carries no such time.
	if o.transport != "pusher" {
		r.line("latency from stored p50 ms", "%s", ms(stored.quantile(0.50)))
		r.line("latency from stored p99 ms", "%s", ms(stored.quantile(0.99)))
		r.line("latency from stored max ms", "%s", ms(time.Duration(stored.max.Load())))
	}
	if o.pid != 0 {
		r.line("server pid", "%d", o.pid)
		r.line("server rss before subscribers KiB", "%d", srv.rssBefore)
		r.line("server rss after subscribers KiB", "%d", srv.rssLoaded)
		if connected > 0 {
			r.line("server KiB per idle connection", "%.1f", float64(srv.rssLoaded-srv.rssBefore)/float64(connected))
		}
		srv.reportTail(r)
		cpu := cpuAfter - cpuBefore
		r.line("server cpu during publish s", "%.2f", cpu.Seconds())
		r.line("server cpu during publish cores", "%.2f", cpu.Seconds()/pubTime.Seconds())
		srv.reportBeforeAfter(r)
	}
	if rawPool != nil {
		if rawErr != nil {
			r.line("raw INSERT+NOTIFY error", "%v", rawErr)
		}
		if raw.elapsed > 0 {
			pubReqRate := float64(reqOK) / pubTime.Seconds()
			pubEventRate := float64(nAcked) / pubTime.Seconds()
			r.line("raw INSERT+NOTIFY clients", "%d", raw.workers)
			r.line("raw INSERT+NOTIFY phase s", "%.3f", raw.elapsed.Seconds())
			r.line("raw INSERT+NOTIFY commits", "%d", raw.commits)
			r.line("raw INSERT+NOTIFY failed transactions", "%d", raw.errors)
			r.line("raw INSERT+NOTIFY commits/s", "%.1f", raw.rate())
			if raw.rate() > 0 {
				r.line("publish rate / raw commit rate", "%.3f", pubReqRate/raw.rate())
				r.line("publish events/s / raw commit rate", "%.3f", pubEventRate/raw.rate())
			}
		}
	}
	user, sys, maxRSS := selfUsage()
	var ms2 runtime.MemStats
	runtime.ReadMemStats(&ms2)
	r.line("loadgen cpu user s", "%.2f", user.Seconds())
	r.line("loadgen cpu sys s", "%.2f", sys.Seconds())
	r.line("loadgen max rss KiB", "%d", maxRSS)
	r.line("loadgen heap sys KiB", "%d", ms2.HeapSys>>10)
	r.line("loadgen goroutines with subscribers open", "%d", loadgenGoroutines)
	r.line("loadgen open files limit", "%d", nofile)
	r.line("nproc", "%d", runtime.NumCPU())

	for _, k := range keys {
		progress("first publish failure with status %s: %s", k, firstPubErr[k])
	}
	for _, e := range subErrs {
		progress("subscriber gave up: %s", e)
	}
	if raw.firstErr != "" {
		progress("first raw INSERT+NOTIFY failure: %s", raw.firstErr)
	}
	ok = missing == 0 && dups == 0 && connected == o.subscribers && dupAcked == 0
	if !ok {
		progress("FAILED: %d missing, %d duplicates, %d of %d subscribers connected", missing, dups, connected, o.subscribers)
	}
	if !srv.check("subscribers") {
		ok = false
	}
	return ok, rawErr
}
