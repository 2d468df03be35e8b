package realtime

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/limit"
	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/tenant"
)

// plainWriter is a ResponseWriter that cannot flush, as some wrapping
// middlewares are: it has no Flush and no Unwrap.
type plainWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *plainWriter) Header() http.Header { return w.h }
func (w *plainWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *plainWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}

// TestSSENonFlusher (TESTPLAN 2C, request shape): behind a writer that
// cannot flush, the SSE handler answers 500 at once with a clear log line,
// never hangs, and leaves no connection registered.
func TestSSENonFlusher(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t)
	var tid tenant.ID
	if err := pool.QueryRow(t.Context(), `INSERT INTO tenants (name) VALUES ('acme') RETURNING id`).Scan(&tid); err != nil {
		t.Fatal(err)
	}
	store := NewStore(pool)
	hub := NewHub(store, DefaultRingSize)
	defer hub.Close()
	shared := limit.New(pool, InstanceDead)
	reg := NewRegistry(pool, tenant.NewStatus(tenant.NewStore(pool)), shared)
	limits := NewLimits(DefaultPublishConfig, DefaultStreamConfig, 100, tenant.NewQuotaCache(tenant.NewStore(pool)), shared)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	h := HandleSSE(log, hub, reg, nil, limits, nil)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ctx = auth.WithSubscriber(ctx, auth.Subscriber{TenantID: tid, Subject: "u1", Expires: time.Now().Add(time.Hour)})
	r := httptest.NewRequestWithContext(ctx, "GET", "/api/realtime/sse?channels=broadcast", nil)
	w := &plainWriter{h: http.Header{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h(w, r)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the SSE handler hangs behind a writer that cannot flush")
	}
	if w.status != http.StatusInternalServerError || !strings.Contains(w.body.String(), `"code":"internal"`) {
		t.Errorf("SSE behind a non-flusher = %d %s, want 500 internal", w.status, w.body.String())
	}
	if !strings.Contains(logs.String(), "cannot flush") {
		t.Errorf("no log line says the writer cannot flush: %s", logs.String())
	}
	if n := reg.Count(); n != 0 {
		t.Errorf("%d connections left registered, want 0", n)
	}
}
