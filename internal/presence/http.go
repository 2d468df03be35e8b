package presence

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// HandleMembers serves GET /v1/presence/{channel} (API key): the members of
// one of the tenant's presence channels, on every instance.
func HandleMembers(log *slog.Logger, reg *Registry) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		members(w, r, log, reg, tenant.FromContext(r.Context()), chi.URLParam(r, "channel"), nil)
	}
}

// HandleSubscriberMembers serves GET /api/realtime/presence?channel=
// (subscriber token): the members of a presence channel the token may
// subscribe to, for a client that is not subscribed to it, or
// wants the list again.
func HandleSubscriberMembers(log *slog.Logger, reg *Registry) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := auth.SubscriberFrom(r.Context())
		members(w, r, log, reg, s.TenantID, r.URL.Query().Get("channel"), s.Allows)
	}
}

// members answers with the members of tenantID's channel name, when
// allows (nil: the tenant's own key asks) lets the caller see it.
func members(w http.ResponseWriter, r *http.Request, log *slog.Logger, reg *Registry, tenantID tenant.ID, name string, allows func(string) bool) {
	if err := channel.Valid(name); err != nil {
		web.Error(w, http.StatusBadRequest, "invalid_channel", err.Error())
		return
	}
	if !realtime.IsPresence(name) {
		web.Error(w, http.StatusBadRequest, "not_presence_channel",
			"only presence channels have members: their names start with presence-")
		return
	}
	if allows != nil && !allows(name) {
		web.Error(w, http.StatusForbidden, "insufficient_scope", "the token does not allow channel "+strconv.Quote(name))
		return
	}
	list, err := reg.Members(r.Context(), tenantID, name)
	if err != nil {
		web.Fail(w, r, log, web.Unavailable(err))
		return
	}
	web.Encode(w, http.StatusOK, map[string]any{"channel": name, "members": list})
}
