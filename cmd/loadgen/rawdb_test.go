package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

func TestMeasureRaw(t *testing.T) {
	url := pgtest.NewURL(t, false)
	ctx := context.Background()
	pool, err := openRaw(ctx, url, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	start := time.Now()
	res, err := measureRaw(ctx, pool, 3, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v", took)
	}
	if res.commits == 0 || res.errors != 0 || res.workers != 3 || res.elapsed < 300*time.Millisecond || res.rate() <= 0 {
		t.Fatalf("result %+v", res)
	}
	var table *string
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1)::text`, rawTable).Scan(&table); err != nil {
		t.Fatal(err)
	}
	if table != nil {
		t.Errorf("%s is still there after the raw phase", *table)
	}
}

func TestOpenRawBadURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, url := range []string{"not a url ://", "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"} {
		if pool, err := openRaw(ctx, url, 2); err == nil {
			pool.Close()
			t.Errorf("openRaw(%q) succeeded", url)
		} else if !strings.HasPrefix(err.Error(), "-raw-db: ") {
			t.Errorf("openRaw(%q): %v, want the flag named", url, err)
		}
	}
}

// TestRunRaw checks the report's raw lines and their ratio on a full run
// against the fake server.
func TestRunRaw(t *testing.T) {
	url := pgtest.NewURL(t, false)
	srv := httptest.NewServer(&fakeServer{})
	defer srv.Close()
	o := options{
		url: srv.URL, subscribers: 2, channel: "load", publishers: 2, rate: 40, batch: 2,
		duration: 300 * time.Millisecond, settle: time.Second, sources: 1, openParallel: 2, rawDB: url,
	}
	var out bytes.Buffer
	ok, err := run(o, &out)
	if err != nil || !ok {
		t.Fatalf("ok %v, err %v:\n%s", ok, err, out.String())
	}
	report := out.String()
	field := func(name string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: ([0-9.]+)$`).FindStringSubmatch(report)
		if m == nil {
			t.Fatalf("no %q in:\n%s", name, report)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	raw := field("raw INSERT+NOTIFY commits/s")
	reqs, events := field("publish throughput requests/s"), field("publish throughput events/s")
	if raw <= 0 || field("raw INSERT+NOTIFY clients") != 2 {
		t.Fatalf("raw rate %v:\n%s", raw, report)
	}
	near := func(a, b float64) bool { return a >= b*0.98-0.002 && a <= b*1.02+0.002 }
	if r := field("publish rate / raw commit rate"); !near(r, reqs/raw) {
		t.Errorf("request ratio %v, want %v", r, reqs/raw)
	}
	if r := field("publish events/s / raw commit rate"); !near(r, events/raw) {
		t.Errorf("event ratio %v, want %v", r, events/raw)
	}
}
