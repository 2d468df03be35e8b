package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/webhook"
	"github.com/hybridrt/hybridrt/views"
)

// recentDeliveries is how many delivery attempts the webhooks page lists.
const recentDeliveries = 50

// webhookEventHints say, for the settings form, when each event is sent.
var webhookEventHints = map[string]string{
	"channel_occupied": "A channel gets its first subscriber.",
	"channel_vacated":  "A channel's last subscriber leaves (after 5 s with nobody back).",
	"member_added":     "A user joins a presence channel.",
	"member_removed":   "A user's last connection leaves a presence channel.",
	"client_event":     "A client sends a client- event (when client events are allowed).",
	"cache_miss":       "A client subscribes to a cache- channel that holds no event.",
}

// HandleWebhooks serves GET /console/webhooks: the webhook settings form,
// how webhooks are signed, the test button and the delivery attempts.
func (c *Console) HandleWebhooks(w http.ResponseWriter, r *http.Request) {
	s, err := c.Tenants.Settings(r.Context(), tenant.FromContext(r.Context()))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.webhooksPage(w, r, s, webhookSettingsForm(s), nil, nil)
}

// HandleWebhookSettings serves POST /console/webhooks/settings: webhookUrl
// and webhookEvents, as PATCH /v1/tenant/settings sets them (the Pusher
// settings stay as they are). A refused URL (an internal address among
// them) or event is shown under its field, and nothing changes.
func (c *Console) HandleWebhookSettings(w http.ResponseWriter, r *http.Request) {
	tid := tenant.FromContext(r.Context())
	u := strings.TrimSpace(r.PostFormValue("webhookUrl"))
	events := []string{}
	for _, e := range r.PostForm["webhookEvents"] {
		if !slices.Contains(events, e) {
			events = append(events, e)
		}
	}
	s, err := c.Tenants.UpdateSettings(r.Context(), tid, tenant.SettingsPatch{WebhookURL: &u, WebhookEvents: &events})
	if e, ok := errors.AsType[*tenant.SettingError](err); ok {
		saved, err := c.Tenants.Settings(r.Context(), tid)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		f := webhookSettingsForm(tenant.Settings{WebhookURL: u, WebhookEvents: events})
		f.Form.Errors[e.Field] = settingProblem(e)
		c.webhooksPage(w, r, saved, f, nil, nil)
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f := webhookSettingsForm(s)
	f.Saved = "Settings saved."
	if s.WebhookURL == "" {
		f.Saved = "Settings saved: webhooks are off."
	}
	c.webhooksPage(w, r, s, f, nil, nil)
}

// HandleWebhookTest serves POST /console/webhooks/test: posts a signed test
// webhook to the saved URL now and shows what the endpoint answered.
func (c *Console) HandleWebhookTest(w http.ResponseWriter, r *http.Request) {
	tid := tenant.FromContext(r.Context())
	s, err := c.Tenants.Settings(r.Context(), tid)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	keys, err := c.Signing.List(r.Context(), tid)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var n views.Notice
	switch {
	case s.WebhookURL == "":
		n = views.Notice{Failed: true, Text: "There is no webhook URL to send to: save one above first."}
	case len(keys) == 0:
		n = views.Notice{Failed: true, Text: "This tenant has no active signing key to sign the webhook with: create one on the Signing keys page."}
	default:
		res, ok, err := c.Webhooks.SendTest(r.Context(), tid)
		switch {
		case err != nil:
			c.fail(w, r, err)
			return
		case !ok: // the URL went between the two reads
			n = views.Notice{Failed: true, Text: "There is no webhook URL to send to: save one above first."}
		default:
			n = testNotice(res)
		}
	}
	c.webhooksPage(w, r, s, webhookSettingsForm(s), &n, nil)
}

// testNotice says how a test webhook went, in the tenant's words: the
// sender's errors are written for tenants and carry no secret.
func testNotice(res webhook.Result) views.Notice {
	switch {
	case res.Err != nil:
		return views.Notice{Failed: true, Text: "The test webhook was not delivered: " + res.Err.Error()}
	case res.Status >= 200 && res.Status < 300:
		return views.Notice{Text: fmt.Sprintf("Your endpoint answered %d in %s.", res.Status, millis(res.Latency.Milliseconds()))}
	default:
		return views.Notice{Failed: true, Text: fmt.Sprintf("Your endpoint answered %d %s in %s; only a 2xx status acknowledges a webhook.",
			res.Status, http.StatusText(res.Status), millis(res.Latency.Milliseconds()))}
	}
}

// HandleWebhookRetry serves POST /console/webhooks/retry: the waiting
// webhooks are sent now, and the parked ones come back to be sent first.
func (c *Console) HandleWebhookRetry(w http.ResponseWriter, r *http.Request) {
	tid := tenant.FromContext(r.Context())
	s, err := c.Tenants.Settings(r.Context(), tid)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if s.WebhookURL == "" {
		c.webhooksPage(w, r, s, webhookSettingsForm(s), nil,
			&views.Notice{Failed: true, Text: "There is no webhook URL to send to: save one first, then retry. Nothing changed."})
		return
	}
	n, err := webhook.RetryNow(r.Context(), c.Pool, tid)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	flash := views.Notice{Text: "No event was parked; the waiting ones are being sent now."}
	switch {
	case n == 1:
		flash.Text = "1 parked event came back and is being sent now."
	case n > 1:
		flash.Text = fmt.Sprintf("%d parked events came back and are being sent now.", n)
	}
	c.webhooksPage(w, r, s, webhookSettingsForm(s), nil, &flash)
}

// HandleWebhookDeliveries serves GET /console/webhooks/deliveries, the
// fragment of the webhooks page with the outbox and the delivery attempts,
// polled every 3 s.
func (c *Console) HandleWebhookDeliveries(w http.ResponseWriter, r *http.Request) {
	d, err := c.webhookDeliveries(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, views.WebhookDeliveriesPanel(d))
}

// webhooksPage renders the page with s, the saved settings, f, the form
// as typed, the test button's answer and the page's flash, if any.
func (c *Console) webhooksPage(w http.ResponseWriter, r *http.Request, s tenant.Settings, f views.WebhookSettings, test, flash *views.Notice) {
	keys, err := c.Signing.List(r.Context(), tenant.FromContext(r.Context()))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d, err := c.webhookDeliveries(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	x := views.Webhooks{Settings: f, Off: s.WebhookURL == "", NoEvents: len(s.WebhookEvents) == 0, Test: test, Deliveries: d}
	if len(keys) > 0 {
		x.Key = keys[0].Kid // the oldest, as webhookTargets in cmd/api signs with
	}
	p := c.page(r, "Webhooks", "webhooks")
	if flash != nil {
		p.Flash, p.FlashError = flash.Text, flash.Failed
	}
	c.render(w, r, http.StatusOK, views.WebhooksPage(p, x))
}

// webhookSettingsForm fills the settings form from s.
func webhookSettingsForm(s tenant.Settings) views.WebhookSettings {
	f := views.WebhookSettings{Form: form("webhookUrl", s.WebhookURL)}
	for _, name := range tenant.WebhookEventNames {
		f.Events = append(f.Events, views.WebhookEventOption{Name: name, Hint: webhookEventHints[name], Checked: slices.Contains(s.WebhookEvents, name)})
	}
	return f
}

// settingProblem is a refused setting's reason, for under its field: the
// API's message without the field's JSON name in front.
func settingProblem(e *tenant.SettingError) string {
	msg := e.Error()
	if rest, ok := strings.CutPrefix(msg, `"`+e.Field+`": `); ok {
		msg = rest
	} else if rest, ok := strings.CutPrefix(msg, `"`+e.Field+`" `); ok {
		subject := map[string]string{"webhookUrl": "The URL", "webhookEvents": "The events"}[e.Field]
		msg = strings.TrimSpace(subject + " " + rest)
	}
	r, size := utf8.DecodeRuneInString(msg)
	return string(unicode.ToUpper(r)) + msg[size:]
}

// webhookDeliveries builds the page's polled part for the session's tenant.
func (c *Console) webhookDeliveries(r *http.Request) (views.WebhookDeliveries, error) {
	tid := tenant.FromContext(r.Context())
	waiting, parked, err := outboxDepth(r.Context(), c.Pool, tid)
	if err != nil {
		return views.WebhookDeliveries{}, err
	}
	list, err := webhook.Recent(r.Context(), c.Pool, tid, recentDeliveries+1)
	if err != nil {
		return views.WebhookDeliveries{}, err
	}
	d := views.WebhookDeliveries{
		CSRF: sessionFrom(r.Context()).CSRF, Waiting: eventCount(waiting), Parked: eventCount(parked),
		More: len(list) > recentDeliveries, CanRetry: parked > 0,
	}
	list = list[:min(len(list), recentDeliveries)]
	// A batch waiting out a backoff can be sent now: the newest attempt
	// (not a test, which goes outside the outbox) says so.
	if i := slices.IndexFunc(list, func(d webhook.Delivery) bool { return d.Outcome != "test" }); i >= 0 && list[i].Outcome == "retrying" && waiting > 0 {
		d.CanRetry = true
	}
	for _, dl := range list {
		row := views.WebhookDeliveryRow{
			ID: strconv.FormatInt(dl.ID, 10), Time: rfc3339Time(dl.AttemptedAt), DateTime: dl.AttemptedAt,
			Events: strconv.Itoa(dl.Events), Outcome: dl.Outcome, Latency: millis(int64(dl.LatencyMS)),
			Attempt: strconv.Itoa(dl.Attempt), Error: dl.Error,
		}
		if dl.Status != 0 {
			row.Status = strconv.Itoa(dl.Status)
		}
		if dl.NextRetryAt != "" {
			row.NextRetry = rfc3339Time(dl.NextRetryAt)
		}
		d.Rows = append(d.Rows, row)
	}
	return d, nil
}

// outboxDepth counts a tenant's webhook events waiting to be sent, and
// those parked after their retries ran out.
func outboxDepth(ctx context.Context, pool *pgxpool.Pool, tid tenant.ID) (waiting, parked int64, err error) {
	err = pool.QueryRow(ctx,
		`SELECT count(*) FILTER (WHERE parked_at IS NULL), count(*) FILTER (WHERE parked_at IS NOT NULL)
		   FROM webhook_outbox WHERE tenant_id = $1`, tid).Scan(&waiting, &parked)
	if err != nil {
		return 0, 0, fmt.Errorf("admin: webhook outbox depth: %w", err)
	}
	return waiting, parked, nil
}

// eventCount is "1 event" or "n events".
func eventCount(n int64) string {
	if n == 1 {
		return "1 event"
	}
	return strconv.FormatInt(n, 10) + " events"
}

// millis is a latency for people: "under 1 ms", "12 ms", "10.0 s".
func millis(ms int64) string {
	switch {
	case ms < 1:
		return "under 1 ms"
	case ms < 1000:
		return strconv.FormatInt(ms, 10) + " ms"
	default:
		return strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64) + " s"
	}
}

// rfc3339Time formats an RFC 3339 time as the console's tables do, or
// returns it as it is if it is not one.
func rfc3339Time(s string) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return s
	}
	return dateTime(t)
}
