package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hybridrt/hybridrt/internal/hybridws"
	"github.com/hybridrt/hybridrt/internal/presence"
	"github.com/hybridrt/hybridrt/internal/pusher"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/web"
)

// Config is the service's configuration, read from the environment once at start.
type Config struct {
	DatabaseURL   string
	Addr          string
	PublicURL     string
	SecretKey     string
	LogLevel      slog.Level
	SignupOpen    bool
	OperatorToken string
	Pprof         bool // serve /debug/pprof/ to the operator

	TrustedProxies web.TrustedProxies // peers allowed to name the client (X-Forwarded-For, Forwarded)
	TLSCertFile    string             // with TLSKeyFile: serve HTTPS and HTTP/2
	TLSKeyFile     string
	TLSCertificate *tls.Certificate // loaded from the two files at start; nil for plain HTTP

	EventRetention         time.Duration
	Stream                 realtime.StreamConfig
	Publish                realtime.PublishConfig
	MaxConnectionsByTenant int
	PublishRate            int // requests per second per API key
	NotifyQueue            realtime.QueueWatch
	Pusher                 pusher.Config   // the Pusher-protocol WebSocket door
	WS                     hybridws.Config // hybridrt's own WebSocket protocol
	PresenceMaxMembers     int             // distinct users in one presence channel
	WebhookAllowPrivate    bool            // webhooks may reach internal addresses and http URLs (development)
}

// loadConfig reads and checks the environment. It reports every problem at
// once, each saying what to set, so a first start needs one round of fixes.
func loadConfig(getenv func(string) string) (Config, error) {
	env := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	cfg := Config{
		DatabaseURL:   env("DATABASE_URL", ""),
		Addr:          env("ADDR", ":8080"),
		SecretKey:     env("SECRET_KEY", ""),
		OperatorToken: env("OPERATOR_TOKEN", ""),
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if cfg.DatabaseURL == "" {
		bad("DATABASE_URL is not set: point it at PostgreSQL, e.g. postgres://user:password@localhost:5432/hybridrt (`make run` starts a private one for you)")
	}

	var err error
	if cfg.TrustedProxies, err = web.ParseTrustedProxies(env("TRUSTED_PROXIES", "")); err != nil {
		bad("TRUSTED_PROXIES: %v; list the CIDRs of your load balancers and proxies, comma-separated, e.g. 10.0.0.0/8,fd00::/8", err)
	}
	cfg.TLSCertFile, cfg.TLSKeyFile = env("TLS_CERT_FILE", ""), env("TLS_KEY_FILE", "")
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		bad("TLS_CERT_FILE and TLS_KEY_FILE go together: set both (PEM certificate chain and its private key) to serve HTTPS, or neither for plain HTTP")
	} else if cfg.TLSCertFile != "" {
		// Loaded now, not at the first handshake: a wrong path or a key of
		// another certificate stops the start instead of failing every client.
		if cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			bad("TLS_CERT_FILE=%q and TLS_KEY_FILE=%q cannot be used: %v; set TLS_CERT_FILE to a readable PEM certificate chain (the server's certificate first) and TLS_KEY_FILE to its PEM private key",
				cfg.TLSCertFile, cfg.TLSKeyFile, err)
		} else {
			cfg.TLSCertificate = &cert
		}
	}
	scheme := "http"
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}

	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		bad("ADDR=%q is not host:port: use e.g. :8080 or 127.0.0.1:8080", cfg.Addr)
	}

	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	cfg.PublicURL = strings.TrimSuffix(env("PUBLIC_URL", scheme+"://"+net.JoinHostPort(host, port)), "/")
	if u, err := url.Parse(cfg.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("PUBLIC_URL=%q is not an absolute http(s) URL: set it to the address browsers use, e.g. https://rt.example.com", cfg.PublicURL)
	}

	if len(cfg.SecretKey) < 32 {
		bad("SECRET_KEY must be at least 32 characters (it seals signing keys and signs cookies): generate one with `openssl rand -hex 32` and keep it; `make run` makes one under .data/")
	}

	switch lvl := strings.ToLower(env("LOG_LEVEL", "info")); lvl {
	case "debug":
		cfg.LogLevel = slog.LevelDebug
	case "info":
		cfg.LogLevel = slog.LevelInfo
	case "warn":
		cfg.LogLevel = slog.LevelWarn
	case "error":
		cfg.LogLevel = slog.LevelError
	default:
		bad("LOG_LEVEL=%q is not one of debug, info, warn, error", lvl)
	}

	switch signup := strings.ToLower(env("SIGNUP", "open")); signup {
	case "open":
		cfg.SignupOpen = true
	case "closed":
		if cfg.OperatorToken == "" {
			bad("SIGNUP=closed needs OPERATOR_TOKEN: set it to a long random string (e.g. `openssl rand -hex 32`) and send it as the bearer token to POST /v1/tenants")
		}
	default:
		bad("SIGNUP=%q is not open or closed", signup)
	}
	switch pprof := strings.ToLower(env("PPROF", "off")); pprof {
	case "off":
	case "on":
		cfg.Pprof = true
		if cfg.OperatorToken == "" {
			bad("PPROF=on needs OPERATOR_TOKEN: profiles are served only to the operator, with that token as the bearer token")
		}
	default:
		bad("PPROF=%q is not on or off", pprof)
	}
	switch v := strings.ToLower(env("WEBHOOK_ALLOW_PRIVATE", "false")); v {
	case "false":
	case "true":
		cfg.WebhookAllowPrivate = true
	default:
		bad("WEBHOOK_ALLOW_PRIVATE=%q is not true or false; true lets webhooks reach loopback and private addresses over plain http, for development only", v)
	}
	if cfg.OperatorToken != "" && len(cfg.OperatorToken) < 24 {
		bad("OPERATOR_TOKEN is shorter than 24 characters: use a long random string, e.g. `openssl rand -hex 32`")
	}

	duration := func(name string, def, least time.Duration) time.Duration {
		v := env(name, "")
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < least {
			bad("%s=%q is not a duration of at least %s, such as %s", name, v, least, def)
		}
		return d
	}
	number := func(name string, def, least int) int {
		v := env(name, "")
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < least {
			bad("%s=%q is not a whole number of at least %d (default %d)", name, v, least, def)
		}
		return n
	}
	cfg.EventRetention = duration("EVENT_RETENTION", 24*time.Hour, time.Minute)
	cfg.Stream = realtime.DefaultStreamConfig
	cfg.Stream.Heartbeat = duration("HEARTBEAT_INTERVAL", cfg.Stream.Heartbeat, time.Second)
	cfg.Stream.MaxChannels = number("MAX_CHANNELS_PER_SUBSCRIPTION", cfg.Stream.MaxChannels, 1)
	cfg.Publish = realtime.DefaultPublishConfig
	cfg.Publish.MaxEventBytes = number("MAX_EVENT_BYTES", cfg.Publish.MaxEventBytes, 64)
	cfg.Publish.MaxBatch = number("MAX_BATCH", cfg.Publish.MaxBatch, 1)
	cfg.MaxConnectionsByTenant = number("MAX_CONNECTIONS_PER_TENANT", 10000, 1)
	cfg.PublishRate = number("PUBLISH_RATE", 5000, 1)
	cfg.Pusher = pusher.DefaultConfig
	cfg.WS = hybridws.DefaultConfig
	cfg.Pusher.ActivityTimeout = duration("WS_ACTIVITY_TIMEOUT", cfg.Pusher.ActivityTimeout, time.Second)
	cfg.Pusher.ClientEventRate = number("CLIENT_EVENT_RATE", cfg.Pusher.ClientEventRate, 1)
	cfg.PresenceMaxMembers = number("PRESENCE_MAX_MEMBERS", presence.DefaultMaxMembers, 1)

	if len(problems) > 0 {
		return Config{}, errors.New("configuration:\n  - " + strings.Join(problems, "\n  - "))
	}
	return cfg, nil
}
