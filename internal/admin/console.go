// Package admin serves the web console: pages for a tenant's developers
// (overview with usage charts, usage by day or month, live clients, live
// event log, test events, keys, tokens, Pusher settings, webhooks) and for
// the operator, rendered with the templ components of package views and
// made live with htmx.
//
// Security: sessions are server-side (Sessions) behind an HttpOnly,
// SameSite=Lax cookie, __Host- prefixed and Secure when served over TLS.
// Every state-changing request must pass Go's cross-origin protection and
// carry the session's CSRF token (a form field, or the X-CSRF-Token header
// that console.js adds to htmx requests). No GET changes state. Logins are
// failures are rate-limited per client address. Every query is scoped to the session's tenant.
package admin

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/a-h/templ"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/realtime"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
	"github.com/hybridrt/hybridrt/internal/webhook"
	"github.com/hybridrt/hybridrt/views"
)

// Console holds what the console's handlers use.
type Console struct {
	Log       *slog.Logger
	Pool      *pgxpool.Pool
	Sessions  *Sessions
	Keys      *auth.Keys
	Signing   *auth.SigningKeys
	Verifier  *auth.Verifier
	Tickets   *auth.Tickets
	Store     *realtime.Store
	Hub       *realtime.Hub
	Publisher *realtime.Publisher
	Registry  *realtime.Registry
	Presence  Presence // presence channels' members, on every instance
	Limits    *realtime.Limits
	Status    *tenant.Status  // which tenants the operator suspended
	Tenants   *tenant.Cache   // tenants' settings, read and changed through the instance's cache
	Webhooks  *webhook.Worker // sends the console's test webhooks
	Signup    auth.SignupPolicy
	PublicURL string

	loginsOnce sync.Once
	logins     *web.AddrLimiter // failed logins by client address
}

const (
	cookieSecure = "__Host-hybridrt_session" // the prefix needs Secure, so TLS only
	cookiePlain  = "hybridrt_session"
)

// secure reports whether the console is reached over TLS, directly or
// through a proxy that PUBLIC_URL says speaks https.
func (c *Console) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(c.PublicURL, "https://")
}

func (c *Console) setSession(w http.ResponseWriter, r *http.Request, id string) {
	name := cookiePlain
	if c.secure(r) {
		name = cookieSecure
	}
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: id, Path: "/", MaxAge: int(MaxAge.Seconds()),
		HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteLaxMode,
	})
}

func (c *Console) clearSession(w http.ResponseWriter, r *http.Request) {
	for _, name := range []string{cookieSecure, cookiePlain} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, Secure: name == cookieSecure || c.secure(r), SameSite: http.SameSiteLaxMode})
	}
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) Session { return ctx.Value(sessionKey{}).(Session) }

// session returns the request's live session, if any.
func (c *Console) session(r *http.Request) (Session, bool) {
	for _, name := range []string{cookieSecure, cookiePlain} {
		if ck, err := r.Cookie(name); err == nil {
			if s, err := c.Sessions.Get(r.Context(), ck.Value); err == nil {
				return s, true
			}
		}
	}
	return Session{}, false
}

// Headers sets the console's security headers: a strict CSP (no inline
// script or style, no framing), no caching, no sniffing, no referrer.
func Headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if !strings.HasPrefix(r.URL.Path, "/console/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// CrossOrigin refuses state-changing requests from other origins (Go's
// CrossOriginProtection: Sec-Fetch-Site, else Origin against Host).
func CrossOrigin(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		web.Error(w, http.StatusForbidden, "cross_origin", "cross-origin requests may not change anything here")
	}))
	return cop.Handler(next)
}

// RequireTenant admits requests with a tenant session; a state-changing one
// must also carry the session's CSRF token. Others go to the login page.
func (c *Console) RequireTenant(next http.Handler) http.Handler {
	return c.require(func(s Session) bool { return !s.Operator }, false, next)
}

// RequireOperator admits requests with an operator session, as RequireTenant.
func (c *Console) RequireOperator(next http.Handler) http.Handler {
	return c.require(func(s Session) bool { return s.Operator }, true, next)
}

// OrAPIKey admits a request with an API key (through apiKey) or, when it
// carries no Authorization header, with a tenant console session and its
// CSRF token, as POST /api/realtime/test does.
func (c *Console) OrAPIKey(apiKey func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		withKey, withSession := apiKey(next), CrossOrigin(c.RequireTenant(next))
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "" {
				withKey.ServeHTTP(w, r)
				return
			}
			if _, ok := c.session(r); ok {
				withSession.ServeHTTP(w, r)
				return
			}
			withKey.ServeHTTP(w, r) // no credentials at all: the API's 401
		})
	}
}

// RequireSession admits any session, tenant or operator (for logging out).
func (c *Console) RequireSession(next http.Handler) http.Handler {
	return c.require(func(Session) bool { return true }, false, next)
}

func (c *Console) require(fits func(Session) bool, operator bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, ok := c.session(r)
		if !ok || !fits(sess) {
			login := "/console/login"
			if operator {
				login = "/console/operator/login"
			}
			// A form post or an event stream gets a 401, not a login page: an
			// EventSource would keep reconnecting to an HTML redirect.
			if r.Method != http.MethodGet && r.Method != http.MethodHead || strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
				web.Error(w, http.StatusUnauthorized, "no_session", "log in to the console first")
				return
			}
			if r.Header.Get("HX-Request") == "true" {
				w.Header().Set("HX-Redirect", login) // a fragment request: send the whole page there
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, login, http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !sess.CheckCSRF(r) {
			web.Error(w, http.StatusForbidden, "csrf", "the form's CSRF token is missing or stale; reload the page and try again")
			return
		}
		ctx := context.WithValue(r.Context(), sessionKey{}, sess)
		if !sess.Operator {
			ctx = tenant.WithID(ctx, sess.TenantID)
		}
		r = r.WithContext(ctx)
		if !sess.Operator && c.refuseSuspended(w, r, sess.TenantID) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// suspendedMessage tells a suspended tenant's developers what happened.
const suspendedMessage = "This tenant is suspended by the operator of this service: its API keys, tokens and streams are refused, and the console is closed to it. Nothing was deleted; ask the operator to resume it."

// refuseSuspended answers a suspended tenant's console request, keeping the
// session so the console works again once the operator resumes the tenant.
func (c *Console) refuseSuspended(w http.ResponseWriter, r *http.Request, id tenant.ID) bool {
	suspended, err := c.Status.Suspended(r.Context(), id)
	switch {
	case err != nil:
		c.fail(w, r, err)
	case !suspended:
		return false
	case r.Method != http.MethodGet && r.Method != http.MethodHead || strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
		tenant.SuspendedProblem().Write(w)
	case r.Header.Get("HX-Request") == "true":
		w.Header().Set("HX-Redirect", "/console/overview") // a fragment: show the whole page's explanation
		w.WriteHeader(http.StatusForbidden)
	default:
		c.render(w, r, http.StatusForbidden, views.ErrorPage(c.page(r, "Tenant suspended", ""), suspendedMessage))
	}
	return true
}

// page returns the view model every page needs.
func (c *Console) page(r *http.Request, title, nav string) views.Page {
	p := views.Page{Title: title, Nav: nav}
	if sess, ok := r.Context().Value(sessionKey{}).(Session); ok {
		p.CSRF, p.Operator = sess.CSRF, sess.Operator
		if !sess.Operator {
			_ = c.Pool.QueryRow(r.Context(), `SELECT name FROM tenants WHERE id = $1`, sess.TenantID).Scan(&p.TenantName)
		}
	}
	return p
}

// render writes a component as HTML.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, comp templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Add("Vary", "HX-Request")
	w.WriteHeader(status)
	if err := comp.Render(r.Context(), w); err != nil {
		c.Log.Warn("admin: render failed", "err", err, "path", r.URL.Path)
	}
}

// fail shows an error page for a server-side failure.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	c.Log.LogAttrs(r.Context(), slog.LevelError, "console request failed",
		slog.String("request_id", web.RequestID(r.Context())), slog.String("path", r.URL.Path), slog.String("err", err.Error()))
	p := c.page(r, "Something went wrong", "")
	c.render(w, r, http.StatusInternalServerError, views.ErrorPage(p, "The server could not do that just now. Try again in a moment."))
}

// Each client address may fail failedLoginBurst logins at once, then one
// every failedLoginEvery.
const (
	failedLoginBurst = 10
	failedLoginEvery = 6 * time.Second
)

const tooManyLogins = "Too many failed logins from your address; wait a minute and try again."

// loginFailed spends one of the client address's failed logins and returns
// the status to answer: 200 (the form again, with its error) while the
// address has failures left, else 429 with Retry-After. Only failures
// count, and only failures are refused: a right key or token logs in
// whatever others behind the same address tried.
func (c *Console) loginFailed(w http.ResponseWriter, r *http.Request) int {
	c.loginsOnce.Do(func() { c.logins = web.NewAddrLimiter(failedLoginEvery, failedLoginBurst) })
	if c.logins.Of(r).Allow() {
		return http.StatusOK
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(failedLoginEvery.Seconds())))
	return http.StatusTooManyRequests
}
