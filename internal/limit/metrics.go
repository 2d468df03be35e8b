package limit

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	syncSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "hybridrt_limit_sync_seconds",
		Help:    "Time one instance's sync of shared limits took, the cluster-wide sync lock included.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	syncFailures = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hybridrt_limit_sync_failures_total",
		Help: "Syncs of shared limits that failed; the instance kept its last shares.",
	})
)
