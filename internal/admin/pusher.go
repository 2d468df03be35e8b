package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"github.com/hybridrt/hybridrt/internal/auth"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/views"
)

// HandlePusher serves GET /console/pusher: the tenant's Pusher credentials
// (app id = tenant id, key = a signing key's kid), snippets that use them,
// the settings form and the presence channels (with ?channel=, that
// channel's members).
func (c *Console) HandlePusher(w http.ResponseWriter, r *http.Request) {
	s, err := c.Tenants.Settings(r.Context(), tenant.FromContext(r.Context()))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.pusherPage(w, r, settingsForm(s), "")
}

// HandlePusherSettings serves POST /console/pusher/settings: publicChannels
// and clientEvents, as PATCH /v1/tenant/settings sets them (the webhook
// settings stay as they are). A refused list is shown under its field, and
// nothing changes.
func (c *Console) HandlePusherSettings(w http.ResponseWriter, r *http.Request) {
	f := form("publicChannels", r.PostFormValue("publicChannels"))
	clientEvents := r.PostFormValue("clientEvents") != ""
	if clientEvents {
		f.Values["clientEvents"] = "on"
	}
	public := fields(f.Get("publicChannels"))
	s, err := c.Tenants.UpdateSettings(r.Context(), tenant.FromContext(r.Context()),
		tenant.SettingsPatch{PublicChannels: &public, ClientEvents: &clientEvents})
	if e, ok := errors.AsType[*tenant.SettingError](err); ok {
		f.Errors[e.Field] = strings.TrimPrefix(e.Error(), `"`+e.Field+`": `)
		c.pusherPage(w, r, f, "")
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.pusherPage(w, r, settingsForm(s), "Settings saved.")
}

// settingsForm fills the settings form from s.
func settingsForm(s tenant.Settings) views.Form {
	f := form("publicChannels", strings.Join(s.PublicChannels, "\n"))
	if s.ClientEvents {
		f.Values["clientEvents"] = "on"
	}
	return f
}

// fields splits a list typed into a form: one entry a line, or separated
// by commas or spaces (no channel name holds either).
func fields(s string) []string {
	list := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if list == nil {
		return []string{}
	}
	return list
}

func (c *Console) pusherPage(w http.ResponseWriter, r *http.Request, f views.Form, saved string) {
	tid := tenant.FromContext(r.Context())
	keys, err := c.Signing.List(r.Context(), tid)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	pr, err := c.presence(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, views.PusherPage(c.page(r, "Pusher compatibility", "pusher"), pusherInfo(c.PublicURL, tid, keys), f, saved, pr))
}

// pusherInfo builds the page's credentials and snippets. Pusher clients
// take the host, port and scheme apart, so they come from PUBLIC_URL, the
// address browsers use; the snippets use the first active key.
func pusherInfo(publicURL string, tid tenant.ID, keys []auth.SigningKey) views.PusherInfo {
	x := views.PusherInfo{AppID: strconv.FormatInt(int64(tid), 10), Scheme: "https", Port: "443"}
	if u, err := url.Parse(publicURL); err == nil {
		x.Host, x.Scheme = u.Hostname(), u.Scheme
		x.Port = u.Port()
		if x.Port == "" && x.Scheme == "http" {
			x.Port = "80"
		} else if x.Port == "" {
			x.Port = "443"
		}
		if p := strings.TrimSuffix(u.EscapedPath(), "/"); p != "" {
			x.PathIgnored = p
		}
	}
	key := "YOUR_KEY"
	for i, k := range keys {
		if i == 0 {
			key = k.Kid
		}
		x.Keys = append(x.Keys, views.SigningKeyRow{Kid: k.Kid, Created: dateTime(k.CreatedAt)})
	}
	tls := x.Scheme == "https"
	x.JS = fmt.Sprintf(`import Pusher from 'pusher-js';

const pusher = new Pusher('%[1]s', {
  wsHost: '%[2]s',
  wsPort: %[3]s,
  wssPort: %[3]s,
  forceTLS: %[4]t,
  enabledTransports: ['ws', 'wss'],
  cluster: 'mt1', // required by pusher-js 8, unused by hybridrt
  // Your backend signs private- and presence- subscriptions with the secret.
  channelAuthorization: { endpoint: '/broadcasting/auth' },
});
pusher.subscribe('private-orders').bind('order.shipped', (data) => console.log(data));`, key, x.Host, x.Port, tls)
	x.Env = fmt.Sprintf(`BROADCAST_CONNECTION=pusher
PUSHER_APP_ID=%[1]s
PUSHER_APP_KEY=%[2]s
# The signing secret of %[2]s, shown once when the key was created.
PUSHER_APP_SECRET=
PUSHER_HOST=%[3]s
PUSHER_PORT=%[4]s
PUSHER_SCHEME=%[5]s
PUSHER_APP_CLUSTER=mt1

VITE_PUSHER_APP_KEY="${PUSHER_APP_KEY}"
VITE_PUSHER_HOST="${PUSHER_HOST}"
VITE_PUSHER_PORT="${PUSHER_PORT}"
VITE_PUSHER_SCHEME="${PUSHER_SCHEME}"
VITE_PUSHER_APP_CLUSTER="${PUSHER_APP_CLUSTER}"`, x.AppID, key, x.Host, x.Port, x.Scheme)
	x.Laravel = fmt.Sprintf(`'pusher' => [
    'driver' => 'pusher',
    'key' => env('PUSHER_APP_KEY'),
    'secret' => env('PUSHER_APP_SECRET'),
    'app_id' => env('PUSHER_APP_ID'),
    'options' => [
        'host' => env('PUSHER_HOST', '%[1]s'),
        'port' => env('PUSHER_PORT', %[2]s),
        'scheme' => env('PUSHER_SCHEME', '%[3]s'),
        'encrypted' => true,
        'useTLS' => env('PUSHER_SCHEME', '%[3]s') === 'https',
    ],
],`, x.Host, x.Port, x.Scheme)
	x.Node = fmt.Sprintf(`const Pusher = require('pusher');

const pusher = new Pusher({
  appId: '%[1]s',
  key: '%[2]s',
  secret: process.env.PUSHER_APP_SECRET, // the signing secret of %[2]s
  host: '%[3]s',
  port: '%[4]s',
  useTLS: %[5]t,
});
await pusher.trigger('private-orders', 'order.shipped', { id: 42 });`, x.AppID, key, x.Host, x.Port, tls)
	return x
}
