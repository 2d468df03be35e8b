// Command api is the hybridrt service.
//
//	api [serve]   migrate the database and serve the HTTP API (the default)
//	api migrate   apply pending migrations and exit
//
// Configuration comes from the environment; see README.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/migrations"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

const helpText = `usage: api [serve|migrate]

  serve    apply migrations, then serve the HTTP API on ADDR (default)
  migrate  apply pending migrations and exit

Configuration is read from the environment: DATABASE_URL, ADDR, PUBLIC_URL,
SECRET_KEY, LOG_LEVEL, SIGNUP, OPERATOR_TOKEN, and TLS_CERT_FILE with
TLS_KEY_FILE to serve HTTPS and HTTP/2. See README.md.`

// run is the whole program, with its inputs as arguments so tests can call
// it. It returns when ctx ends or a signal arrives, after a graceful shutdown.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch {
	case cmd == "-h" || cmd == "--help" || cmd == "help":
		fmt.Fprintln(stderr, helpText)
		return nil
	case len(args) > 1 || (cmd != "serve" && cmd != "migrate"):
		return fmt.Errorf("unknown arguments %q\n%s", args, helpText)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))

	pool, err := connect(ctx, log, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Apply(ctx, pool); err != nil {
		return err
	}
	if cmd == "migrate" {
		log.Info("migrations applied")
		return nil
	}
	return serve(ctx, log, cfg, pool)
}

// connect opens the pool and waits up to 30 s for the database to answer,
// so an instance started alongside its database (compose) does not give up.
func connect(ctx context.Context, log *slog.Logger, url string) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL is not a valid PostgreSQL URL: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default is max(4, cores): too few for streams' backlog reads
		// alongside publishing and authentication.
		pcfg.MaxConns = 20
	}
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "hybridrt"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 4*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = pool.Ping(pctx)
		cancel()
		if err == nil {
			return pool, nil
		}
		if time.Now().Add(wait).After(deadline) || ctx.Err() != nil {
			pool.Close()
			return nil, fmt.Errorf("cannot reach the database at %s: %w (is PostgreSQL running, and is DATABASE_URL right?)",
				pcfg.ConnConfig.Host, err)
		}
		log.Warn("database not reachable yet; retrying", "err", err, "retry_in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

func serve(ctx context.Context, log *slog.Logger, cfg Config, pool *pgxpool.Pool) error {
	s, err := newServices(cfg, pool, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on ADDR=%s: %w (is another process using the port?)", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           NewServer(log, cfg, s),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if cfg.TLSCertificate != nil {
		scheme = "https"
		srv.TLSConfig = &tls.Config{
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"h2", "http/1.1"},
			Certificates: []tls.Certificate{*cfg.TLSCertificate},
		}
		srv.HTTP2 = http2Config(cfg.Stream)
		if leaf := cfg.TLSCertificate.Leaf; leaf != nil && time.Now().After(leaf.NotAfter) {
			log.Warn("the TLS certificate has expired and clients will refuse it: renew TLS_CERT_FILE and TLS_KEY_FILE, then restart",
				"not_after", leaf.NotAfter)
		}
	}
	// Shutdown waits for handlers to return; streams return when the hub
	// closes, those on HTTP/2 connections included.
	srv.RegisterOnShutdown(s.hub.Close)
	log.Info("hybridrt is listening", "scheme", scheme, "addr", ln.Addr().String(), "url", cfg.PublicURL, "console", cfg.PublicURL+"/console", "instance", s.registry.InstanceID())

	// The background parts outlive the HTTP server by the drain, so in-flight
	// publishes can still commit: they stop on bgCtx, after Shutdown.
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	var bg errgroup.Group
	s.start(bgCtx, &bg, log, cfg)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		accept := srv.Serve
		if srv.TLSConfig != nil {
			// The certificate is in TLSConfig; net/http adds HTTP/2 by ALPN.
			accept = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
		}
		if err := accept(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: draining requests and closing streams")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 10*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		// Streams on hijacked connections are not the server's to wait for:
		// let them send their staggered retry: before the process exits.
		if werr := s.hub.WaitStreams(sctx); err == nil {
			err = werr
		}
		return err
	})
	err = g.Wait()
	stopBackground()
	if berr := bg.Wait(); err == nil {
		err = berr
	}
	log.Info("stopped")
	return err
}

// http2Config tunes HTTP/2, where one connection carries many long-lived
// streams: a browser puts every EventSource and poll of an origin on one.
func http2Config(sc realtime.StreamConfig) *http.HTTP2Config {
	return &http.HTTP2Config{
		// Go's default, stated because Go considers lowering it to 100.
		// Far more streams than a page opens (the SDK shares one stream
		// among an origin's tabs); a browser queues what is over it, Go's
		// client opens another connection. Tenants' connection limits
		// count every stream, whatever the connection.
		MaxConcurrentStreams: 250,
		// A client that vanished without closing its connection leaves no
		// error to see: ping a connection silent for a heartbeat and close
		// it, ending its streams, when no answer comes within the write
		// timeout (on plain HTTP, hijacked streams get this from the
		// kernel's TCP_USER_TIMEOUT instead).
		SendPingTimeout: sc.Heartbeat,
		PingTimeout:     sc.WriteTimeout,
		// A client that stops reading stalls every stream of its
		// connection at once: close it when nothing can be sent for as long.
		WriteByteTimeout: sc.WriteTimeout,
	}
}
