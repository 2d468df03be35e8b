package hybridws

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var closes = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "hybridrt_ws_closes_total",
	Help: "Connections of hybridrt's own WebSocket protocol closed by the server, by close code.",
}, []string{"code"})
