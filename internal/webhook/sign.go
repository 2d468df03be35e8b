package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// The headers Pusher puts on a webhook, which a Pusher webhook handler
// reads: the app key, and the body's signature made with that key's secret.
const (
	HeaderKey       = "X-Pusher-Key"
	HeaderSignature = "X-Pusher-Signature"
)

// Sign returns the X-Pusher-Signature of body: the hex HMAC-SHA256 of the
// raw body with secret, as Pusher signs its webhooks. The receiver must
// check it against the bytes it received, before any JSON decoding.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}
