package pusher

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Pusher signs with HMAC-SHA256 and the tenant's secret in three places:
// channel authorization (private- and presence- subscriptions), user
// authentication (pusher:signin), and every HTTP API request. The strings
// signed here are the ones Pusher's "Authentication and authorization
// signatures" page and its server libraries (pusher-http-node 5.3.4
// lib/auth.js and lib/requests.js) sign, byte for byte.

// ChannelAuth returns the auth string a tenant's backend hands pusher-js for
// a subscription: "key:hexsig", signed over socketID:channel, plus
// :channelData for a presence channel.
func ChannelAuth(key string, secret []byte, socketID, channel, channelData string) string {
	return key + ":" + hex.EncodeToString(channelSig(secret, socketID, channel, channelData))
}

// ValidChannelAuth reports whether auth is ChannelAuth's answer for these
// values: its key part must be key and its signature must match, compared in
// constant time.
func ValidChannelAuth(auth, key string, secret []byte, socketID, channel, channelData string) bool {
	return validAuth(auth, key, channelSig(secret, socketID, channel, channelData))
}

func channelSig(secret []byte, socketID, channel, channelData string) []byte {
	s := socketID + ":" + channel
	if channelData != "" {
		s += ":" + channelData
	}
	return hmacSHA256(secret, s)
}

// UserAuth returns the auth string of a pusher:signin: "key:hexsig", signed
// over socketID::user::userData.
func UserAuth(key string, secret []byte, socketID, userData string) string {
	return key + ":" + hex.EncodeToString(userSig(secret, socketID, userData))
}

// ValidUserAuth reports whether auth is UserAuth's answer for these values,
// as ValidChannelAuth does.
func ValidUserAuth(auth, key string, secret []byte, socketID, userData string) bool {
	return validAuth(auth, key, userSig(secret, socketID, userData))
}

func userSig(secret []byte, socketID, userData string) []byte {
	return hmacSHA256(secret, socketID+"::user::"+userData)
}

// validAuth checks "key:hexsig" against key and the expected signature.
func validAuth(auth, key string, want []byte) bool {
	k, sig, ok := strings.Cut(auth, ":")
	if !ok || k != key { // the key is public (pusher-js has it): no need for constant time
		return false
	}
	got, err := hex.DecodeString(sig)
	return err == nil && hmac.Equal(got, want)
}

func hmacSHA256(secret []byte, s string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// Request signing (HTTP API reference, "Authentication").

// MaxClockSkew is how far a request's auth_timestamp may be from the
// server's clock, either way.
const MaxClockSkew = 600 * time.Second

// authParams are a request's signing parameters, read from its query.
type authParams struct {
	key       string
	signature string
	bodyMD5   string // "" when absent
}

// authError is why a request's signature is refused: a 401 whose text
// says what is wrong and what to do. It never holds the secret or the
// expected signature.
type authError string

func (e authError) Error() string { return string(e) }

// readAuth checks that q holds each signing parameter once, auth_version
// 1.0 and an auth_timestamp within MaxClockSkew of now, and returns them.
func readAuth(q url.Values, now time.Time) (authParams, error) {
	// Keys are compared lower-cased, as the signature's string does; two
	// spellings of one key would make the signed string ambiguous.
	seen := map[string]bool{}
	for k, vs := range q {
		lk := strings.ToLower(k)
		if seen[lk] || len(vs) > 1 {
			return authParams{}, authError("Invalid query: parameter " + strconv.Quote(k) + " appears more than once; send each parameter once")
		}
		seen[lk] = true
	}
	for _, name := range []string{"auth_key", "auth_timestamp", "auth_version", "auth_signature"} {
		if !q.Has(name) {
			return authParams{}, authError("Missing " + name + ": sign every request with auth_key, auth_timestamp, auth_version and auth_signature " +
				"query parameters, as Pusher's server libraries do")
		}
	}
	if v := q.Get("auth_version"); v != "1.0" {
		return authParams{}, authError("Unsupported auth_version " + strconv.Quote(clipText(v)) + ": only 1.0 is supported")
	}
	ts := q.Get("auth_timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return authParams{}, authError("Invalid auth_timestamp " + strconv.Quote(clipText(ts)) + ": send the current Unix time in whole seconds")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxClockSkew || d < -MaxClockSkew {
		return authParams{}, authError("Timestamp expired: given timestamp (" + time.Unix(sec, 0).UTC().Format(time.RFC3339) +
			") not within " + strconv.Itoa(int(MaxClockSkew.Seconds())) + "s of server time (" + now.UTC().Format(time.RFC3339) +
			"); check the sending machine's clock")
	}
	return authParams{key: q.Get("auth_key"), signature: q.Get("auth_signature"), bodyMD5: q.Get("body_md5")}, nil
}

// verify checks the body's MD5 and the signature of method, path and q
// with secret.
func (a authParams) verify(method, path string, q url.Values, body []byte, secret []byte) error {
	if len(body) > 0 && a.bodyMD5 == "" {
		return authError("Missing body_md5: a request with a body must send body_md5, the hex MD5 of the body's bytes")
	}
	if a.bodyMD5 != "" { // some libraries send it for an empty body too: the MD5 of nothing
		sum := md5.Sum(body)
		if !strings.EqualFold(a.bodyMD5, hex.EncodeToString(sum[:])) {
			return authError("Invalid body_md5: it is not the MD5 of the body that arrived; sign the exact bytes you send")
		}
	}
	s := stringToSign(method, path, q)
	got, err := hex.DecodeString(a.signature)
	if err != nil || !hmac.Equal(got, hmacSHA256(secret, s)) {
		return authError("Invalid signature: you should have sent HmacSHA256Hex(" + strconv.Quote(clipText(s)) + ", your_secret)")
	}
	return nil
}

// stringToSign is METHOD\nPATH\nQUERY, QUERY being every parameter but
// auth_signature as key=value, keys lower-cased, sorted by key, joined by
// &. Values are the decoded ones: the libraries sign them as they are and
// put them into the URL unescaped (Node, Python), or sign the unescaped
// form of the query they send (Go), so decoding the query we receive gives
// back the signed text.
func stringToSign(method, path string, q url.Values) string {
	pairs := make([]string, 0, len(q))
	for k, vs := range q {
		lk := strings.ToLower(k)
		if lk == "auth_signature" {
			continue
		}
		v := ""
		if len(vs) > 0 {
			v = vs[0]
		}
		pairs = append(pairs, lk+"="+v)
	}
	// Sorting "k=v" strings would put "a_b=" before "a=" ('_' > '='):
	// sort by key, as the libraries do.
	slices.SortFunc(pairs, func(a, b string) int {
		ka, _, _ := strings.Cut(a, "=")
		kb, _, _ := strings.Cut(b, "=")
		return strings.Compare(ka, kb)
	})
	return strings.ToUpper(method) + "\n" + path + "\n" + strings.Join(pairs, "&")
}

// SignQuery returns the query string of an HTTP API request signed as
// Pusher's server libraries sign it: params plus auth_key, auth_timestamp
// (now), auth_version, body_md5 when body is not empty, and auth_signature.
// It is for Go callers of the API: tests and load generators.
func SignQuery(key string, secret []byte, method, path string, params url.Values, body []byte, now time.Time) string {
	q := url.Values{}
	for k, vs := range params {
		q[k] = slices.Clone(vs)
	}
	q.Set("auth_key", key)
	q.Set("auth_timestamp", strconv.FormatInt(now.Unix(), 10))
	q.Set("auth_version", "1.0")
	if len(body) > 0 {
		sum := md5.Sum(body)
		q.Set("body_md5", hex.EncodeToString(sum[:]))
	}
	q.Set("auth_signature", hex.EncodeToString(hmacSHA256(secret, stringToSign(method, path, q))))
	return q.Encode()
}

// clipText shortens a value quoted back in an error text.
func clipText(s string) string {
	const most = 2000
	if len(s) > most {
		return s[:most] + "…"
	}
	return s
}
