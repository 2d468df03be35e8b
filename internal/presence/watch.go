package presence

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/hybridrt/hybridrt/internal/tenant"
)

// Watch returns tenantID's channel's members as this instance knows them,
// once it knows at least version atLeast (the version Join returned), and
// calls fn with every change after them, in order, until the watcher stops.
// fn runs on the registry's goroutine and must not block.
func (p *Registry) Watch(ctx context.Context, tenantID tenant.ID, channel string, atLeast int64, fn func(Change)) ([]Member, *Watcher, error) {
	k := key{tenantID, channel}
	w := &Watcher{r: p, k: k, fn: fn}

	p.mu.Lock()
	v, ok := p.views[k]
	if !ok {
		v = &view{version: -1, members: map[string]Member{}, watchers: map[*Watcher]struct{}{}}
		v.changed = sync.NewCond(&p.mu)
		p.views[k] = v
	}
	// Hold the view while waiting, so no one drops it.
	v.watchers[w] = struct{}{}
	w.off = true // not yet called: registered only to keep the view
	p.mu.Unlock()

	if !ok || !p.reaches(v, atLeast) {
		// A new view, or the notification of the join is late: read the
		// members from the store, which has them at atLeast or later.
		members, version, err := readMembers(ctx, p.pool, tenantID, channel)
		if err != nil {
			w.Stop()
			return nil, nil, err
		}
		p.mu.Lock()
		p.replace(v, members, version)
		p.mu.Unlock()
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	w.off = false
	members := make([]Member, 0, len(v.members))
	for _, m := range v.members {
		members = append(members, m)
	}
	sort.Slice(members, func(i, j int) bool { return members[i].UserID < members[j].UserID })
	return members, w, nil
}

// reaches waits, at most waitView, until v's version is at least version.
func (p *Registry) reaches(v *view, version int64) bool {
	deadline := time.Now().Add(waitView)
	t := time.AfterFunc(waitView, func() {
		p.mu.Lock()
		v.changed.Broadcast()
		p.mu.Unlock()
	})
	defer t.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for v.version < version && time.Now().Before(deadline) {
		v.changed.Wait()
	}
	return v.version >= version
}

// Stop ends the watcher; its view goes when its last watcher does.
func (w *Watcher) Stop() {
	p := w.r
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.views[w.k]
	if !ok {
		return
	}
	w.off = true
	delete(v.watchers, w)
	if len(v.watchers) == 0 {
		delete(p.views, w.k)
		if v.version >= 0 {
			presenceChannels.Dec()
			presenceMembers.Sub(float64(len(v.members)))
		}
	}
}

// Run applies notifications to the views, reads them again after a lost
// notification, and sweeps the members of dead instances, until ctx ends.
func (p *Registry) Run(ctx context.Context, log *slog.Logger) error {
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-p.notes:
			p.apply(n)
		case <-p.reload:
			p.mu.Lock()
			for _, v := range p.views {
				v.stale = true
			}
			p.mu.Unlock()
		case <-sweep.C:
			if err := p.sweep(ctx); err != nil && ctx.Err() == nil {
				log.Warn("presence: sweeping the members of dead instances failed; will retry", "err", err)
			}
		}
		p.refreshStale(ctx, log)
	}
}

// apply takes one notification into its channel's view, if watched here.
func (p *Registry) apply(n note) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.views[key{n.Tenant, n.Channel}]
	switch {
	case !ok || n.Version <= v.version:
		return // not watched here, or already known
	case v.version >= 0 && n.Version != v.version+1:
		v.stale = true // missed one: read them all again
		return
	case v.version < 0:
		return // the first read has not come back yet; it will include this
	}
	m := Member{UserID: n.UserID, Info: n.Info}
	if n.Added {
		v.members[m.UserID] = m
		presenceMembers.Inc()
	} else {
		m = v.members[m.UserID]
		delete(v.members, n.UserID)
		presenceMembers.Dec()
	}
	v.version = n.Version
	v.changed.Broadcast()
	p.dispatch(v, Change{Added: n.Added, Member: m})
}

// dispatch calls every active watcher of v; p.mu is held.
func (p *Registry) dispatch(v *view, c Change) {
	for w := range v.watchers {
		if !w.off {
			w.fn(c)
		}
	}
}

// refreshStale reads the members of every stale view again.
func (p *Registry) refreshStale(ctx context.Context, log *slog.Logger) {
	p.mu.Lock()
	var stale []key
	for k, v := range p.views {
		if v.stale {
			stale = append(stale, k)
		}
	}
	p.mu.Unlock()
	for _, k := range stale {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		members, version, err := readMembers(rctx, p.pool, k.tenant, k.channel)
		cancel()
		if err != nil {
			log.Warn("presence: reading members again failed; will retry", "channel", k.channel, "err", err)
			return // stays stale; tried again at the next wake-up
		}
		p.mu.Lock()
		if v, ok := p.views[k]; ok {
			p.replace(v, members, version)
		}
		p.mu.Unlock()
	}
}

// replace sets v to members at version, telling its watchers what changed,
// unless v already knows a later version; p.mu is held.
func (p *Registry) replace(v *view, members []Member, version int64) {
	if version < v.version {
		return
	}
	first := v.version < 0
	if first {
		presenceChannels.Inc()
	}
	next := make(map[string]Member, len(members))
	for _, m := range members {
		next[m.UserID] = m
	}
	if !first {
		for id, m := range v.members {
			if _, still := next[id]; !still {
				p.dispatch(v, Change{Member: m})
			}
		}
		for id, m := range next {
			if _, was := v.members[id]; !was {
				p.dispatch(v, Change{Added: true, Member: m})
			}
		}
	}
	presenceMembers.Add(float64(len(next) - len(v.members)))
	v.members, v.version, v.stale = next, version, false
	v.changed.Broadcast()
}
