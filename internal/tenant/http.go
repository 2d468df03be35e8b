package tenant

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

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

// HandlePatchSettings serves PATCH /v1/tenant/settings: the fields the body
// names change, the others stay, and the answer is every setting as it now
// is. A field the server refuses is a 400 and changes nothing. This
// instance applies the change at once, the others within CacheTTL.
func HandlePatchSettings(log *slog.Logger, cache *Cache) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := web.Decode[SettingsPatch](w, r, web.DefaultBodyLimit)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		s, err := cache.UpdateSettings(r.Context(), FromContext(r.Context()), p)
		if e, ok := errors.AsType[*SettingError](err); ok {
			web.Error(w, http.StatusBadRequest, e.Code(), e.Error())
			return
		}
		if err != nil { // the key was just verified, so even ErrNotFound is a server fault
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		web.Encode(w, http.StatusOK, s)
	}
}

func idParam(r *http.Request) (ID, bool) {
	n, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	return ID(n), err == nil
}

// HandleGetQuotas serves GET /v1/operator/tenants/{id}/quotas.
func HandleGetQuotas(log *slog.Logger, store *Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := idParam(r)
		if !ok {
			web.Error(w, http.StatusNotFound, "tenant_not_found", "no tenant has that id")
			return
		}
		q, err := store.Quotas(r.Context(), id)
		if errors.Is(err, ErrNotFound) {
			web.Error(w, http.StatusNotFound, "tenant_not_found", "no tenant has that id")
			return
		}
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		web.Encode(w, http.StatusOK, q)
	}
}

// HandlePutQuotas serves PUT /v1/operator/tenants/{id}/quotas: the tenant's
// quotas, replaced whole; a field left out means the server's default. Every
// instance applies them within CacheTTL.
func HandlePutQuotas(log *slog.Logger, store *Store, cache *Cache) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := idParam(r)
		if !ok {
			web.Error(w, http.StatusNotFound, "tenant_not_found", "no tenant has that id")
			return
		}
		q, err := web.Decode[Quotas](w, r, 4<<10)
		if err != nil {
			web.Fail(w, r, log, err)
			return
		}
		if err := q.Validate(); err != nil {
			web.Error(w, http.StatusBadRequest, "invalid_quotas", err.Error())
			return
		}
		err = store.SetQuotas(r.Context(), id, q)
		if errors.Is(err, ErrNotFound) {
			web.Error(w, http.StatusNotFound, "tenant_not_found", "no tenant has that id")
			return
		}
		if err != nil {
			web.Fail(w, r, log, web.Unavailable(err))
			return
		}
		cache.Forget(id)
		web.Encode(w, http.StatusOK, q)
	}
}

// HandleGetAccount serves GET /v1/operator/tenants/{id}: the tenant with its status.
func HandleGetAccount(log *slog.Logger, store *Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := idParam(r)
		if !ok {
			web.Error(w, http.StatusNotFound, "tenant_not_found", "no tenant has that id")
			return
		}
		a, err := store.Account(r.Context(), id)
		answerAccount(w, r, log, a, err)
	}
}

// HandleSuspend serves POST /v1/operator/tenants/{id}/suspend: the tenant's
// API keys, subscriber tokens and tickets get 403 tenant_suspended, and its
// open streams and held long-polls end, on every instance within
// StatusRefresh. Its data, keys and events stay (retention still prunes),
// so resuming restores everything. Suspending twice changes nothing.
func HandleSuspend(log *slog.Logger, status *Status) http.HandlerFunc {
	return handleStatus(log, status.Suspend)
}

// HandleResume serves POST /v1/operator/tenants/{id}/resume: the tenant's
// credentials work again, and its clients resume from their last event id.
func HandleResume(log *slog.Logger, status *Status) http.HandlerFunc {
	return handleStatus(log, status.Resume)
}

func handleStatus(log *slog.Logger, change func(context.Context, ID) (Account, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := idParam(r)
		if !ok {
			web.Error(w, http.StatusNotFound, "tenant_not_found", "no tenant has that id")
			return
		}
		a, err := change(r.Context(), id)
		if err == nil {
			log.LogAttrs(r.Context(), slog.LevelInfo, "tenant status changed by the operator",
				slog.String("request_id", web.RequestID(r.Context())),
				slog.Int64("tenant_id", int64(id)), slog.Bool("suspended", a.Suspended))
		}
		answerAccount(w, r, log, a, err)
	}
}

func answerAccount(w http.ResponseWriter, r *http.Request, log *slog.Logger, a Account, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		web.Error(w, http.StatusNotFound, "tenant_not_found", "no tenant has that id")
	case err != nil:
		web.Fail(w, r, log, web.Unavailable(err))
	default:
		web.Encode(w, http.StatusOK, a)
	}
}
