package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestUnavailable: database errors that mean "not now" become a 503
// problem with Retry-After and the stable code "unavailable"; any other
// error is returned unchanged, for Fail to answer 500.
func TestUnavailable(t *testing.T) {
	pgErr := func(code string) error {
		return fmt.Errorf("realtime: commit: %w", &pgconn.PgError{Code: code, Message: "internal text " + code})
	}
	tests := []struct {
		name   string
		err    error
		want   bool   // a 503
		detail string // a part of its detail
	}{
		{"deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), true, "cannot reach its database"},
		{"shutting down", pgErr("57P01"), true, "cannot reach its database"},
		{"read-only transaction", pgErr("25006"), true, "read-only"},
		{"NOTIFY queue full", pgErr("54000"), true, "cannot reach its database"},
		{"serialization failure", pgErr("40001"), true, "cannot reach its database"},
		{"raise exception", pgErr("P0001"), false, ""},
		{"plain error", errors.New("boom"), false, ""},
	}
	for _, tt := range tests {
		got := Unavailable(tt.err)
		p, ok := errors.AsType[*Problem](got)
		if ok != tt.want {
			t.Errorf("Unavailable(%s) = %v, want a 503 problem: %v", tt.name, got, tt.want)
			continue
		}
		if !ok {
			if got != tt.err {
				t.Errorf("Unavailable(%s) = %v, want the error unchanged", tt.name, got)
			}
			continue
		}
		if p.Status != http.StatusServiceUnavailable || p.Code != "unavailable" || p.Header.Get("Retry-After") == "" {
			t.Errorf("Unavailable(%s) = %+v, want 503 unavailable with Retry-After", tt.name, p)
		}
		if !strings.Contains(p.Detail, tt.detail) || strings.Contains(p.Detail, "internal text") {
			t.Errorf("Unavailable(%s) detail %q, want it to say %q and not the database's text", tt.name, p.Detail, tt.detail)
		}
	}
	if Unavailable(nil) != nil {
		t.Errorf("Unavailable(nil) != nil")
	}
}
