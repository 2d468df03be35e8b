package main

import (
	"sync/atomic"
	"time"
)

const (
	bucketWidth = 100 * time.Microsecond
	bucketCount = int(10 * time.Second / bucketWidth) // the last bucket also holds everything slower
)

// histogram counts latencies in fixed 0.1 ms buckets up to 10 s, shared by
// every subscriber: its size does not depend on the number of events. An
// observation costs one atomic add, and an atomic load for the maximum, so
// the subscribers of a busy run do not fight over shared counters.
type histogram struct {
	buckets [bucketCount]atomic.Uint64
	max     atomic.Int64 // nanoseconds
	over    atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	if d < 0 {
		d = 0 // a clock step; the sender and receiver share one clock
	}
	i := int(d / bucketWidth)
	if i >= bucketCount {
		i = bucketCount - 1
		h.over.Add(1)
	}
	h.buckets[i].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

// quantile returns the upper edge of the bucket holding quantile q (0..1),
// so it is at most 0.1 ms above the true value.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.count()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			return min(time.Duration(i+1)*bucketWidth, time.Duration(h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// count returns the number of observations.
func (h *histogram) count() uint64 {
	var n uint64
	for i := range h.buckets {
		n += h.buckets[i].Load()
	}
	return n
}

// mean returns the mean latency, taking each observation at its bucket's
// middle (the slowest bucket at the maximum's middle, roughly).
func (h *histogram) mean() time.Duration {
	var n uint64
	var sum float64
	for i := range h.buckets {
		c := h.buckets[i].Load()
		n += c
		sum += float64(c) * (float64(i) + 0.5) * float64(bucketWidth)
	}
	if n == 0 {
		return 0
	}
	return time.Duration(sum / float64(n))
}
