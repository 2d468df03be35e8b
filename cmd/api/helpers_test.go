package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/auth"
)

// syncBuffer is a log sink that servers and the test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig() Config {
	return Config{
		Addr:       "127.0.0.1:0",
		PublicURL:  "http://hybridrt.test",
		SecretKey:  "test-secret-key-of-at-least-32-characters",
		LogLevel:   slog.LevelDebug,
		SignupOpen: true,
	}
}

// instance is one hybridrt server on a real TCP listener, with its logs.
type instance struct {
	t    *testing.T
	url  string
	logs *syncBuffer
}

// newInstance starts a server on pool. Several instances on one pool are
// several api processes sharing one database.
func newInstance(t *testing.T, pool *pgxpool.Pool, cfg Config) *instance {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sealer, err := auth.NewSealer(cfg.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewServer(log, cfg, pool, auth.NewKeys(pool), sealer))
	t.Cleanup(srv.Close)
	return &instance{t: t, url: srv.URL, logs: logs}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the response body into v, failing the test when it cannot.
func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response %d %s is not JSON: %v", r.status, r.body, err)
	}
}

// do sends a request. bearer, when not empty, goes in Authorization; a
// non-empty body is sent as application/json unless header says otherwise.
func (in *instance) do(method, path, bearer, body string, header ...string) response {
	in.t.Helper()
	req, err := http.NewRequest(method, in.url+path, strings.NewReader(body))
	if err != nil {
		in.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Add(header[i], header[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		in.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

type signedUp struct {
	Tenant struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"tenant"`
	APIKey     string `json:"apiKey"`
	SigningKey struct {
		Kid    string `json:"kid"`
		Secret string `json:"secret"`
	} `json:"signingKey"`
}

func (in *instance) signup(name string) signedUp {
	in.t.Helper()
	res := in.do("POST", "/v1/tenants", "", `{"name":"`+name+`"}`)
	if res.status != http.StatusCreated {
		in.t.Fatalf("sign-up = %d %s, want 201", res.status, res.body)
	}
	var s signedUp
	res.json(in.t, &s)
	return s
}

// checkProblem asserts that res is an RFC 9457 problem with status want and a
// stable code, and returns the code.
func checkProblem(t *testing.T, what string, res response, want int) string {
	t.Helper()
	if res.status != want {
		t.Errorf("%s = %d %s, want %d", what, res.status, res.body, want)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s Content-Type = %q, want application/problem+json", what, ct)
	}
	var p struct {
		Type, Title, Detail, Code string
		Status                    int
	}
	if err := json.Unmarshal(res.body, &p); err != nil {
		t.Errorf("%s body %q is not JSON: %v", what, res.body, err)
		return ""
	}
	if p.Code == "" || p.Status != res.status || p.Type != "urn:hybridrt:problem:"+p.Code || p.Title == "" {
		t.Errorf("%s problem = %+v, want type, title, status %d and code", what, p, res.status)
	}
	if res.status < 500 && p.Detail == "" {
		t.Errorf("%s problem has no detail", what)
	}
	return p.Code
}
