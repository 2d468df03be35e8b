package pusher

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The vectors below were produced once by the real Node library, pusher
// 5.3.4 (cmd/api/testdata/pusher), with Pusher's worked-example credentials
// and Date.now fixed at 1700000000000:
//
//	p = new Pusher({appId: "3", key: "278d425bdf160c739803", secret: "7ad3773142a6692b25b8"})
//	p.authorizeChannel("1234.1234", "private-foobar")
//	p.authorizeChannel("1234.1234", "presence-foobar", {user_id: "10", user_info: {name: "Mr. Channels"}})
//	p.authenticateUser("1234.1234", {id: "10", name: "Ada", watchlist: ["11"]})
//	require("pusher/lib/requests").createSignedQueryString(p.config.token, {method, path, params, body})
//
// The private-foobar signature is also the one on Pusher's "Authentication
// and authorization signatures" page.
const (
	vecKey    = "278d425bdf160c739803"
	vecSecret = "7ad3773142a6692b25b8"
	vecSocket = "1234.1234"
	vecTime   = 1700000000
)

func TestChannelAuthVectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		channel, channelData, want string
	}{
		{"private-foobar", "", "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"},
		{"presence-foobar", `{"user_id":"10","user_info":{"name":"Mr. Channels"}}`,
			"278d425bdf160c739803:4c6d8fc42a207ba96a0779844171b0bb819d96ffceef9609f5cce596ab17a800"},
	}
	for _, tt := range tests {
		if got := ChannelAuth(vecKey, []byte(vecSecret), vecSocket, tt.channel, tt.channelData); got != tt.want {
			t.Errorf("ChannelAuth(%s) = %s, want %s", tt.channel, got, tt.want)
		}
		if !ValidChannelAuth(tt.want, vecKey, []byte(vecSecret), vecSocket, tt.channel, tt.channelData) {
			t.Errorf("ValidChannelAuth(%s) = false for the library's auth", tt.channel)
		}
		// Replayed for another socket, channel, user, key or secret: refused.
		bad := []struct {
			auth, key, secret, socket, channel, data string
		}{
			{tt.want, vecKey, vecSecret, "1234.1235", tt.channel, tt.channelData},
			{tt.want, vecKey, vecSecret, vecSocket, tt.channel + "x", tt.channelData},
			{tt.want, vecKey, vecSecret, vecSocket, tt.channel, tt.channelData + " "},
			{tt.want, "otherkey", vecSecret, vecSocket, tt.channel, tt.channelData},
			{tt.want, vecKey, "another secret", vecSocket, tt.channel, tt.channelData},
			{strings.TrimPrefix(tt.want, vecKey+":"), vecKey, vecSecret, vecSocket, tt.channel, tt.channelData},
			{tt.want[:len(tt.want)-2], vecKey, vecSecret, vecSocket, tt.channel, tt.channelData},
			{tt.want + "zz", vecKey, vecSecret, vecSocket, tt.channel, tt.channelData},
			{"", vecKey, vecSecret, vecSocket, tt.channel, tt.channelData},
		}
		for _, b := range bad {
			if ValidChannelAuth(b.auth, b.key, []byte(b.secret), b.socket, b.channel, b.data) {
				t.Errorf("ValidChannelAuth(%q, %q, secret %q, %q, %q, %q) = true, want false", b.auth, b.key, b.secret, b.socket, b.channel, b.data)
			}
		}
	}
}

func TestUserAuthVector(t *testing.T) {
	t.Parallel()
	const (
		data = `{"id":"10","name":"Ada","watchlist":["11"]}`
		want = "278d425bdf160c739803:1eabaa5be7ea1bdcf46f6a10485a43b38079ffcc2788895f8a03759fa347edd7"
	)
	if got := UserAuth(vecKey, []byte(vecSecret), vecSocket, data); got != want {
		t.Errorf("UserAuth = %s, want %s", got, want)
	}
	if !ValidUserAuth(want, vecKey, []byte(vecSecret), vecSocket, data) {
		t.Error("ValidUserAuth = false for the library's auth")
	}
	if ValidUserAuth(want, vecKey, []byte(vecSecret), "1.2", data) || ValidUserAuth(want, vecKey, []byte(vecSecret), vecSocket, `{"id":"11"}`) {
		t.Error("ValidUserAuth = true for another socket or user")
	}
}

// TestRequestVectors verifies requests signed by the Node library (see the
// top of this file), as our server receives them: the query parsed from
// the URL the library sends.
func TestRequestVectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, path, query, body string
	}{
		{"trigger", "POST", "/apps/3/events",
			"auth_key=278d425bdf160c739803&auth_timestamp=1700000000&auth_version=1.0&body_md5=ac8e0d890a39d719be9bf78eaafe99df&auth_signature=2644dc60aa2851699d10adac5bd602dd70094c3fe57a2354eadb2e5f13cf32e3",
			`{"name":"my-event","data":"{\"message\":\"hello world\"}","channels":["test-channel"],"socket_id":"1234.1234","info":"subscription_count"}`},
		{"channels by prefix", "GET", "/apps/3/channels",
			"auth_key=278d425bdf160c739803&auth_timestamp=1700000000&auth_version=1.0&filter_by_prefix=presence-&info=user_count&auth_signature=5142c71a4248ef5f3ec45e8793d8997773f1d19ce69ee6f6b1d75131d8aa0a6a", ""},
		{"channel info list", "GET", "/apps/3/channels/presence-foobar",
			"auth_key=278d425bdf160c739803&auth_timestamp=1700000000&auth_version=1.0&info=user_count,subscription_count&auth_signature=117e082c7dff8537497b0f08dd31c0b8ee92e5c3bc2518238afed83c03e6966e", ""},
		{"terminate", "POST", "/apps/3/users/10/terminate_connections",
			"auth_key=278d425bdf160c739803&auth_timestamp=1700000000&auth_version=1.0&body_md5=99914b932bd37a50b983c5e7c90ae93b&auth_signature=0949f16377da57e45fb7669618c0a018f76db96d7b5774fc83889463853512c0",
			`{}`},
		// Python's library sends body_md5 with an empty body too. Computed
		// with Node's crypto over the string Python's library builds.
		{"python empty body", "GET", "/apps/3/channels",
			"auth_key=278d425bdf160c739803&auth_timestamp=1700000000&auth_version=1.0&body_md5=d41d8cd98f00b204e9800998ecf8427e&auth_signature=3eb4c48c77d10169b68e017bac77f4257862305d645b1e6b475f8da730c6f6de", ""},
	}
	now := time.Unix(vecTime, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			p, err := readAuth(q, now)
			if err != nil {
				t.Fatalf("readAuth = %v", err)
			}
			if err := p.verify(tt.method, tt.path, q, []byte(tt.body), []byte(vecSecret)); err != nil {
				t.Errorf("verify = %v, want nil", err)
			}
			// Our own signer agrees with the library.
			params := url.Values{}
			for k, v := range q {
				if !strings.HasPrefix(k, "auth_") && k != "body_md5" {
					params[k] = v
				}
			}
			ours, _ := url.ParseQuery(SignQuery(vecKey, []byte(vecSecret), tt.method, tt.path, params, []byte(tt.body), now))
			if tt.name != "python empty body" && ours.Get("auth_signature") != q.Get("auth_signature") {
				t.Errorf("SignQuery signature = %s, want the library's %s", ours.Get("auth_signature"), q.Get("auth_signature"))
			}
		})
	}
}

func TestRequestRefusals(t *testing.T) {
	t.Parallel()
	now := time.Unix(vecTime, 0)
	body := []byte(`{"name":"e","data":"x","channel":"c"}`)
	signed := func(at time.Time, params url.Values, body []byte) url.Values {
		q, _ := url.ParseQuery(SignQuery(vecKey, []byte(vecSecret), "POST", "/apps/3/events", params, body, at))
		return q
	}
	with := func(q url.Values, k, v string) url.Values {
		q = cloneValues(q)
		q.Set(k, v)
		return q
	}
	without := func(q url.Values, k string) url.Values {
		q = cloneValues(q)
		q.Del(k)
		return q
	}
	good := signed(now, nil, body)
	tests := []struct {
		name string
		q    url.Values
		body []byte
		want string // the start of the 401 text
	}{
		{"601 s old", signed(now.Add(-601*time.Second), nil, body), body, "Timestamp expired"},
		{"601 s ahead", signed(now.Add(601*time.Second), nil, body), body, "Timestamp expired"},
		{"wrong signature", with(good, "auth_signature", strings.Repeat("0", 64)), body, "Invalid signature"},
		{"signature not hex", with(good, "auth_signature", "zz"), body, "Invalid signature"},
		{"body changed", good, []byte(`{"name":"e","data":"y","channel":"c"}`), "Invalid body_md5"},
		{"body_md5 changed", with(good, "body_md5", strings.Repeat("0", 32)), body, "Invalid body_md5"},
		{"no body_md5", signedNoMD5(now, body), body, "Missing body_md5"},
		{"extra param", with(good, "info", "user_count"), body, "Invalid signature"},
		{"no auth_key", without(good, "auth_key"), body, "Missing auth_key"},
		{"no auth_timestamp", without(good, "auth_timestamp"), body, "Missing auth_timestamp"},
		{"no auth_version", without(good, "auth_version"), body, "Missing auth_version"},
		{"no auth_signature", without(good, "auth_signature"), body, "Missing auth_signature"},
		{"version 2", with(good, "auth_version", "2.0"), body, "Unsupported auth_version"},
		{"timestamp not a number", with(good, "auth_timestamp", "1e9"), body, "Invalid auth_timestamp"},
		{"repeated param", repeated(good, "auth_timestamp"), body, "Invalid query"},
		{"same key in two cases", with(good, "AUTH_KEY", vecKey), body, "Invalid query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := readAuth(tt.q, now)
			if err == nil {
				err = p.verify("POST", "/apps/3/events", tt.q, tt.body, []byte(vecSecret))
			}
			var ae authError
			if !errors.As(err, &ae) || !strings.HasPrefix(string(ae), tt.want) {
				t.Fatalf("error = %v, want a 401 text starting %q", err, tt.want)
			}
			if strings.Contains(string(ae), vecSecret) || strings.Contains(string(ae), good.Get("auth_signature")) {
				t.Errorf("error text %q reveals the secret or the expected signature", ae)
			}
		})
	}
	// 600 s either way is still within the window.
	for _, d := range []time.Duration{-600 * time.Second, 600 * time.Second} {
		q := signed(now.Add(d), nil, body)
		p, err := readAuth(q, now)
		if err == nil {
			err = p.verify("POST", "/apps/3/events", q, body, []byte(vecSecret))
		}
		if err != nil {
			t.Errorf("timestamp %v from now: %v, want accepted", d, err)
		}
	}
}

// signedNoMD5 signs a request with a body as if it had none.
func signedNoMD5(now time.Time, body []byte) url.Values {
	q, _ := url.ParseQuery(SignQuery(vecKey, []byte(vecSecret), "POST", "/apps/3/events", nil, nil, now))
	return q
}

func repeated(q url.Values, k string) url.Values {
	c := cloneValues(q)
	c[k] = append(c[k], c[k][0])
	return c
}

func cloneValues(q url.Values) url.Values {
	c := url.Values{}
	for k, v := range q {
		c[k] = append([]string(nil), v...)
	}
	return c
}

func TestStringToSignSortsByKey(t *testing.T) {
	t.Parallel()
	// "a_b" sorts after "a" by key; sorting "k=v" strings would put it first.
	q := url.Values{"a_b": {"1"}, "a": {"2"}, "Info": {"user_count,subscription_count"}, "auth_signature": {"x"}}
	want := "GET\n/apps/1/channels\na=2&a_b=1&info=user_count,subscription_count"
	if got := stringToSign("get", "/apps/1/channels", q); got != want {
		t.Errorf("stringToSign = %q, want %q", got, want)
	}
}
