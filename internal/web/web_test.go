package web

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

type sample struct {
	Name  string   `json:"name"`
	Count int      `json:"count"`
	Tags  []string `json:"tags"`
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int    // 0: success
		wantDetail  string // a substring of the problem's detail
	}{
		{"ok", "application/json", `{"name":"a","count":2,"tags":["x"]}`, 0, ""},
		{"ok with charset", "application/json; charset=utf-8", `{"name":"a"}`, 0, ""},
		{"trailing white space", "application/json", "{\"name\":\"a\"}\n\t ", 0, ""},
		{"no content type", "", `{"name":"a"}`, 415, "Content-Type: application/json"},
		{"form content type", "application/x-www-form-urlencoded", `{"name":"a"}`, 415, "Content-Type"},
		{"empty", "application/json", ``, 400, "empty"},
		{"only spaces", "application/json", "   ", 400, "empty"},
		{"null", "application/json", `null`, 400, "JSON object"},
		{"array", "application/json", `[{"name":"a"}]`, 400, "JSON object"},
		{"string", "application/json", `"a"`, 400, "JSON object"},
		{"malformed", "application/json", `{"name":}`, 400, "malformed JSON at byte"},
		{"truncated", "application/json", `{"name":"a"`, 400, "ends too early"},
		{"trailing object", "application/json", `{"name":"a"}{}`, 400, "after the JSON object"},
		{"trailing garbage", "application/json", `{"name":"a"} garbage`, 400, "after the JSON object"},
		{"unknown field", "application/json", `{"name":"a","tenantId":"2"}`, 400, `unknown field "tenantId"`},
		{"wrong type string", "application/json", `{"name":5}`, 400, `field "name" must be a string`},
		{"wrong type int", "application/json", `{"count":"5"}`, 400, `field "count" must be a whole number`},
		{"fraction for int", "application/json", `{"count":1.5}`, 400, `field "count"`},
		{"huge number", "application/json", `{"count":1e400}`, 400, `count`},
		{"wrong type array", "application/json", `{"tags":"x"}`, 400, `field "tags" must be an array`},
		{"invalid utf-8", "application/json", "{\"name\":\"\xff\"}", 400, "UTF-8"},
		{"deep nesting", "application/json", `{"tags":` + strings.Repeat("[", 400) + strings.Repeat("]", 400) + `}`, 400, `field "tags"`},
		{"too large", "application/json", `{"name":"` + strings.Repeat("a", 2000) + `"}`, 413, "larger than the limit of 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("POST", "/", strings.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			w := httptest.NewRecorder()
			_, err := Decode[sample](w, r, 1024)
			body := tt.body
			if len(body) > 60 {
				body = body[:60] + "…"
			}
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("Decode(%q) = %v, want success", body, err)
				}
				return
			}
			p, ok := err.(*Problem)
			if !ok {
				t.Fatalf("Decode(%q) error = %v (%T), want *Problem", body, err, err)
			}
			if p.Status != tt.wantStatus || !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("Decode(%q) = %d %q, want %d containing %q", body, p.Status, p.Detail, tt.wantStatus, tt.wantDetail)
			}
			if p.Code == "" {
				t.Errorf("Decode(%q) problem has no code", body)
			}
		})
	}
}

func TestDecodeKeepsValues(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{"name":"é\n","count":7,"tags":["a","b"]}`))
	r.Header.Set("Content-Type", "application/json")
	got, err := Decode[sample](httptest.NewRecorder(), r, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "é\n" || got.Count != 7 || len(got.Tags) != 2 {
		t.Errorf("Decode = %+v, want name é\\n, count 7, two tags", got)
	}
}

func TestProblemWrite(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	NewProblem(http.StatusUnauthorized, "unauthorized", "send a key").WithHeader("WWW-Authenticate", "Bearer").Write(w)
	if w.Code != 401 || w.Header().Get("Content-Type") != "application/problem+json" || w.Header().Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("Write: %d %v, want 401 problem+json with WWW-Authenticate", w.Code, w.Header())
	}
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"type": "urn:hybridrt:problem:unauthorized", "title": "Unauthorized", "status": 401.0, "detail": "send a key", "code": "unauthorized"} {
		if body[k] != want {
			t.Errorf("problem[%q] = %v, want %v", k, body[k], want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"/v1/events", "/v1/events"},
		{"/sse?channels=a&token=eyJsecret", "/sse?channels=a&token=REDACTED"},
		{"/sse?ticket=tk_secret&Token=x", "/sse?Token=REDACTED&ticket=REDACTED"},
		{"/x?api_key=hrt_secret&access_token=abc", "/x?access_token=REDACTED&api_key=REDACTED"},
		{"/x?token=a;b=%zz", "/x?REDACTED"},
		{"/apps/1/events?auth_key=sk_a&auth_signature=0a1b&auth_timestamp=1", "/apps/1/events?auth_key=sk_a&auth_signature=REDACTED&auth_timestamp=1"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := RedactURL(u); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(RequestID(r.Context()))) })
	h := WithRequestID(AccessLog(log)(Recover(log)(mux)))

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/panic?token=hush", nil))
	id := w.Header().Get("X-Request-Id")
	if w.Code != 500 || id == "" || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("panic: %d %v, want a 500 problem with a request id", w.Code, w.Header())
	}
	if strings.Contains(w.Body.String(), "boom") {
		t.Errorf("panic body %q reveals the panic value", w.Body.String())
	}
	if !strings.Contains(logs.String(), `"panic":"boom"`) || !strings.Contains(logs.String(), `"request_id":"`+id+`"`) {
		t.Errorf("logs %s lack the panic with request id %s", logs.String(), id)
	}
	if strings.Contains(logs.String(), "hush") {
		t.Errorf("logs %s contain the token query value", logs.String())
	}

	w = httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/ok", nil)
	r.Header.Set("X-Request-Id", "proxy-id-1")
	h.ServeHTTP(w, r)
	if w.Body.String() != "proxy-id-1" || w.Header().Get("X-Request-Id") != "proxy-id-1" {
		t.Errorf("a sane X-Request-Id from a proxy was not kept: body %q", w.Body.String())
	}
	w = httptest.NewRecorder()
	r = httptest.NewRequest("GET", "/ok", nil)
	r.Header.Set("X-Request-Id", "bad id\n{json}")
	h.ServeHTTP(w, r)
	if strings.Contains(w.Body.String(), "bad") || len(w.Body.String()) != 16 {
		t.Errorf("an unsafe X-Request-Id was kept: %q", w.Body.String())
	}
}
