package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/channel"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/usage"
	"github.com/hybridrt/hybridrt/views"
)

// dateTime formats a time for tables.
func dateTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func form(values ...string) views.Form {
	f := views.Form{Values: map[string]string{}, Errors: map[string]string{}}
	for i := 0; i+1 < len(values); i += 2 {
		f.Values[values[i]] = values[i+1]
	}
	return f
}

// HandleHome serves GET /console: to the overview, or to the login page.
func (c *Console) HandleHome(w http.ResponseWriter, r *http.Request) {
	switch sess, ok := c.session(r); {
	case ok && sess.Operator:
		http.Redirect(w, r, "/console/operator", http.StatusSeeOther)
	case ok:
		http.Redirect(w, r, "/console/overview", http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/console/login", http.StatusSeeOther)
	}
}

// HandleLoginPage serves GET /console/login.
func (c *Console) HandleLoginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, views.LoginPage(c.page(r, "Log in", ""), form()))
}

// HandleLogin serves POST /console/login: an API key starts a tenant session.
func (c *Console) HandleLogin(w http.ResponseWriter, r *http.Request) {
	f := form()
	tenantID, _, err := c.Keys.Authenticate(r.Context(), strings.TrimSpace(r.PostFormValue("apiKey")))
	if errors.Is(err, auth.ErrInvalidKey) {
		f.Errors["apiKey"] = "That API key is not valid: it may be mistyped or revoked."
		status := c.loginFailed(w, r)
		if status != http.StatusOK {
			f.Errors["apiKey"] = tooManyLogins
		}
		c.render(w, r, status, views.LoginPage(c.page(r, "Log in", ""), f))
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	suspended, err := c.Status.Suspended(r.Context(), tenantID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if suspended { // the key is right: say why it cannot log in
		f.Errors["apiKey"] = suspendedMessage
		c.render(w, r, http.StatusForbidden, views.LoginPage(c.page(r, "Log in", ""), f))
		return
	}
	c.startSession(w, r, tenantID, false, "/console/overview")
}

func (c *Console) startSession(w http.ResponseWriter, r *http.Request, tenantID tenant.ID, operator bool, next string) {
	id, err := c.Sessions.Create(r.Context(), tenantID, operator)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.setSession(w, r, id)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// HandleLogout serves POST /console/logout: the session ends server-side.
func (c *Console) HandleLogout(w http.ResponseWriter, r *http.Request) {
	if err := c.Sessions.Delete(r.Context(), sessionFrom(r.Context())); err != nil {
		c.fail(w, r, err)
		return
	}
	c.clearSession(w, r)
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// HandleSignupPage serves GET /console/signup.
func (c *Console) HandleSignupPage(w http.ResponseWriter, r *http.Request) {
	f := form()
	if !c.Signup.Open {
		f.Values["closed"] = "yes"
	}
	c.render(w, r, http.StatusOK, views.SignupPage(c.page(r, "Sign up", ""), f))
}

// HandleSignup serves POST /console/signup: a new tenant, logged in, with
// its secrets shown once.
func (c *Console) HandleSignup(w http.ResponseWriter, r *http.Request) {
	f := form("name", r.PostFormValue("name"))
	if !c.Signup.Open {
		f.Values["closed"] = "yes"
		if !auth.OperatorTokenOK(r.PostFormValue("operatorToken"), c.Signup.OperatorToken) {
			f.Errors["operatorToken"] = "Sign-up is closed, and this is not the operator token."
		}
	}
	name, err := tenant.CleanName(f.Get("name"))
	if err != nil {
		f.Errors["name"] = err.Error()
	}
	if len(f.Errors) > 0 {
		c.render(w, r, http.StatusOK, views.SignupPage(c.page(r, "Sign up", ""), f))
		return
	}
	su, err := auth.Signup(r.Context(), c.Pool, c.Signing, name)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	id, err := c.Sessions.Create(r.Context(), su.Tenant.ID, false)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.setSession(w, r, id)
	p := c.page(r, "Welcome", "overview")
	p.TenantName = su.Tenant.Name
	if sess, err := c.Sessions.Get(r.Context(), id); err == nil {
		p.CSRF = sess.CSRF
	}
	c.render(w, r, http.StatusOK, views.SignupDone(p, views.SignupResult{
		TenantName: su.Tenant.Name, APIKey: su.APIKey, Kid: su.Kid, SigningSecret: su.SigningSecret,
	}))
}

// HandleOverview serves GET /console/overview: the tenant's figures of
// now, and charts of its usage over ?range=hour, day (the default) or
// 30d. The range links' htmx requests get the chart section alone.
func (c *Console) HandleOverview(w http.ResponseWriter, r *http.Request) {
	id := tenant.FromContext(r.Context())
	quotas, err := c.quotasOf(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	cr := chartRangeOf(r)
	charts, err := c.usageCharts(r.Context(), usage.Scope{Tenant: id}, quotas, cr, time.Now(), func(key string) string {
		return "/console/overview?range=" + key
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Add("Vary", "HX-Target")
	if chartSwap(r) {
		c.render(w, r, http.StatusOK, views.UsageChartsSection(charts))
		return
	}
	o, err := c.overview(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	o.Charts = charts
	c.render(w, r, http.StatusOK, views.OverviewPage(c.page(r, "Overview", "overview"), o))
}

// HandleClients serves GET /console/clients.
func (c *Console) HandleClients(w http.ResponseWriter, r *http.Request) {
	rows, err := c.clients(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, views.ClientsPage(c.page(r, "Clients", "clients"), rows))
}

// HandleClientsTable serves GET /console/clients/table, the fragment the
// clients page polls every second.
func (c *Console) HandleClientsTable(w http.ResponseWriter, r *http.Request) {
	rows, err := c.clients(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, views.ClientsTable(rows))
}

func (c *Console) clients(r *http.Request) ([]views.ClientRow, error) {
	conns, err := c.Registry.List(r.Context(), tenant.FromContext(r.Context()))
	if err != nil {
		return nil, err
	}
	rows := make([]views.ClientRow, len(conns))
	for i, cn := range conns {
		rows[i] = views.ClientRow{
			ID: cn.ID, User: cn.Subject, Channels: strings.Join(cn.Channels, ", "), Transport: cn.Transport,
			Instance: cn.Instance, Address: cn.RemoteAddr, Agent: cn.UserAgent, Since: dateTime(cn.ConnectedAt),
		}
	}
	return rows, nil
}

// HandleEvents serves GET /console/events: the test-event form and the live log.
func (c *Console) HandleEvents(w http.ResponseWriter, r *http.Request) {
	log, head, err := c.recentEvents(r.Context(), tenant.FromContext(r.Context()), 20)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f := form("channel", "broadcast", "type", "test", "data", `{"message":"Hello from the console"}`)
	c.render(w, r, http.StatusOK, views.EventsPage(c.page(r, "Events", "events"), f, "", log, "/console/events/stream?after="+strconv.FormatInt(head, 10)))
}

// HandleFire serves POST /console/events/test: validates the event with the
// publish API's rules, field by field, and publishes it.
func (c *Console) HandleFire(w http.ResponseWriter, r *http.Request) {
	f := form("channel", strings.TrimSpace(r.PostFormValue("channel")), "type", strings.TrimSpace(r.PostFormValue("type")), "data", r.PostFormValue("data"))
	data := f.Get("data")
	if strings.TrimSpace(data) == "" {
		data = "null"
	}
	cfg, err := c.Limits.PublishConfigFor(r.Context(), tenant.FromContext(r.Context()))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d, errs := cfg.CheckEvent(f.Get("channel"), f.Get("type"), []byte(data))
	p := c.page(r, "Events", "events")
	if errs != nil {
		f.Errors = errs
		c.render(w, r, http.StatusOK, views.FireForm(p, f, ""))
		return
	}
	res, err := c.Publisher.Publish(r.Context(), tenant.FromContext(r.Context()), d.One(), "", nil)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, views.FireForm(p, f, fmt.Sprintf("Published event #%d.", res.IDs[0])))
}

// HandleKeys serves GET /console/keys.
func (c *Console) HandleKeys(w http.ResponseWriter, r *http.Request) {
	c.keysPage(w, r, form(), nil, "", false)
}

func (c *Console) keysPage(w http.ResponseWriter, r *http.Request, f views.Form, created *views.Created, flash string, flashErr bool) {
	keys, err := c.Keys.List(r.Context(), tenant.FromContext(r.Context()))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	rows := make([]views.KeyRow, len(keys))
	for i, k := range keys {
		used := "never"
		if k.LastUsedAt != nil {
			used = dateTime(*k.LastUsedAt)
		}
		rows[i] = views.KeyRow{ID: strconv.FormatInt(k.ID, 10), Name: k.Name, Prefix: k.Prefix, Created: dateTime(k.CreatedAt), LastUsed: used}
	}
	p := c.page(r, "API keys", "keys")
	p.Flash, p.FlashError = flash, flashErr
	c.render(w, r, http.StatusOK, views.KeysPage(p, rows, f, created))
}

// HandleCreateKey serves POST /console/keys.
func (c *Console) HandleCreateKey(w http.ResponseWriter, r *http.Request) {
	f := form("name", r.PostFormValue("name"))
	name, err := auth.CleanKeyName(f.Get("name"))
	if err != nil {
		f.Errors["name"] = err.Error()
		c.keysPage(w, r, f, nil, "", false)
		return
	}
	k, key, err := c.Keys.Create(r.Context(), tenant.FromContext(r.Context()), name)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.keysPage(w, r, form(), &views.Created{Label: "API key " + k.Name, Value: key}, "", false)
}

// HandleRevokeKey serves POST /console/keys/{id}/revoke.
func (c *Console) HandleRevokeKey(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err == nil {
		err = c.Keys.Revoke(r.Context(), tenant.FromContext(r.Context()), id)
	} else {
		err = auth.ErrNotFound
	}
	switch {
	case errors.Is(err, auth.ErrNotFound):
		c.keysPage(w, r, form(), nil, "There is no such key.", true)
	case errors.Is(err, auth.ErrLastKey):
		c.keysPage(w, r, form(), nil, "That is your last active key: create another before revoking it.", true)
	case err != nil:
		c.fail(w, r, err)
	default:
		c.keysPage(w, r, form(), nil, "Key revoked: requests using it are now refused.", false)
	}
}

// HandleSigningKeys serves GET /console/signing-keys.
func (c *Console) HandleSigningKeys(w http.ResponseWriter, r *http.Request) {
	c.signingPage(w, r, nil, "", false)
}

func (c *Console) signingPage(w http.ResponseWriter, r *http.Request, created *views.Created, flash string, flashErr bool) {
	keys, err := c.Signing.List(r.Context(), tenant.FromContext(r.Context()))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	rows := make([]views.SigningKeyRow, len(keys))
	for i, k := range keys {
		rows[i] = views.SigningKeyRow{Kid: k.Kid, Created: dateTime(k.CreatedAt)}
	}
	p := c.page(r, "Signing keys", "signing-keys")
	p.Flash, p.FlashError = flash, flashErr
	c.render(w, r, http.StatusOK, views.SigningKeysPage(p, rows, created))
}

// HandleCreateSigningKey serves POST /console/signing-keys.
func (c *Console) HandleCreateSigningKey(w http.ResponseWriter, r *http.Request) {
	k, secret, err := c.Signing.Create(r.Context(), tenant.FromContext(r.Context()))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.signingPage(w, r, &views.Created{Label: "Signing secret (Pusher secret) of " + k.Kid, Value: secret,
		Note: "Sign HS256 tokens with this secret's bytes and \"kid\": \"" + k.Kid + "\" in the header. " +
			"For Pusher clients and server libraries it is the secret of key " + k.Kid + " (see the Pusher page)."}, "", false)
}

// HandleRevokeSigningKey serves POST /console/signing-keys/{kid}/revoke.
func (c *Console) HandleRevokeSigningKey(w http.ResponseWriter, r *http.Request) {
	err := c.Signing.Revoke(r.Context(), tenant.FromContext(r.Context()), chi.URLParam(r, "kid"))
	switch {
	case errors.Is(err, auth.ErrNotFound):
		c.signingPage(w, r, nil, "There is no such signing key.", true)
	case err != nil:
		c.fail(w, r, err)
	default:
		c.signingPage(w, r, nil, "Signing key revoked: its tokens are refused, and their streams end within 20 s.", false)
	}
}

// HandleTokensPage serves GET /console/tokens.
func (c *Console) HandleTokensPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, views.TokensPage(c.page(r, "Tokens", "tokens"), form("ttl", "3600"), nil))
}

// HandleMintToken serves POST /console/tokens: a subscriber token, with a
// curl and a JavaScript snippet that use it.
func (c *Console) HandleMintToken(w http.ResponseWriter, r *http.Request) {
	f := form("sub", strings.TrimSpace(r.PostFormValue("sub")), "channels", r.PostFormValue("channels"), "ttl", strings.TrimSpace(r.PostFormValue("ttl")))
	if err := auth.ValidSubject(f.Get("sub")); err != nil {
		f.Errors["sub"] = err.Error()
	}
	grants := strings.FieldsFunc(f.Get("channels"), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })
	for _, g := range grants {
		if err := channel.ValidPattern(g); err != nil {
			f.Errors["channels"] = err.Error()
			break
		}
	}
	ttl, err := strconv.Atoi(f.Get("ttl"))
	if err != nil || ttl < 1 || ttl > int(auth.MaxTokenTTL.Seconds()) {
		f.Errors["ttl"] = "A number of seconds from 1 to 86400."
	}
	p := c.page(r, "Tokens", "tokens")
	if len(f.Errors) > 0 {
		c.render(w, r, http.StatusOK, views.TokensPage(p, f, nil))
		return
	}
	token, exp, err := c.Signing.Mint(r.Context(), tenant.FromContext(r.Context()), auth.TokenClaims{Subject: f.Get("sub"), Channels: grants}, time.Duration(ttl)*time.Second, time.Now())
	if errors.Is(err, auth.ErrNoSigningKey) {
		f.Errors["sub"] = "This tenant has no active signing key: create one on the Signing keys page."
		c.render(w, r, http.StatusOK, views.TokensPage(p, f, nil))
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	chans := append([]string{"broadcast", "user:" + f.Get("sub")}, concrete(grants)...)
	c.render(w, r, http.StatusOK, views.TokensPage(p, f, &views.TokenResult{
		Token: token, ExpiresAt: dateTime(exp), Curl: curlSnippet(c.PublicURL, token, chans), JS: jsSnippet(c.PublicURL, chans),
	}))
}

// concrete keeps the grants that name one channel, not a pattern.
func concrete(grants []string) []string {
	var out []string
	for _, g := range grants {
		if !strings.HasSuffix(g, "*") {
			out = append(out, g)
		}
	}
	return out
}

func curlSnippet(base, token string, channels []string) string {
	return fmt.Sprintf("curl -N '%s/api/realtime/sse?channels=%s' \\\n  -H 'Authorization: Bearer %s'", base, strings.Join(channels, ","), token)
}

func jsSnippet(base string, channels []string) string {
	return fmt.Sprintf(`// In the browser: trade the token (from your backend) for a ticket,
// so it never appears in a URL, then subscribe.
const { ticket } = await fetch('%s/api/realtime/tickets', {
  method: 'POST',
  headers: { Authorization: 'Bearer ' + token },
}).then((r) => r.json());
const es = new EventSource('%s/api/realtime/sse?channels=%s&ticket=' + ticket);
es.addEventListener('test', (e) => console.log(JSON.parse(e.data)));`, base, base, strings.Join(channels, ","))
}

// HandleSubscriber serves GET /console/subscriber: a test subscriber page
// for user console-tester on broadcast, using a ticket minted for it.
func (c *Console) HandleSubscriber(w http.ResponseWriter, r *http.Request) {
	tid := tenant.FromContext(r.Context())
	token, _, err := c.Signing.Mint(r.Context(), tid, auth.TokenClaims{Subject: "console-tester"}, time.Hour, time.Now())
	if errors.Is(err, auth.ErrNoSigningKey) {
		p := c.page(r, "No signing key", "clients")
		c.render(w, r, http.StatusConflict, views.ErrorPage(p, "This tenant has no active signing key; create one on the Signing keys page first."))
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	sub, err := c.Verifier.Verify(r.Context(), token)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ticket, err := c.Tickets.Issue(r.Context(), sub)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, views.SubscriberPage(c.page(r, "Test subscriber", "clients"), ticket, "broadcast,user:console-tester"))
}

// HandleOperatorLoginPage serves GET /console/operator/login.
func (c *Console) HandleOperatorLoginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, views.OperatorLoginPage(c.page(r, "Operator login", ""), form()))
}

// HandleOperatorLogin serves POST /console/operator/login.
func (c *Console) HandleOperatorLogin(w http.ResponseWriter, r *http.Request) {
	f := form()
	status := http.StatusOK
	switch {
	case c.Signup.OperatorToken == "":
		f.Errors["token"] = "The operator view is off: start the server with OPERATOR_TOKEN set."
	case !auth.OperatorTokenOK(r.PostFormValue("token"), c.Signup.OperatorToken):
		f.Errors["token"] = "That is not the operator token."
		if status = c.loginFailed(w, r); status != http.StatusOK {
			f.Errors["token"] = tooManyLogins
		}
	default:
		c.startSession(w, r, 0, true, "/console/operator")
		return
	}
	c.render(w, r, status, views.OperatorLoginPage(c.page(r, "Operator login", ""), f))
}

// HandleSuspendTenant serves POST /console/operator/tenants/{id}/suspend,
// as POST /v1/operator/tenants/{id}/suspend does.
func (c *Console) HandleSuspendTenant(w http.ResponseWriter, r *http.Request) {
	c.changeStatus(w, r, c.Status.Suspend)
}

// HandleResumeTenant serves POST /console/operator/tenants/{id}/resume.
func (c *Console) HandleResumeTenant(w http.ResponseWriter, r *http.Request) {
	c.changeStatus(w, r, c.Status.Resume)
}

func (c *Console) changeStatus(w http.ResponseWriter, r *http.Request, change func(context.Context, tenant.ID) (tenant.Account, error)) {
	err := tenant.ErrNotFound
	if id, perr := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64); perr == nil {
		_, err = change(r.Context(), tenant.ID(id))
	}
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		c.render(w, r, http.StatusNotFound, views.ErrorPage(c.page(r, "No such tenant", "operator"), "No tenant has that id."))
	case err != nil:
		c.fail(w, r, err)
	default:
		http.Redirect(w, r, "/console/operator", http.StatusSeeOther)
	}
}

// HandleOperator serves GET /console/operator: charts of the whole
// service's usage, or with ?tenant=<id> of one tenant's, over ?range=; the
// top tenants of the last 30 days; every instance and every tenant.
func (c *Console) HandleOperator(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	cr := chartRangeOf(r)
	charts, current, ok := c.operatorCharts(w, r, cr, now)
	if !ok {
		return
	}
	w.Header().Add("Vary", "HX-Target")
	if chartSwap(r) {
		c.render(w, r, http.StatusOK, views.UsageChartsSection(charts))
		return
	}
	o := views.Operator{Charts: charts, Tenant: current}
	var err error
	if o.TopByEvents, o.TopByConnections, err = c.topTenants(r.Context(), now, current, cr.key); err != nil {
		c.fail(w, r, err)
		return
	}
	if o.Tenants, o.Instances, err = c.operatorView(r.Context()); err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, views.OperatorPage(c.page(r, "Operator", "operator"), o))
}
