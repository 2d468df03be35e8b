package webhook

import (
	"context"
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	events = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hybridrt_webhook_events_total",
		Help: "Webhook events by outcome: queued (written to the outbox), delivered (acknowledged with a 2xx), parked (given up on after the retry window, or with no URL left).",
	}, []string{"outcome"})
	queued          = events.WithLabelValues("queued")
	eventsDelivered = events.WithLabelValues("delivered")
	eventsParked    = events.WithLabelValues("parked")

	batches = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hybridrt_webhook_batches_total",
		Help: "Webhook POSTs by outcome: delivered (2xx), failed (anything else; retried), parked.",
	}, []string{"outcome"})

	latency = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "hybridrt_webhook_delivery_seconds",
		Help:    "How long a webhook POST took, from dialling to the answer, whatever the answer.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})

	depth = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hybridrt_webhook_outbox_events",
		Help: "Webhook events in the outbox per tenant, by state: waiting (to be sent or retried) or parked. Every instance reports the whole outbox; aggregate with max.",
	}, []string{"tenant", "state"})
)

// measureDepth sets the outbox depth gauges from the table.
func (w *Worker) measureDepth(ctx context.Context) error {
	rows, err := w.Pool.Query(ctx,
		`SELECT tenant_id, count(*) FILTER (WHERE parked_at IS NULL), count(*) FILTER (WHERE parked_at IS NOT NULL)
		   FROM webhook_outbox GROUP BY tenant_id`)
	if err != nil {
		return fmt.Errorf("webhook: measure the outbox: %w", err)
	}
	defer rows.Close()
	depth.Reset() // tenants whose outbox emptied drop out
	for rows.Next() {
		var (
			t, waiting, parked int64
		)
		if err := rows.Scan(&t, &waiting, &parked); err != nil {
			return fmt.Errorf("webhook: measure the outbox: %w", err)
		}
		id := strconv.FormatInt(t, 10)
		depth.WithLabelValues(id, "waiting").Set(float64(waiting))
		depth.WithLabelValues(id, "parked").Set(float64(parked))
	}
	return rows.Err()
}
