package realtime

import (
	"github.com/hybridrt/hybridrt/internal/tenant"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The series DESIGN's Observability section lists. They are process-wide:
// several servers in one test process share them.
var (
	connectionsGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hybridrt_connections",
		Help: "Open subscriber connections on this instance, by transport.",
	}, []string{"transport"})
	eventsPublished = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hybridrt_events_published_total",
		Help: "Events committed by this instance.",
	})
	publishGroups = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hybridrt_publish_transactions_total",
		Help: "Group-commit transactions, each holding one or more publish requests.",
	})
	publishErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hybridrt_publish_transaction_errors_total",
		Help: "Group-commit transactions that failed; none of their events was stored.",
	})
	publishLatency = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "hybridrt_publish_commit_seconds",
		Help:    "Time to commit one group of publish requests.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	eventsDelivered = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hybridrt_events_delivered_total",
		Help: "Events written to subscribers, by transport.",
	}, []string{"transport"})
	deliveryLatency = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "hybridrt_delivery_latency_seconds",
		Help:    "From commit to the write of a live event to an SSE subscriber.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	listenerReconnects = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hybridrt_listener_reconnects_total",
		Help: "Times the LISTEN connection was lost and re-established.",
	})
	slowConsumers = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hybridrt_slow_consumers_dropped_total",
		Help: "Streams cut off because the client did not read in time.",
	})
)

// deliveredBy holds eventsDelivered's children for the transports there
// are, looked up once: streams add to them for every batch they write.
var deliveredBy = map[string]prometheus.Counter{
	"sse":       eventsDelivered.WithLabelValues("sse"),
	"polling":   eventsDelivered.WithLabelValues("polling"),
	"websocket": eventsDelivered.WithLabelValues("websocket"),
}

// delivered is eventsDelivered's child for transport.
func delivered(transport string) prometheus.Counter {
	if c, ok := deliveredBy[transport]; ok {
		return c
	}
	return eventsDelivered.WithLabelValues(transport)
}

func observePublish(group []*publishRequest, events int, took time.Duration, err error) {
	publishGroups.Inc()
	publishLatency.Observe(took.Seconds())
	if err != nil {
		publishErrors.Inc()
		return
	}
	stored := 0
	for _, r := range group {
		if !r.replayed && r.err == nil {
			stored += len(r.drafts)
		}
	}
	eventsPublished.Add(float64(stored))
}

// ObserveDelivery records n events, of bytes bytes, written to a
// subscriber of tenant t over transport, and, for live ones, how old the
// newest of them was. Every door calls it for what it writes.
func (h *Hub) ObserveDelivery(t tenant.ID, transport string, n, bytes int, newest time.Time, live bool) {
	delivered(transport).Add(float64(n))
	if live {
		deliveryLatency.Observe(time.Since(newest).Seconds())
	}
	if h.Meter != nil {
		h.Meter.Delivered(t, n, bytes)
	}
}

// CountSlowConsumer records a subscriber of another door cut off because it
// did not read in time.
func CountSlowConsumer() { slowConsumers.Inc() }
