package presence

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// HandleMembers serves GET /v1/presence/{channel} (API key): the members of
// one of the tenant's presence channels, on every instance.
func HandleMembers(log *slog.Logger, reg *Registry) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "channel")
		if err := channel.Valid(name); err != nil {
			web.Error(w, http.StatusBadRequest, "invalid_channel", err.Error())
			return
		}
		if !strings.HasPrefix(name, "presence-") {
			web.Error(w, http.StatusBadRequest, "not_presence_channel",
				"only presence channels have members: their names start with presence-")
			return
		}
		members, err := reg.Members(r.Context(), tenant.FromContext(r.Context()), name)
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		web.Encode(w, http.StatusOK, map[string]any{"channel": name, "members": members})
	}
}
