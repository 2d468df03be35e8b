package realtime

import (
	"context"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/hybridrt/hybridrt/internal/limit"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// quotaRejections counts requests refused by a limit, by which one.
var quotaRejections = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "hybridrt_quota_rejections_total",
	Help: "Requests refused by a limit: connections, channels, publish_rate, event_size, batch_size.",
}, []string{"quota"})

// Limits are the server's defaults, adjusted per tenant by the quotas the
// operator set (tenant.Quotas).
type Limits struct {
	Publish        PublishConfig
	Stream         StreamConfig
	MaxConnections int

	quotas *tenant.Cache
	shared *limit.Shared // publish rates, across instances
}

// NewLimits returns the limits with these defaults, read per tenant through
// quotas. Rates are enforced for the tenant as a whole, across instances,
// through shared.
func NewLimits(publish PublishConfig, stream StreamConfig, maxConnections int, quotas *tenant.Cache, shared *limit.Shared) *Limits {
	return &Limits{Publish: publish, Stream: stream, MaxConnections: maxConnections, quotas: quotas, shared: shared}
}

// effective is one tenant's limits.
type effective struct {
	publish        PublishConfig
	stream         StreamConfig
	maxConnections int
	publishRate    int // requests per second; 0 for no tenant-wide limit
}

func (l *Limits) of(ctx context.Context, id tenant.ID) (effective, error) {
	e := effective{publish: l.Publish, stream: l.Stream, maxConnections: l.MaxConnections}
	q, err := l.quotas.Quotas(ctx, id)
	if err != nil {
		return e, err
	}
	if q.MaxEventBytes != nil {
		e.publish.MaxEventBytes = *q.MaxEventBytes
	}
	if q.MaxBatch != nil {
		e.publish.MaxBatch = *q.MaxBatch
	}
	if q.MaxChannels != nil {
		e.stream.MaxChannels = *q.MaxChannels
	}
	if q.MaxConnections != nil {
		e.maxConnections = *q.MaxConnections
	}
	if q.PublishRate != nil {
		e.publishRate = *q.PublishRate
	}
	return e, nil
}

// ConnectionsFor returns how many connections tenant id may hold, on all
// instances together.
func (l *Limits) ConnectionsFor(ctx context.Context, id tenant.ID) (int, error) {
	e, err := l.of(ctx, id)
	return e.maxConnections, err
}

// PublishRateFor returns how many publish requests a second tenant id may
// make, on all instances together; 0 when it has no tenant-wide rate.
func (l *Limits) PublishRateFor(ctx context.Context, id tenant.ID) (int, error) {
	e, err := l.of(ctx, id)
	return e.publishRate, err
}

// StreamConfigFor returns tenant id's stream limits.
func (l *Limits) StreamConfigFor(ctx context.Context, id tenant.ID) (StreamConfig, error) {
	e, err := l.of(ctx, id)
	return e.stream, err
}

// PublishConfigFor returns tenant id's publish limits.
func (l *Limits) PublishConfigFor(ctx context.Context, id tenant.ID) (PublishConfig, error) {
	e, err := l.of(ctx, id)
	return e.publish, err
}

// allowPublish takes one request from the tenant's publish-rate budget,
// which all instances share.
func (l *Limits) allowPublish(id tenant.ID, perSecond int) bool {
	if perSecond <= 0 {
		return true
	}
	return l.shared.Allow(limit.TenantRate(int64(id)), perSecond)
}

// publishLimits returns the request's tenant's publish limits, or the
// problem to answer: its publish rate used up (429), or a lookup failure.
func (l *Limits) publishLimits(r *http.Request) (PublishConfig, error) {
	return l.TakePublish(r.Context(), tenant.FromContext(r.Context()))
}

// TakePublish takes one publish request from tenant id's rate budget and
// returns its publish limits, or the problem to answer (*web.Problem): the
// rate used up (429), or a lookup failure (503). Every door that publishes
// calls it once per request.
func (l *Limits) TakePublish(ctx context.Context, id tenant.ID) (PublishConfig, error) {
	e, err := l.of(ctx, id)
	if err != nil {
		return PublishConfig{}, web.Unavailable(err)
	}
	if !l.allowPublish(id, e.publishRate) {
		quotaRejections.WithLabelValues("publish_rate").Inc()
		return PublishConfig{}, web.NewProblem(http.StatusTooManyRequests, "tenant_rate_limited",
			"this tenant published more than its quota of "+strconv.Itoa(e.publishRate)+" requests a second; slow down or batch events").
			WithHeader("Retry-After", "1")
	}
	return e.publish, nil
}

// countRejection records a refusal by the quota a problem code names.
func countRejection(code string) {
	switch code {
	case "event_too_large":
		quotaRejections.WithLabelValues("event_size").Inc()
	case "batch_too_large":
		quotaRejections.WithLabelValues("batch_size").Inc()
	case "too_many_channels":
		quotaRejections.WithLabelValues("channels").Inc()
	case "too_many_connections":
		quotaRejections.WithLabelValues("connections").Inc()
	}
}
