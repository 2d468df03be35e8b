package web

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// responses counts every HTTP answer by status code, as AccessLog logs
// it: the 5xx rate an operator alerts on (deploy/prometheus/alerts.yml).
// SSE streams and long-polls count when they end; WebSocket upgrades as 101.
var responses = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "hybridrt_http_responses_total",
	Help: "HTTP responses by status code, counted when each request ends.",
}, []string{"code"})

// countResponse counts one answer with status.
func countResponse(status int) {
	responses.WithLabelValues(strconv.Itoa(status)).Inc()
}
