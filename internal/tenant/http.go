package tenant

import (
	"log/slog"
	"net/http"

	"github.com/hybridrt/hybridrt/internal/web"
)

// HandleGet serves GET /v1/tenant: the tenant that owns the request's API key.
func HandleGet(log *slog.Logger, store *Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := store.Get(r.Context(), FromContext(r.Context()))
		if err != nil { // the key was just verified, so even ErrNotFound is a server fault
			web.ServerError(w, r, log, err)
			return
		}
		web.Encode(w, http.StatusOK, t)
	}
}
