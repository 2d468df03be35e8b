package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMetricValue(t *testing.T) {
	const exposition = `# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.3e-05
go_gc_duration_seconds_count 12
# HELP go_goroutines_total not the gauge, whatever its name starts with
go_goroutines_total 999
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 10023
# HELP go_threads Number of OS threads created.
go_threads 9
`
	for _, c := range []struct {
		in, name string
		want     float64
	}{
		{exposition, "go_goroutines", 10023},
		{exposition, "go_threads", 9},
		{exposition, "go_gc_duration_seconds_count", 12},
		{"go_goroutines 1.2e+03\n", "go_goroutines", 1200},
		{"go_goroutines{instance=\"a b\"} 41 1700000000000\n", "go_goroutines", 41},
		{"  go_goroutines\t7\r\n", "go_goroutines", 7},
		{"go_goroutines 8", "go_goroutines", 8}, // no final newline
	} {
		got, err := metricValue(strings.NewReader(c.in), c.name)
		if err != nil || got != c.want {
			t.Errorf("metricValue(%q, %s) = %v, %v; want %v", c.in, c.name, got, err, c.want)
		}
	}
	for _, in := range []string{
		"",
		"# go_goroutines 5\n",
		"go_goroutines_total 5\n",
		"go_goroutines\n",
		"go_goroutines many\n",
		"go_goroutines{job=\"x\" 5\n",
		"go_goroutines 1 2 3\n",
	} {
		if v, err := metricValue(strings.NewReader(in), "go_goroutines"); err == nil {
			t.Errorf("metricValue(%q) = %v, want an error", in, v)
		}
	}
}

// reads returns a reader that yields vals in turn, repeating the last.
func reads(vals ...any) func(context.Context) (int64, error) {
	i := 0
	return func(context.Context) (int64, error) {
		v := vals[min(i, len(vals)-1)]
		i++
		if err, ok := v.(error); ok {
			return 0, err
		}
		return int64(v.(int)), nil
	}
}

func TestSettleGoroutines(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	for _, c := range []struct {
		name    string
		read    func(context.Context) (int64, error)
		want    int64
		wantErr bool
		atLeast time.Duration // how long it must have waited
		atMost  time.Duration
	}{
		{"at baseline at once", reads(10), 10, false, 0, 100 * time.Millisecond},
		{"comes down", reads(200, 150, 60, 12, 9), 9, false, 40 * time.Millisecond, 300 * time.Millisecond},
		{"steady within the slack", reads(40, 25), 25, false, time.Second, 1600 * time.Millisecond},
		{"steady above the slack: the whole wait", reads(200, 50), 50, false, 2 * time.Second, 3 * time.Second},
		{"an error between readings is skipped", reads(50, boom, 10), 10, false, 0, 300 * time.Millisecond},
		{"never readable", reads(boom), 0, true, 2 * time.Second, 3 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			got, err := settleGoroutines(ctx, c.read, 10, 20, 2*time.Second, 20*time.Millisecond)
			took := time.Since(start)
			if (err != nil) != c.wantErr || got != c.want {
				t.Fatalf("got %d, %v; want %d (error %v)", got, err, c.want, c.wantErr)
			}
			if took < c.atLeast || took > c.atMost {
				t.Errorf("took %v, want %v to %v", took, c.atLeast, c.atMost)
			}
		})
	}
}
