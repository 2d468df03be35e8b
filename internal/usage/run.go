package usage

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// How often the Meter writes and samples.
const (
	FlushEvery  = 10 * time.Second // what was counted, added to usage_minutes
	SampleEvery = 10 * time.Second // connections by transport, for the peaks
	RollupEvery = time.Minute      // day rows recomputed, old rows dropped
)

// Run flushes, samples and rolls up until ctx ends, then flushes what is
// left, so a graceful restart loses nothing. instanceDead is
// realtime.InstanceDead: the connections of an instance whose heartbeat is
// older do not count.
func (m *Meter) Run(ctx context.Context, log *slog.Logger, instanceDead time.Duration) error {
	flush := time.NewTicker(FlushEvery)
	defer flush.Stop()
	sample := time.NewTicker(SampleEvery)
	defer sample.Stop()
	rollup := time.NewTicker(RollupEvery)
	defer rollup.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := m.Flush(fctx); err != nil {
				log.Warn("usage: the last flush failed; this instance's last seconds of usage are lost", "err", err)
			}
			return nil
		case <-flush.C:
			err = m.Flush(ctx)
		case <-sample.C:
			err = m.Sample(ctx, instanceDead)
		case <-rollup.C:
			err = Rollup(ctx, m.Pool, m.now())
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("usage: writing usage failed; retrying", "err", err)
		}
	}
}

// ObserveRejections is for web.ObserveProblems: it counts every refusal by
// a limit of a request whose tenant is known (an API key's or a
// subscriber token's), by reason.
func (m *Meter) ObserveRejections(r *http.Request, p *web.Problem) {
	reason, ok := realtime.RejectionReason(p.Code)
	if !ok {
		return
	}
	if t, ok := tenant.Lookup(r.Context()); ok {
		m.Rejected(t, reason)
	} else if s, ok := auth.LookupSubscriber(r.Context()); ok {
		m.Rejected(s.TenantID, reason)
	}
}
