package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/cors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	jssdk "github.com/hybridrt/hybridrt/clients/js"
	"github.com/hybridrt/hybridrt/docs"
	"github.com/hybridrt/hybridrt/examples"
	"github.com/hybridrt/hybridrt/internal/admin"
	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/limit"
	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/pusher"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/usage"
	"github.com/hybridrt/hybridrt/internal/web"
	"github.com/hybridrt/hybridrt/views"
)

// NewServer returns the service's whole HTTP API.
func NewServer(log *slog.Logger, cfg Config, s *services) http.Handler {
	r := chi.NewRouter()
	r.Use(web.WithRequestID, web.WithClientAddr(cfg.TrustedProxies), web.AccessLog(log), web.Recover(log))
	r.NotFound(web.NotFound)
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		web.MethodNotAllowed(w, req, allowedMethods(r, req.URL.Path))
	})
	addRoutes(r, log, cfg, s)
	return r
}

// allowedMethods lists the methods that r serves on path, for a 405's Allow header.
func allowedMethods(r *chi.Mux, path string) []string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if r.Match(chi.NewRouteContext(), m, path) {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

// addRoutes lists every route the service serves.
func addRoutes(r chi.Router, log *slog.Logger, cfg Config, s *services) {
	signup := auth.SignupPolicy{Open: cfg.SignupOpen, OperatorToken: cfg.OperatorToken}
	apiKey := auth.RequireAPIKey(log, s.keys)
	keyRate := auth.RateLimit(s.shared, cfg.PublishRate)
	active := tenant.RequireActive(log, s.status) // after the credential check: 403 tenant_suspended

	r.Use(web.ObserveProblems(s.usage.ObserveRejections)) // refusals by a limit, counted per tenant

	r.Get("/healthz", handleHealthz)
	r.Get("/readyz", handleReadyz(s))
	r.Method(http.MethodGet, "/metrics", promhttp.Handler())
	r.Get("/openapi.yaml", handleOpenAPI)
	if cfg.Pprof {
		// Profiles reveal memory contents and cost CPU: operator only, and off by default.
		r.With(auth.RequireOperator(cfg.OperatorToken)).Mount("/debug/pprof", pprofHandler())
	}

	r.Route("/v1", func(r chi.Router) {
		r.Use(withDeadline(apiDeadline))
		r.Post("/tenants", auth.HandleSignup(log, s.pool, s.signing, signup))

		r.Route("/operator", func(r chi.Router) {
			r.Use(auth.RequireOperator(cfg.OperatorToken))
			r.Get("/tenants/{id}/quotas", tenant.HandleGetQuotas(log, s.tenants))
			r.Put("/tenants/{id}/quotas", tenant.HandlePutQuotas(log, s.tenants, s.quotas))
			r.Get("/tenants/{id}", tenant.HandleGetAccount(log, s.tenants))
			r.Post("/tenants/{id}/suspend", tenant.HandleSuspend(log, s.status))
			r.Post("/tenants/{id}/resume", tenant.HandleResume(log, s.status))
			r.Get("/usage", usage.HandleOperator(log, s.pool))
		})

		r.Group(func(r chi.Router) {
			r.Use(apiKey, active)
			r.Get("/tenant", tenant.HandleGet(log, s.tenants))
			r.Patch("/tenant/settings", tenant.HandlePatchSettings(log, s.quotas))
			r.Get("/usage", usage.HandleTenant(log, s.pool))

			r.Post("/keys", auth.HandleCreateKey(log, s.keys))
			r.Get("/keys", auth.HandleListKeys(log, s.keys))
			r.Delete("/keys/{id}", auth.HandleRevokeKey(log, s.keys))

			r.Post("/signing-keys", auth.HandleCreateSigningKey(log, s.signing))
			r.Get("/signing-keys", auth.HandleListSigningKeys(log, s.signing))
			r.Delete("/signing-keys/{kid}", auth.HandleRevokeSigningKey(log, s.signing))
			r.Post("/tokens", auth.HandleMintToken(log, s.signing))

			r.With(keyRate).Post("/events", realtime.HandlePublish(log, s.pub, s.limits))
			r.With(keyRate).Post("/notifications", realtime.HandleNotify(log, s.pub, s.limits))
			r.With(keyRate).Post("/dashboard", realtime.HandleDashboard(log, s.pub, s.limits))
			r.Get("/events", realtime.HandleHistory(log, s.store))
			r.Get("/head", realtime.HandleHead(log, s.store))
			r.Get("/connections", realtime.HandleConnections(log, s.registry))
			r.Get("/presence/{channel}", presence.HandleMembers(log, s.presence))
		})
	})

	console := &admin.Console{
		Log: log, Pool: s.pool, Sessions: s.sessions, Keys: s.keys, Signing: s.signing, Verifier: s.verifier, Tickets: s.tickets,
		Store: s.store, Hub: s.hub, Publisher: s.pub, Registry: s.registry, Presence: s.presence,
		Limits: s.limits, Status: s.status, Tenants: s.quotas, Webhooks: s.webhooks, Signup: signup, PublicURL: cfg.PublicURL,
	}
	r.Route("/console", func(r chi.Router) {
		r.Use(admin.Headers, admin.CrossOrigin)
		r.Handle("/static/*", http.StripPrefix("/console/static/", http.FileServerFS(views.Static)))
		r.Get("/", console.HandleHome)
		r.Get("/login", console.HandleLoginPage)
		r.Post("/login", console.HandleLogin)
		r.Get("/signup", console.HandleSignupPage)
		r.Post("/signup", console.HandleSignup)
		r.Get("/operator/login", console.HandleOperatorLoginPage)
		r.Post("/operator/login", console.HandleOperatorLogin)
		r.With(console.RequireSession).Post("/logout", console.HandleLogout)
		r.With(console.RequireOperator).Get("/operator", console.HandleOperator)
		r.With(console.RequireOperator).Post("/operator/tenants/{id}/suspend", console.HandleSuspendTenant)
		r.With(console.RequireOperator).Post("/operator/tenants/{id}/resume", console.HandleResumeTenant)

		r.Group(func(r chi.Router) {
			r.Use(console.RequireTenant)
			r.Get("/overview", console.HandleOverview)
			r.Get("/usage", console.HandleUsage)
			r.Get("/usage.csv", console.HandleUsageCSV)
			r.Get("/clients", console.HandleClients)
			r.Get("/clients/table", console.HandleClientsTable)
			r.Get("/subscriber", console.HandleSubscriber)
			r.Get("/events", console.HandleEvents)
			r.Get("/events/stream", console.HandleEventStream)
			r.Post("/events/test", console.HandleFire)
			r.Get("/keys", console.HandleKeys)
			r.Post("/keys", console.HandleCreateKey)
			r.Post("/keys/{id}/revoke", console.HandleRevokeKey)
			r.Get("/signing-keys", console.HandleSigningKeys)
			r.Post("/signing-keys", console.HandleCreateSigningKey)
			r.Post("/signing-keys/{kid}/revoke", console.HandleRevokeSigningKey)
			r.Get("/tokens", console.HandleTokensPage)
			r.Post("/tokens", console.HandleMintToken)
			r.Get("/pusher", console.HandlePusher)
			r.Post("/pusher/settings", console.HandlePusherSettings)
			r.Get("/pusher/presence", console.HandlePresenceChannels)
			r.Get("/pusher/presence/members", console.HandlePresenceMembers)
			r.Get("/webhooks", console.HandleWebhooks)
			r.Post("/webhooks/settings", console.HandleWebhookSettings)
			r.Post("/webhooks/test", console.HandleWebhookTest)
			r.Post("/webhooks/retry", console.HandleWebhookRetry)
			r.Get("/webhooks/deliveries", console.HandleWebhookDeliveries)
		})
	})

	r.Route("/api/realtime", func(r chi.Router) {
		r.With(withDeadline(apiDeadline), console.OrAPIKey(apiKey), active, keyRate).Post("/test", realtime.HandleTest(log, s.pub, s.limits))

		// Subscribers' pages live on the tenant's own origin: allow any origin.
		// Safe, as these routes take bearer tokens and tickets, never cookies.
		r.Group(func(r chi.Router) {
			r.Use(subscriberCORS)
			jwtOnly := auth.RequireSubscriber(log, s.verifier, s.tickets, false)
			r.With(withDeadline(apiDeadline), jwtOnly, active).Post("/tickets", auth.HandleTicket(log, s.tickets))
			r.With(withDeadline(apiDeadline), jwtOnly, active).Post("/connections/{id}/token", realtime.HandleRenew(log, s.registry))
			// Client events from SSE and long-poll clients, at CLIENT_EVENT_RATE
			// per connection as over the Pusher protocol.
			r.With(withDeadline(apiDeadline), jwtOnly, active).Post("/publish", realtime.HandleClientPublish(log, s.clientEvents))
			r.With(withDeadline(apiDeadline), jwtOnly, active).Get("/presence", presence.HandleSubscriberMembers(log, s.presence))
			// A stream's setup waits on the database as long as an API
			// request may; the stream itself has no deadline.
			connect := web.WithConnectDeadline(apiDeadline)
			r.With(connect, auth.RequireSubscriber(log, s.verifier, s.tickets, true), active).Get("/sse", realtime.HandleSSE(log, s.hub, s.registry, s.verifier, s.limits, s.presence.ForStreams()))
			r.With(connect, jwtOnly, active).Get("/polling", realtime.HandlePoll(log, s.hub, s.registry, s.limits, s.presence.ForPolls()))
			// hybridrt's own WebSocket protocol: it authenticates for itself,
			// with a ticket or with the token in its first message.
			r.With(connect).Get("/ws", s.ws.ServeHTTP)
			// Preflight requests (for the Authorization header) end in the CORS
			// middleware; these routes only give them something to match.
			r.Options("/*", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
		})
	})

	// The Pusher Channels protocol: pusher-js, Laravel Echo and the mobile
	// SDKs connect here. The connection's setup is bounded like a stream's.
	r.With(web.WithConnectDeadline(apiDeadline)).Get("/app/{key}", s.pusher.ServeHTTP)
	// The Pusher HTTP API, for the Pusher server libraries. It checks its
	// own signatures, suspension and rate, and answers as Pusher does.
	pusherAPI := &pusher.API{
		Log: log, Keys: s.verifier, Publisher: s.pub, Limits: s.limits, Counts: s.registry,
		Presence: s.presence, Terminate: s.pusher.Terminate, Status: s.status,
		KeyRate: func(kid string) bool { return s.shared.Allow(limit.SigningKeyRate(kid), cfg.PublishRate) },
	}
	r.Route("/apps/{appId}", func(r chi.Router) {
		r.Use(withDeadline(apiDeadline))
		pusherAPI.Routes(r)
	})

	// The JavaScript SDK and an example page that uses it.
	r.With(subscriberCORS).Handle("/sdk/*", http.StripPrefix("/sdk/", http.FileServerFS(jssdk.Dist)))
	r.Get("/examples/dashboard", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, examples.Files, "dashboard.html")
	})
	r.Handle("/examples/*", http.StripPrefix("/examples/", http.FileServerFS(examples.Files)))
}

// pprofHandler serves net/http/pprof's index, profiles and traces under /debug/pprof.
func pprofHandler() http.Handler {
	r := chi.NewRouter()
	r.Get("/", pprof.Index)
	r.Get("/cmdline", pprof.Cmdline)
	r.Get("/profile", pprof.Profile)
	r.Get("/symbol", pprof.Symbol)
	r.Post("/symbol", pprof.Symbol)
	r.Get("/trace", pprof.Trace)
	r.Get("/{name}", func(w http.ResponseWriter, r *http.Request) {
		pprof.Handler(chi.URLParam(r, "name")).ServeHTTP(w, r)
	})
	return r
}

// apiDeadline bounds how long an API request (not a stream) waits on the
// database: a starved pool or a hung database gets a 503 with Retry-After
// within it, instead of holding the client and piling up its retries. A
// publish transaction, once begun, still runs to its outcome
// (realtime.Publisher only bounds the wait for a connection).
const apiDeadline = 5 * time.Second

// withDeadline gives each request's context a deadline d from now.
func withDeadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// subscriberCORS lets pages on any origin reach the subscriber routes and
// the SDK with bearer credentials (no cookies).
var subscriberCORS = cors.Handler(cors.Options{
	AllowedOrigins: []string{"*"},
	AllowedMethods: []string{http.MethodGet, http.MethodPost},
	AllowedHeaders: []string{"Authorization", "Content-Type", "Last-Event-ID"},
	ExposedHeaders: []string{"Retry-After", "X-Request-Id"},
	MaxAge:         600,
})

// handleOpenAPI serves GET /openapi.yaml: the API description in docs/openapi.yaml.
func handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(docs.OpenAPI)
}

// handleHealthz serves GET /healthz: the process is up.
func handleHealthz(w http.ResponseWriter, r *http.Request) {
	web.Encode(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz serves GET /readyz: the instance can serve, because its
// database answers and its LISTEN connection is live.
//
// A pool that is merely busy (every connection in use, none free within a
// second) is not a reason to be pulled out of the load balancer: the
// dedicated LISTEN connection, alive and self-probing, shows the database
// answers, and the instance still streams to its clients and sheds what it
// cannot take with 503 and Retry-After. So it stays ready, and says "busy".
func handleReadyz(s *services) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		notReady := func(detail string) {
			web.NewProblem(http.StatusServiceUnavailable, "not_ready", detail).WithHeader("Retry-After", "1").Write(w)
		}
		if !s.hub.Listening() {
			notReady("the LISTEN connection is not established; live delivery is paused")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		wait, stopWaiting := context.WithTimeout(ctx, time.Second)
		defer stopWaiting()
		conn, err := s.pool.Acquire(wait)
		if err != nil {
			stat := s.pool.Stat()
			if wait.Err() != nil && stat.AcquiredConns() >= stat.MaxConns() {
				web.Encode(w, http.StatusOK, map[string]string{"status": "ready", "pool": "busy"})
				return
			}
			notReady("the database does not answer")
			return
		}
		defer conn.Release()
		if err := conn.Ping(ctx); err != nil {
			notReady("the database does not answer")
			return
		}
		web.Encode(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}
