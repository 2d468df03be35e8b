package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// serverWatch follows the server under load when -pid names it: its memory
// before, with the clients in, at the end and after, and whether its
// goroutines came back to where they were once the clients left.
type serverWatch struct {
	pid     int
	api     *api
	metrics *http.Client

	rssBefore, rssLoaded, rssEnd, hwmEnd, rssFinal int64
	goroutinesBefore, goroutinesAfter              int64
	goroutinesErr                                  error
}

// watchServer reads the server's memory and goroutines before the clients
// open; with pid 0 it watches nothing.
func watchServer(ctx context.Context, pid int, a *api, metrics *http.Client) (*serverWatch, error) {
	s := &serverWatch{pid: pid, api: a, metrics: metrics}
	if pid == 0 {
		return s, nil
	}
	var err error
	if s.rssBefore, _, err = procMemory(pid); err != nil {
		return nil, fmt.Errorf("-pid %d: %w", pid, err)
	}
	// A kept-alive connection (the sign-up's) would count as a goroutine.
	a.client.CloseIdleConnections()
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.goroutinesBefore, err = serverGoroutines(mctx, metrics, a.base); err != nil {
		return nil, fmt.Errorf("-pid: reading the server's goroutine count: %w", err)
	}
	return s, nil
}

// loaded reads the memory with every client in.
func (s *serverWatch) loaded() {
	if s.pid != 0 {
		s.rssLoaded, _, _ = procMemory(s.pid)
	}
}

// ended reads the memory at the end of the run, clients still in.
func (s *serverWatch) ended() {
	if s.pid != 0 {
		s.rssEnd, s.hwmEnd, _ = procMemory(s.pid)
	}
}

// settled waits, once the clients (named for the progress line) have
// closed, for the server's goroutines to come back, and reads the memory.
func (s *serverWatch) settled(ctx context.Context, clients string) {
	if s.pid == 0 {
		return
	}
	s.api.client.CloseIdleConnections()
	progress("%s closed; waiting up to %s for the server's goroutines to settle", clients, goroutineSettle)
	s.goroutinesAfter, s.goroutinesErr = settleGoroutines(context.WithoutCancel(ctx), func(ctx context.Context) (int64, error) {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return serverGoroutines(mctx, s.metrics, s.api.base)
	}, s.goroutinesBefore, goroutineSlack, goroutineSettle, 200*time.Millisecond)
	s.rssFinal, _, _ = procMemory(s.pid)
}

// reportTail writes the lines every scenario ends its server part with.
func (s *serverWatch) reportTail(r report) {
	r.line("server rss at end KiB", "%d", s.rssEnd)
	r.line("server rss peak KiB", "%d", s.hwmEnd)
}

// reportBeforeAfter writes memory and goroutines before and after the run.
func (s *serverWatch) reportBeforeAfter(r report) {
	mib := func(kib int64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }
	r.line("server RSS before/after", "%s/%s MiB", mib(s.rssBefore), mib(s.rssFinal))
	if s.goroutinesErr != nil {
		r.line("server goroutines before/after", "%d/unknown (%v)", s.goroutinesBefore, s.goroutinesErr)
	} else {
		r.line("server goroutines before/after", "%d/%d", s.goroutinesBefore, s.goroutinesAfter)
	}
}

// check reports whether the goroutines came back, saying why not.
func (s *serverWatch) check(clients string) bool {
	if s.pid == 0 {
		return true
	}
	switch {
	case s.goroutinesErr != nil:
		progress("FAILED: could not read the server's goroutines after the run: %v", s.goroutinesErr)
		return false
	case s.goroutinesAfter > s.goroutinesBefore+goroutineSlack:
		progress("FAILED: the server's goroutines did not return to baseline: %d before the %s opened, still %d after they had all closed and %s had passed (at most %d more are allowed)",
			s.goroutinesBefore, clients, s.goroutinesAfter, goroutineSettle, goroutineSlack)
		return false
	}
	return true
}

// settle polls done every 20 ms until it holds, limit has passed or ctx
// ends, and returns whether it held and how long the wait took.
func settle(ctx context.Context, limit time.Duration, done func() bool) (bool, time.Duration) {
	start := time.Now()
	for {
		ok := done()
		if ok || time.Since(start) >= limit || ctx.Err() != nil {
			return ok, time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
