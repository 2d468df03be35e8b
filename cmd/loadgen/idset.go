package main

import (
	"slices"
	"sort"
)

// span is a run of consecutive ids, lo through hi inclusive.
type span struct{ lo, hi int64 }

// idSet is a set of event ids kept as sorted, disjoint, non-adjacent spans.
// Ids arrive almost in order, so a subscriber's set is one span however many
// events it receives, and a publisher's grows by one span per request at
// most: memory follows the disorder, not the number of events.
// It is not safe for concurrent use.
type idSet struct{ s []span }

// add inserts id and reports whether it was new.
func (set *idSet) add(id int64) bool {
	n := len(set.s)
	if n > 0 {
		last := &set.s[n-1]
		switch {
		case id == last.hi+1: // the common case: the next id
			last.hi = id
			return true
		case id > last.hi+1:
			set.s = append(set.s, span{id, id})
			return true
		}
	} else {
		set.s = append(set.s, span{id, id})
		return true
	}
	// Out of order: find the first span that ends at or after id.
	i := sort.Search(n, func(i int) bool { return set.s[i].hi >= id })
	if i < n && set.s[i].lo <= id {
		return false // already present
	}
	left := i > 0 && set.s[i-1].hi == id-1
	right := i < n && set.s[i].lo == id+1
	switch {
	case left && right:
		set.s[i-1].hi = set.s[i].hi
		set.s = slices.Delete(set.s, i, i+1)
	case left:
		set.s[i-1].hi = id
	case right:
		set.s[i].lo = id
	default:
		set.s = slices.Insert(set.s, i, span{id, id})
	}
	return true
}

// contains reports whether id is in the set.
func (set *idSet) contains(id int64) bool {
	i := sort.Search(len(set.s), func(i int) bool { return set.s[i].hi >= id })
	return i < len(set.s) && set.s[i].lo <= id
}

// len returns the number of ids in the set.
func (set *idSet) len() int64 {
	var n int64
	for _, r := range set.s {
		n += r.hi - r.lo + 1
	}
	return n
}

// max returns the largest id, or 0 for an empty set.
func (set *idSet) max() int64 {
	if len(set.s) == 0 {
		return 0
	}
	return set.s[len(set.s)-1].hi
}

// intersectLen returns how many ids a and b have in common.
func intersectLen(a, b *idSet) int64 {
	var n int64
	i, j := 0, 0
	for i < len(a.s) && j < len(b.s) {
		lo, hi := max(a.s[i].lo, b.s[j].lo), min(a.s[i].hi, b.s[j].hi)
		if lo <= hi {
			n += hi - lo + 1
		}
		if a.s[i].hi < b.s[j].hi {
			i++
		} else {
			j++
		}
	}
	return n
}

// mergeSets returns the union of sets and how many ids were in more than
// one of them: an id acknowledged to two publish requests.
func mergeSets(sets []*idSet) (*idSet, int64) {
	var all []span
	for _, s := range sets {
		all = append(all, s.s...)
	}
	slices.SortFunc(all, func(a, b span) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	out := &idSet{}
	var overlap int64
	for _, r := range all {
		n := len(out.s)
		if n == 0 || r.lo > out.s[n-1].hi+1 {
			out.s = append(out.s, r)
			continue
		}
		last := &out.s[n-1]
		if r.lo <= last.hi {
			overlap += min(r.hi, last.hi) - r.lo + 1
		}
		last.hi = max(last.hi, r.hi)
	}
	return out, overlap
}
