package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// SignupPolicy says who may create tenants.
type SignupPolicy struct {
	Open          bool   // anyone may sign up
	OperatorToken string // when closed, sign-up needs this as bearer
}

// SignedUp is a new tenant with its first credentials, whose secrets are
// shown once.
type SignedUp struct {
	Tenant        tenant.Tenant
	APIKey        string
	Kid           string
	SigningSecret string
}

// Signup creates a tenant named name (already cleaned by tenant.CleanName)
// with its first API key and signing key, in one transaction.
func Signup(ctx context.Context, pool *pgxpool.Pool, signing *SigningKeys, name string) (SignedUp, error) {
	var su SignedUp
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		if su.Tenant, err = tenant.Insert(ctx, tx, name); err != nil {
			return err
		}
		if _, su.APIKey, err = insertKey(ctx, tx, su.Tenant.ID, "default"); err != nil {
			return err
		}
		var sk SigningKey
		sk, su.SigningSecret, err = signing.insert(ctx, tx, su.Tenant.ID)
		su.Kid = sk.Kid
		return err
	})
	return su, err
}

// Sign-ups from one address: SignupBurst at once, then one every SignupInterval.
const (
	SignupBurst    = 30
	SignupInterval = 6 * time.Second
)

// HandleSignup serves POST /v1/tenants: it creates a tenant with its first API
// key and signing key, in one transaction, and shows both secrets once.
func HandleSignup(log *slog.Logger, pool *pgxpool.Pool, signing *SigningKeys, policy SignupPolicy) http.HandlerFunc {
	type request struct {
		Name string `json:"name"`
	}
	type signingKey struct {
		Kid    string `json:"kid"`
		Secret string `json:"secret"`
	}
	type response struct {
		Tenant     tenant.Tenant `json:"tenant"`
		APIKey     string        `json:"apiKey"`
		SigningKey signingKey    `json:"signingKey"`
	}
	// Open sign-up is a brake on floods from one address: SignupBurst
	// tenants at once, then one every SignupInterval. The operator token
	// is exempt, for provisioning scripts.
	flood := web.NewAddrLimiter(SignupInterval, SignupBurst)
	return func(w http.ResponseWriter, r *http.Request) {
		if policy.Open && !flood.Of(r).Allow() {
			if ok, _ := operatorOK(r, policy.OperatorToken); !ok {
				web.NewProblem(http.StatusTooManyRequests, "signup_rate_limited",
					fmt.Sprintf("too many sign-ups from your address; try again in %d seconds", int(SignupInterval.Seconds()))).
					WithHeader("Retry-After", strconv.Itoa(int(SignupInterval.Seconds()))).Write(w)
				return
			}
		}
		if !policy.Open {
			ok, p := operatorOK(r, policy.OperatorToken)
			if p != nil {
				p.Detail = "sign-up is closed: send the operator token as \"Authorization: Bearer <OPERATOR_TOKEN>\""
				p.Write(w)
				return
			}
			if !ok {
				web.NewProblem(http.StatusUnauthorized, "invalid_operator_token",
					"sign-up is closed and the operator token is not valid").
					WithHeader("WWW-Authenticate", `Bearer realm="hybridrt", error="invalid_token"`).
					Write(w)
				return
			}
		}
		req, err := web.Decode[request](w, r, 4<<10)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		name, err := tenant.CleanName(req.Name)
		if err != nil {
			web.Error(w, http.StatusBadRequest, "invalid_name", err.Error())
			return
		}
		su, err := Signup(r.Context(), pool, signing, name)
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		resp := response{Tenant: su.Tenant, APIKey: su.APIKey, SigningKey: signingKey{Kid: su.Kid, Secret: su.SigningSecret}}
		log.LogAttrs(r.Context(), slog.LevelInfo, "tenant signed up",
			slog.String("request_id", web.RequestID(r.Context())),
			slog.Int64("tenant_id", int64(resp.Tenant.ID)))
		web.Encode(w, http.StatusCreated, resp)
	}
}

// HandleCreateKey serves POST /v1/keys.
func HandleCreateKey(log *slog.Logger, keys *Keys) http.HandlerFunc {
	type request struct {
		Name string `json:"name"`
	}
	type response struct {
		APIKey
		Key string `json:"apiKey"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := web.Decode[request](w, r, 4<<10)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		name, err := CleanKeyName(req.Name)
		if err != nil {
			web.Error(w, http.StatusBadRequest, "invalid_name", err.Error())
			return
		}
		k, key, err := keys.Create(r.Context(), tenant.FromContext(r.Context()), name)
		if err != nil {
			web.ServerError(w, r, log, err)
			return
		}
		web.Encode(w, http.StatusCreated, response{APIKey: k, Key: key})
	}
}

// HandleListKeys serves GET /v1/keys.
func HandleListKeys(log *slog.Logger, keys *Keys) http.HandlerFunc {
	type response struct {
		Keys []APIKey `json:"keys"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		list, err := keys.List(r.Context(), tenant.FromContext(r.Context()))
		if err != nil {
			web.ServerError(w, r, log, err)
			return
		}
		web.Encode(w, http.StatusOK, response{Keys: list})
	}
}

// HandleRevokeKey serves DELETE /v1/keys/{id}.
func HandleRevokeKey(log *slog.Logger, keys *Keys) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
		if err == nil {
			err = keys.Revoke(r.Context(), tenant.FromContext(r.Context()), id)
		} else {
			err = ErrNotFound // not a key id, so not one of this tenant's keys
		}
		switch {
		case errors.Is(err, ErrNotFound):
			web.Error(w, http.StatusNotFound, "key_not_found", "this tenant has no API key with that id")
		case errors.Is(err, ErrLastKey):
			web.Error(w, http.StatusConflict, "last_key",
				"this is the tenant's last active API key: create another one before revoking it")
		case err != nil:
			web.ServerError(w, r, log, err)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}
}

// HandleCreateSigningKey serves POST /v1/signing-keys. The body may be empty or {}.
func HandleCreateSigningKey(log *slog.Logger, signing *SigningKeys) http.HandlerFunc {
	type response struct {
		Kid       string    `json:"kid"`
		Secret    string    `json:"secret"`
		CreatedAt time.Time `json:"createdAt"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			if _, err := web.Decode[struct{}](w, r, 1<<10); err != nil {
				web.Fail(w, r, log, err)
				return
			}
		}
		k, secret, err := signing.Create(r.Context(), tenant.FromContext(r.Context()))
		if err != nil {
			web.ServerError(w, r, log, err)
			return
		}
		web.Encode(w, http.StatusCreated, response{Kid: k.Kid, Secret: secret, CreatedAt: k.CreatedAt})
	}
}

// HandleListSigningKeys serves GET /v1/signing-keys.
func HandleListSigningKeys(log *slog.Logger, signing *SigningKeys) http.HandlerFunc {
	type response struct {
		SigningKeys []SigningKey `json:"signingKeys"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		list, err := signing.List(r.Context(), tenant.FromContext(r.Context()))
		if err != nil {
			web.ServerError(w, r, log, err)
			return
		}
		web.Encode(w, http.StatusOK, response{SigningKeys: list})
	}
}

// HandleRevokeSigningKey serves DELETE /v1/signing-keys/{kid}.
func HandleRevokeSigningKey(log *slog.Logger, signing *SigningKeys) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := signing.Revoke(r.Context(), tenant.FromContext(r.Context()), chi.URLParam(r, "kid"))
		switch {
		case errors.Is(err, ErrNotFound):
			web.Error(w, http.StatusNotFound, "signing_key_not_found", "this tenant has no signing key with that kid")
		case err != nil:
			web.ServerError(w, r, log, err)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}
}

// HandleMintToken serves POST /v1/tokens: a subscriber JWT for one of the
// tenant's users, signed with its newest signing key.
func HandleMintToken(log *slog.Logger, signing *SigningKeys) http.HandlerFunc {
	type request struct {
		Sub      string          `json:"sub"`
		Channels []string        `json:"channels"`
		Publish  []string        `json:"publish"`
		Info     json.RawMessage `json:"info"`
		TTL      int64           `json:"ttl"` // seconds; default 3600, at most 86400
	}
	type response struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := web.Decode[request](w, r, 16<<10)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		if string(req.Info) == "null" {
			req.Info = nil
		}
		claims := TokenClaims{Subject: req.Sub, Channels: req.Channels, Publish: req.Publish, Info: req.Info}
		if err := claims.Check(); err != nil {
			web.Fail(w, r, log, err)
			return
		}
		ttl := time.Hour
		switch {
		case req.TTL < 0:
			web.Error(w, http.StatusBadRequest, "invalid_ttl", `"ttl" is a number of seconds, 1 to 86400`)
			return
		case req.TTL > 0:
			// Longer asks are clamped, in seconds first: a TTL past 2^63 ns
			// would overflow into a negative duration and an expired token.
			ttl = time.Duration(min(req.TTL, int64(MaxTokenTTL/time.Second))) * time.Second
		}
		token, exp, err := signing.Mint(r.Context(), tenant.FromContext(r.Context()), claims, ttl, time.Now())
		if errors.Is(err, ErrNoSigningKey) {
			web.Error(w, http.StatusConflict, "no_signing_key", "the tenant has no active signing key: create one with POST /v1/signing-keys")
			return
		}
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		web.Encode(w, http.StatusCreated, response{Token: token, ExpiresAt: exp})
	}
}

// HandleTicket serves POST /api/realtime/tickets: a ticket for EventSource,
// in exchange for the subscriber JWT sent as bearer.
func HandleTicket(log *slog.Logger, tickets *Tickets) http.HandlerFunc {
	type response struct {
		Ticket    string    `json:"ticket"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		s := SubscriberFrom(r.Context())
		ticket, err := tickets.Issue(r.Context(), s)
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		web.Encode(w, http.StatusCreated, response{Ticket: ticket, ExpiresAt: s.Expires})
	}
}
