package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/hybridrt/hybridrt/internal/admin"
	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/hybridws"
	"github.com/hybridrt/hybridrt/internal/limit"
	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/pusher"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/usage"
	"github.com/hybridrt/hybridrt/internal/web"
	"github.com/hybridrt/hybridrt/internal/webhook"
)

// services are the long-lived parts of one instance, shared by its handlers.
type services struct {
	pool     *pgxpool.Pool
	keys     *auth.Keys
	signing  *auth.SigningKeys
	verifier *auth.Verifier
	tickets  *auth.Tickets
	store    *realtime.Store
	hub      *realtime.Hub
	pub      *realtime.Publisher
	registry *realtime.Registry
	sessions *admin.Sessions
	tenants  *tenant.Store
	quotas   *tenant.Cache // tenants' quotas and settings
	status   *tenant.Status
	limits   *realtime.Limits
	shared   *limit.Shared // limits that hold across instances
	presence *presence.Registry
	pusher   *pusher.Door // the Pusher-protocol WebSocket door

	clientEvents *realtime.ClientEvents // from subscribers of hybridrt's own transports
	ws           *hybridws.Door         // hybridrt's own WebSocket protocol

	webhooks  *webhook.Worker    // sends the outbox's webhooks
	occupancy *webhook.Occupancy // decides channel_occupied and channel_vacated
	usage     *usage.Meter       // counts each tenant's usage over time
}

func newServices(cfg Config, pool *pgxpool.Pool, log *slog.Logger) (*services, error) {
	sealer, err := auth.NewSealer(cfg.SecretKey)
	if err != nil {
		return nil, err
	}
	signing := auth.NewSigningKeys(pool, sealer)
	store := realtime.NewStore(pool)
	tenants := tenant.NewStore(pool)
	quotas := tenant.NewCache(tenants)
	status := tenant.NewStatus(tenants)
	shared := limit.New(pool, realtime.InstanceDead)
	hub := realtime.NewHub(store, realtime.DefaultRingSize)
	s := &services{
		pool:     pool,
		keys:     auth.NewKeys(pool),
		signing:  signing,
		verifier: auth.NewVerifier(signing),
		tickets:  auth.NewTickets(pool),
		store:    store,
		hub:      hub,
		pub:      realtime.NewPublisher(pool, hub),
		registry: realtime.NewRegistry(pool, status, shared),
		sessions: admin.NewSessions(pool),
		tenants:  tenants,
		quotas:   quotas,
		status:   status,
		limits:   realtime.NewLimits(cfg.Publish, cfg.Stream, cfg.MaxConnectionsByTenant, quotas, shared),
		shared:   shared,
	}
	s.usage = usage.NewMeter(pool)
	s.pub.Meter = s.usage
	s.hub.Meter = s.usage
	sender := webhook.NewSender(webhook.Options{AllowPrivate: cfg.WebhookAllowPrivate})
	quotas.CheckWebhookURL = checkWebhookURL(sender, cfg.WebhookAllowPrivate)
	s.webhooks = &webhook.Worker{Pool: pool, Targets: webhookTargets(tenants, signing), Post: sender.Post, Log: log, Meter: s.usage}
	s.occupancy = &webhook.Occupancy{Pool: pool, Log: log, InstanceDead: realtime.InstanceDead}
	s.presence = presence.NewRegistry(pool, s.registry.InstanceID())
	s.presence.MaxMembers = cfg.PresenceMaxMembers
	s.presence.Changed = webhook.MemberChanged
	s.clientEvents = &realtime.ClientEvents{
		Publisher: s.pub, Limits: s.limits, Settings: quotas.Settings,
		PerConnection: web.NewBuckets[string](rate.Limit(cfg.Pusher.ClientEventRate), cfg.Pusher.ClientEventRate),
		Webhook:       webhook.ClientEvent,
	}
	s.pusher = &pusher.Door{
		Log: log, Hub: s.hub, Store: store, Registry: s.registry, Keys: s.verifier, Settings: quotas,
		Presence: s.presence, Publisher: s.pub, Limits: s.limits, Pool: pool, Config: cfg.Pusher,
		Webhook: webhook.ClientEvent, CacheMiss: webhook.CacheMiss(pool, log),
	}
	s.pusher.Init()
	s.ws = &hybridws.Door{
		Log: log, Hub: s.hub, Store: store, Registry: s.registry, Verifier: s.verifier, Tickets: s.tickets,
		Limits: s.limits, ClientEvents: s.clientEvents, Presence: s.presence, Config: cfg.WS,
	}
	s.ws.Init()
	// The doors' notifications share the instance's one LISTEN connection.
	s.hub.AlsoListen(s.presence.Notified())
	s.hub.AlsoListen(s.pusher.Notified())
	return s, nil
}

// start runs the background parts in g until ctx ends: the LISTEN loop, the
// group-commit publisher, the connection registry, the key-usage writer, the
// retention pruner (which keeps pruning suspended tenants' events too), the
// NOTIFY queue watch, the re-reading of suspended tenants, and the sharing of
// limits with the other instances.
func (s *services) start(ctx context.Context, g *errgroup.Group, log *slog.Logger, cfg Config) {
	s.hub.ProbeEvery = cfg.Stream.Heartbeat
	g.Go(func() error { return s.hub.Listen(ctx, cfg.DatabaseURL, log) })
	g.Go(func() error { return s.pub.Run(ctx) })
	g.Go(func() error { return s.registry.Run(ctx, log) })
	g.Go(func() error { return s.keys.Run(ctx, log) })
	g.Go(func() error { return s.store.RunPruner(ctx, log, cfg.EventRetention, time.Minute) })
	g.Go(func() error { return s.sessions.Run(ctx, log) })
	g.Go(func() error { return realtime.WatchNotifyQueue(ctx, s.pool, log, cfg.NotifyQueue) })
	g.Go(func() error { return s.status.Run(ctx, log) })
	g.Go(func() error { return s.shared.Run(ctx, log, s.registry.InstanceID()) })
	g.Go(func() error { return s.presence.Run(ctx, log) })
	g.Go(func() error { return s.pusher.Run(ctx) })
	g.Go(func() error { return s.ws.Run(ctx) })
	g.Go(func() error { return s.webhooks.Run(ctx) })
	g.Go(func() error { return s.occupancy.Run(ctx) })
	g.Go(func() error { return s.usage.Run(ctx, log, realtime.InstanceDead) })
}
