package presence

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	presenceChannels = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "hybridrt_presence_channels",
		Help: "Presence channels with subscribers on this instance.",
	})
	presenceMembers = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "hybridrt_presence_members",
		Help: "Members of the presence channels with subscribers on this instance, as this instance knows them.",
	})
	sweptChannels = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hybridrt_presence_swept_channels_total",
		Help: "Presence channels from which this instance removed the members of instances that stopped beating.",
	})
)
