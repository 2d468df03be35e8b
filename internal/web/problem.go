// Package web holds what every HTTP handler shares: strict JSON decoding,
// JSON and RFC 9457 problem responses, and the middleware that gives each
// request an id, an access-log line and panic recovery.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
)

// Problem is an RFC 9457 problem detail. It is also an error, so a helper
// such as Decode can return the exact response a handler should send.
//
// Code is stable and machine-readable ("invalid_json", "unauthorized"); Type
// is the same code as a URN; Detail says what happened and what to do.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code"`

	// Header holds extra response headers, such as WWW-Authenticate or Retry-After.
	Header http.Header `json:"-"`

	cause error // the fault behind a 503, for the log
}

// NewProblem returns a problem with the given status, stable code and detail.
func NewProblem(status int, code, detail string) *Problem {
	return &Problem{
		Type:   "urn:hybridrt:problem:" + code,
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
		Code:   code,
	}
}

func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

// WithHeader returns p with a response header added.
func (p *Problem) WithHeader(key, value string) *Problem {
	if p.Header == nil {
		p.Header = http.Header{}
	}
	p.Header.Add(key, value)
	return p
}

// Write sends p as application/problem+json.
func (p *Problem) Write(w http.ResponseWriter) {
	for k, vs := range p.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// Error sends a problem response with the given status, code and detail.
func Error(w http.ResponseWriter, status int, code, detail string) {
	NewProblem(status, code, detail).Write(w)
}

// Fail sends err to the client: as itself when it is a *Problem, else as a
// bare 500 after logging it once with the request id.
func Fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if p, ok := errors.AsType[*Problem](err); ok {
		if p.cause != nil {
			log.LogAttrs(r.Context(), slog.LevelWarn, "request refused: database unavailable",
				slog.String("request_id", RequestID(r.Context())),
				slog.String("path", r.URL.Path),
				slog.String("err", p.cause.Error()))
		}
		if observe, ok := r.Context().Value(observerKey{}).(func(*http.Request, *Problem)); ok {
			observe(r, p)
		}
		p.Write(w)
		return
	}
	ServerError(w, r, log, err)
}

type observerKey struct{}

// ObserveProblems is middleware that calls observe with every problem that
// Fail answers a request under it with, and the request as it then is
// (authenticated, so observe can tell whose it was): for usage's count of
// refused requests.
func ObserveProblems(observe func(*http.Request, *Problem)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), observerKey{}, observe)))
		})
	}
}

// ServerError logs err with the request id and sends a bare 500: clients see
// "internal error", operators the log line.
func ServerError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	log.LogAttrs(r.Context(), slog.LevelError, "request failed",
		slog.String("request_id", RequestID(r.Context())),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("err", err.Error()))
	Error(w, http.StatusInternalServerError, "internal", "")
}

// Encode sends v as JSON with the given status.
func Encode(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// NotFound answers any unknown path.
func NotFound(w http.ResponseWriter, r *http.Request) {
	Error(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
}

// MethodNotAllowed answers a known path asked with the wrong method, listing
// the methods it does allow in the Allow header.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request, allowed []string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	Error(w, http.StatusMethodNotAllowed, "method_not_allowed",
		r.Method+" is not allowed on "+r.URL.Path+"; use "+strings.Join(allowed, " or "))
}
