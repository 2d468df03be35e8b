package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// goroutineSlack is how many more goroutines than before the subscribers
// opened the server may have once they are all closed: background work
// (the database pool, timers) comes and goes by a few, a leak of one per
// connection does not hide under it.
const goroutineSlack = 20

// goroutineSettle is how long the end-of-run check waits for the server's
// goroutines to wind down after the subscribers close (a variable for the
// tests).
var goroutineSettle = 10 * time.Second

// metricValue finds the sample of the metric called name, without labels or
// with any, in a Prometheus text exposition and returns its value. It is
// enough for gauges such as go_goroutines; it does not handle histograms or
// several series of one name (the first wins).
func metricValue(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" {
			continue
		}
		switch rest[0] {
		case '{':
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				return 0, fmt.Errorf("%s: unterminated labels in %q", name, line)
			}
			rest = rest[end+1:]
		case ' ', '\t':
		default:
			continue // another metric whose name starts with name
		}
		fields := strings.Fields(rest) // value [timestamp]
		if len(fields) == 0 || len(fields) > 2 {
			return 0, fmt.Errorf("%s: cannot parse %q", name, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: cannot parse %q: %w", name, line, err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in the metrics", name)
}

// metricsClient reads the server's /metrics without keeping a connection
// open, so that the reading does not add an idle connection's goroutine to
// the next one.
var metricsClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// serverGoroutines reads go_goroutines (the Prometheus Go collector's
// gauge) from base/metrics.
func serverGoroutines(ctx context.Context, client *http.Client, base string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return 0, fmt.Errorf("GET /metrics: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	v, err := metricValue(io.LimitReader(resp.Body, 16<<20), "go_goroutines")
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	if v < 0 || v > math.MaxInt32 || v != math.Trunc(v) {
		return 0, fmt.Errorf("GET /metrics: go_goroutines %v is not a goroutine count", v)
	}
	return int64(v), nil
}

// settleGoroutines polls read until the count is back to before, or has
// stayed within before+slack and unchanged for a second, or until wait has
// passed; it returns the last reading. A count that keeps changing inside
// the slack is still given the whole wait to come down.
func settleGoroutines(ctx context.Context, read func(context.Context) (int64, error), before, slack int64, wait, every time.Duration) (int64, error) {
	deadline := time.Now().Add(wait)
	var last int64 = -1
	var stableSince time.Time
	var lastErr error
	for {
		n, err := read(ctx)
		switch {
		case err != nil:
			lastErr = err
		case n <= before:
			return n, nil
		default:
			lastErr = nil
			if n != last {
				last, stableSince = n, time.Now()
			} else if n <= before+slack && time.Since(stableSince) >= time.Second {
				return n, nil
			}
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			if last < 0 {
				if lastErr == nil {
					lastErr = ctx.Err()
				}
				return 0, lastErr
			}
			return last, nil
		}
		select {
		case <-time.After(min(every, time.Until(deadline))):
		case <-ctx.Done():
		}
	}
}
