package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// NewServer returns the service's whole HTTP API.
func NewServer(log *slog.Logger, cfg Config, pool *pgxpool.Pool, keys *auth.Keys, sealer *auth.Sealer) http.Handler {
	r := chi.NewRouter()
	r.Use(web.WithRequestID, web.AccessLog(log), web.Recover(log))
	r.NotFound(web.NotFound)
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		web.MethodNotAllowed(w, req, allowedMethods(r, req.URL.Path))
	})
	addRoutes(r, log, cfg, pool, keys, auth.NewSigningKeys(pool, sealer))
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
func addRoutes(r chi.Router, log *slog.Logger, cfg Config, pool *pgxpool.Pool, keys *auth.Keys, signing *auth.SigningKeys) {
	tenants := tenant.NewStore(pool)
	signup := auth.SignupPolicy{Open: cfg.SignupOpen, OperatorToken: cfg.OperatorToken}

	r.Get("/healthz", handleHealthz)
	r.Get("/readyz", handleReadyz(pool))

	r.Route("/v1", func(r chi.Router) {
		r.Post("/tenants", auth.HandleSignup(log, pool, signing, signup))

		r.Group(func(r chi.Router) {
			r.Use(auth.RequireAPIKey(log, keys))
			r.Get("/tenant", tenant.HandleGet(log, tenants))

			r.Post("/keys", auth.HandleCreateKey(log, keys))
			r.Get("/keys", auth.HandleListKeys(log, keys))
			r.Delete("/keys/{id}", auth.HandleRevokeKey(log, keys))

			r.Post("/signing-keys", auth.HandleCreateSigningKey(log, signing))
			r.Get("/signing-keys", auth.HandleListSigningKeys(log, signing))
			r.Delete("/signing-keys/{kid}", auth.HandleRevokeSigningKey(log, signing))
		})
	})
}

// handleHealthz serves GET /healthz: the process is up.
func handleHealthz(w http.ResponseWriter, r *http.Request) {
	web.Encode(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz serves GET /readyz: the instance can serve, because its
// database answers.
func handleReadyz(pool *pgxpool.Pool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := pool.Ping(ctx); err != nil {
			web.NewProblem(http.StatusServiceUnavailable, "not_ready", "the database does not answer").
				WithHeader("Retry-After", "1").Write(w)
			return
		}
		web.Encode(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}
