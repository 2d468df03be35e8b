package pusher

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The door's own series. Its connections are in hybridrt_connections
// {transport="websocket"}, its deliveries in hybridrt_events_delivered_total
// {transport="websocket"}, its client events in hybridrt_events_published_total.
var (
	upgrades = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hybridrt_pusher_connections_total",
		Help: "Pusher-protocol WebSocket connections upgraded, by outcome: ok, or the close code that refused them.",
	}, []string{"outcome"})
	closes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hybridrt_pusher_closes_total",
		Help: "Pusher-protocol WebSocket connections closed by the server, by close code.",
	}, []string{"code"})
	subscriptions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hybridrt_pusher_subscriptions_total",
		Help: "Channel subscriptions accepted over the Pusher protocol, by channel kind.",
	}, []string{"kind"})
	subscribeErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hybridrt_pusher_subscription_errors_total",
		Help: "Channel subscriptions refused over the Pusher protocol, by the status sent.",
	}, []string{"status"})
	clientEvents = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hybridrt_pusher_client_events_total",
		Help: "Client events received over the Pusher protocol, by outcome: published or refused.",
	}, []string{"outcome"})
	signins = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hybridrt_pusher_signins_total",
		Help: "User sign-ins (pusher:signin), by outcome.",
	}, []string{"outcome"})
	cacheMisses = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hybridrt_pusher_cache_misses_total",
		Help: "Subscriptions to cache channels that had no event to send.",
	})
)
