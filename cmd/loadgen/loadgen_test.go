package main

import (
	"bufio"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestIDSet(t *testing.T) {
	var s idSet
	ref := map[int64]bool{}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		id := r.Int64N(3000) + 1
		if got, want := s.add(id), !ref[id]; got != want {
			t.Fatalf("add(%d) = %v, want %v", id, got, want)
		}
		ref[id] = true
	}
	if s.len() != int64(len(ref)) {
		t.Fatalf("len = %d, want %d", s.len(), len(ref))
	}
	for i := 1; i < len(s.s); i++ {
		if s.s[i].lo <= s.s[i-1].hi+1 {
			t.Fatalf("spans %v and %v touch", s.s[i-1], s.s[i])
		}
	}
	for id := int64(0); id <= 3001; id++ {
		if s.contains(id) != ref[id] {
			t.Fatalf("contains(%d) = %v", id, !ref[id])
		}
	}
}

func TestInOrderIsOneSpan(t *testing.T) {
	var s idSet
	for id := int64(5); id < 100000; id++ {
		s.add(id)
	}
	if len(s.s) != 1 || s.len() != 99995 || s.max() != 99999 {
		t.Fatalf("got %d spans, len %d, max %d", len(s.s), s.len(), s.max())
	}
}

func TestMergeAndIntersect(t *testing.T) {
	a, b, c := &idSet{}, &idSet{}, &idSet{}
	for id := int64(1); id <= 10; id++ {
		if id%2 == 0 {
			a.add(id)
		} else {
			b.add(id)
		}
	}
	c.add(10) // acknowledged twice
	c.add(11)
	all, overlap := mergeSets([]*idSet{a, b, c})
	if all.len() != 11 || len(all.s) != 1 || overlap != 1 {
		t.Fatalf("merged %v, overlap %d", all.s, overlap)
	}
	got := &idSet{}
	for _, id := range []int64{2, 3, 4, 9, 12, 13} {
		got.add(id)
	}
	if n := intersectLen(got, all); n != 4 {
		t.Fatalf("intersect = %d, want 4", n)
	}
}

func TestHistogram(t *testing.T) {
	h := new(histogram)
	for i := 1; i <= 1000; i++ {
		h.observe(time.Duration(i) * time.Millisecond)
	}
	h.observe(time.Minute)
	if q := h.quantile(0.5); q < 500*time.Millisecond || q > 501200*time.Microsecond {
		t.Errorf("p50 = %v", q)
	}
	if q := h.quantile(0.99); q < 990*time.Millisecond || q > 992*time.Millisecond {
		t.Errorf("p99 = %v", q)
	}
	if m := time.Duration(h.max.Load()); m != time.Minute {
		t.Errorf("max = %v", m)
	}
	if h.over.Load() != 1 {
		t.Errorf("over = %d", h.over.Load())
	}
}

func TestSubscriberParse(t *testing.T) {
	now := time.Now().UnixNano()
	ev := func(id string) string {
		return "id: " + id + "\nevent: load\ndata: {\"id\":\"" + id + "\",\"channel\":\"load\",\"type\":\"load\",\"data\":{\"t\":" +
			itoa(now) + ",\"p\":0,\"n\":1},\"time\":\"2026-01-01T00:00:00.000Z\"}\n\n"
	}
	stream := "retry: 2000\n\nid: 7\nevent: ready\ndata: {\"connectionId\":\"c_1\",\"cursor\":\"7\",\"heartbeat\":15}\n\n" +
		ev("8") + ": ping\n\n" + ev("9") + ev("9") + ev("11") + ev("10") +
		"id: 12\r\nevent: load\r\ndata: {\"data\":{\"t\":" + itoa(now) + "}}\r\n\r\n" +
		"id: 13\nevent: load\ndata: {\"data\":\n\n"
	s := &subscriber{cfg: &streamConfig{latency: new(histogram), stored: new(histogram), bufSize: 16}}
	readies := 0
	err := s.read(bufio.NewReaderSize(strings.NewReader(stream), 16), func() { readies++; s.connected = true })
	if err == nil {
		t.Fatal("read returned nil at EOF")
	}
	if readies != 1 || s.ids.len() != 6 || s.dups != 1 || s.ooo != 1 || s.lastID != 13 || s.noTime != 1 {
		t.Fatalf("readies %d, ids %v, dups %d, ooo %d, last %d, noTime %d", readies, s.ids.s, s.dups, s.ooo, s.lastID, s.noTime)
	}
	if s.cfg.latency.count() != 5 {
		t.Fatalf("latency samples = %d", s.cfg.latency.count())
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestParseDigits(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{{"0", 0, true}, {"42", 42, true}, {"9223372036854775807", 9223372036854775807, true},
		{"9223372036854775808", 0, false}, {"", 0, false}, {"1x", 0, false}, {"-1", 0, false}} {
		got, ok := parseDigits([]byte(c.in))
		if got != c.want || ok != c.ok {
			t.Errorf("parseDigits(%q) = %d, %v", c.in, got, ok)
		}
	}
}

func TestParseTimeMillis(t *testing.T) {
	for _, in := range []string{"2026-11-27T08:02:39.123Z\"}", "2026-11-27T09:02:39.123+01:00"} {
		got, ok := parseTimeMillis([]byte(in))
		want := time.Date(2026, 11, 27, 8, 2, 39, 123e6, time.UTC).UnixNano()
		if !ok || got != want {
			t.Errorf("parseTimeMillis(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	if _, ok := parseTimeMillis([]byte("2026-11-27")); ok {
		t.Error("a short time parsed")
	}
}
