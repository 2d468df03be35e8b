package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"DATABASE_URL": "postgres://localhost/hybridrt",
		"SECRET_KEY":   strings.Repeat("s", 32),
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string // substrings of the error; none: must succeed
		check   func(Config) bool
	}{
		{"defaults", nil, nil, func(c Config) bool {
			return c.Addr == ":8080" && c.PublicURL == "http://localhost:8080" && c.SignupOpen && c.LogLevel == 0
		}},
		{"public url from addr", map[string]string{"ADDR": "127.0.0.1:9000"}, nil, func(c Config) bool {
			return c.PublicURL == "http://127.0.0.1:9000"
		}},
		{"explicit public url", map[string]string{"PUBLIC_URL": "https://rt.example.com/"}, nil, func(c Config) bool {
			return c.PublicURL == "https://rt.example.com"
		}},
		{"closed with operator token", map[string]string{"SIGNUP": "closed", "OPERATOR_TOKEN": strings.Repeat("o", 24)}, nil, func(c Config) bool {
			return !c.SignupOpen && c.OperatorToken == strings.Repeat("o", 24)
		}},
		{"everything missing", map[string]string{"DATABASE_URL": "", "SECRET_KEY": ""}, []string{"DATABASE_URL is not set", "SECRET_KEY must be at least 32"}, nil},
		{"short secret", map[string]string{"SECRET_KEY": "short"}, []string{"SECRET_KEY", "openssl rand -hex 32"}, nil},
		{"bad addr", map[string]string{"ADDR": "8080"}, []string{"ADDR=\"8080\" is not host:port"}, nil},
		{"bad public url", map[string]string{"PUBLIC_URL": "rt.example.com"}, []string{"PUBLIC_URL"}, nil},
		{"bad log level", map[string]string{"LOG_LEVEL": "loud"}, []string{"LOG_LEVEL=\"loud\""}, nil},
		{"bad signup", map[string]string{"SIGNUP": "maybe"}, []string{"SIGNUP=\"maybe\""}, nil},
		{"closed without token", map[string]string{"SIGNUP": "closed"}, []string{"SIGNUP=closed needs OPERATOR_TOKEN"}, nil},
		{"pprof for the operator", map[string]string{"PPROF": "on", "OPERATOR_TOKEN": strings.Repeat("o", 24)}, nil, func(c Config) bool { return c.Pprof }},
		{"pprof without operator token", map[string]string{"PPROF": "on"}, []string{"PPROF=on needs OPERATOR_TOKEN"}, nil},
		{"bad pprof", map[string]string{"PPROF": "yes"}, []string{"PPROF=\"yes\" is not on or off"}, nil},
		{"presence members by default", map[string]string{}, nil, func(c Config) bool { return c.PresenceMaxMembers == 100 }},
		{"more presence members", map[string]string{"PRESENCE_MAX_MEMBERS": "1000"}, nil, func(c Config) bool { return c.PresenceMaxMembers == 1000 }},
		{"no presence members", map[string]string{"PRESENCE_MAX_MEMBERS": "0"}, []string{"PRESENCE_MAX_MEMBERS=\"0\""}, nil},
		{"short operator token", map[string]string{"OPERATOR_TOKEN": "short"}, []string{"OPERATOR_TOKEN is shorter"}, nil},
		{"tls", testCertEnv(t, "a.crt", "a.key"), nil, func(c Config) bool {
			return c.TLSCertificate != nil && c.TLSCertificate.Leaf != nil && c.TLSCertificate.Leaf.Subject.CommonName == "hybridrt test a" &&
				c.PublicURL == "https://localhost:8080"
		}},
		{"tls cert without key", testCertEnv(t, "a.crt", ""), []string{"TLS_CERT_FILE and TLS_KEY_FILE go together"}, nil},
		{"tls key without cert", testCertEnv(t, "", "a.key"), []string{"TLS_CERT_FILE and TLS_KEY_FILE go together"}, nil},
		{"tls cert file missing", testCertEnv(t, "missing.crt", "a.key"), []string{"TLS_CERT_FILE=", "missing.crt", "no such file", "set TLS_CERT_FILE to a readable PEM certificate chain"}, nil},
		{"tls key file missing", testCertEnv(t, "a.crt", "missing.key"), []string{"TLS_KEY_FILE=", "missing.key", "no such file", "TLS_KEY_FILE to its PEM private key"}, nil},
		{"tls cert file is a directory", testCertEnv(t, ".", "a.key"), []string{"TLS_CERT_FILE=", "is a directory"}, nil},
		{"tls key of another certificate", testCertEnv(t, "a.crt", "b.key"), []string{"private key does not match public key", "TLS_KEY_FILE to its PEM private key"}, nil},
		{"tls files switched", testCertEnv(t, "a.key", "a.crt"), []string{"switched", "TLS_CERT_FILE"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, err := loadConfig(func(k string) string { return env[k] })
			if len(tt.wantErr) == 0 {
				if err != nil || !tt.check(cfg) {
					t.Errorf("loadConfig = %+v, %v", cfg, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("loadConfig succeeded, want an error mentioning %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("loadConfig error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// TestRun starts the whole program on a fresh, unmigrated database, as
// `make run` does, then shuts it down as SIGTERM would. Its DATABASE_URL
// sets the pool's size, which the LISTEN connection must not send to
// PostgreSQL (it would be refused, and the instance never ready).
func TestRun(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t, false) + "&pool_max_conns=7"
	env := map[string]string{
		"DATABASE_URL": url,
		"ADDR":         "127.0.0.1:0",
		"SECRET_KEY":   strings.Repeat("k", 32),
	}
	getenv := func(k string) string { return env[k] }

	// migrate alone migrates and exits.
	var out syncBuffer
	if err := run(t.Context(), []string{"migrate"}, getenv, &out); err != nil {
		t.Fatalf("api migrate: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() { done <- run(ctx, nil, getenv, logs) }()

	addr := waitForListening(t, logs, done)
	res, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("GET /healthz = %d, want 200", res.StatusCode)
	}
	// Ready once the LISTEN connection is up, which takes a moment after listening.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz = %d for 10 s, want 200", res.StatusCode)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after shutdown, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return within 15 s of shutdown")
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped line in logs: %s", logs)
	}
	if strings.Contains(logs.String(), env["SECRET_KEY"]) {
		t.Errorf("logs contain SECRET_KEY")
	}
}

func waitForListening(t *testing.T, logs *syncBuffer, done <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			var entry struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "hybridrt is listening" {
				return entry.Addr
			}
		}
		select {
		case err := <-done:
			t.Fatalf("run ended before listening: %v\n%s", err, logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("run did not listen within 30 s:\n%s", logs)
	return ""
}

func TestRunRefusesBadConfigAndArgs(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	err := run(t.Context(), nil, func(string) string { return "" }, &out)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL is not set") {
		t.Errorf("run with no environment = %v, want a configuration error naming DATABASE_URL", err)
	}
	if err := run(t.Context(), []string{"frobnicate"}, func(string) string { return "" }, &out); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("run frobnicate = %v, want usage", err)
	}
	if err := run(t.Context(), []string{"--help"}, func(string) string { return "" }, &out); err != nil || !strings.Contains(out.String(), "usage") {
		t.Errorf("run --help = %v, %q; want usage on stderr", err, out.String())
	}
}
