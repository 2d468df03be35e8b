package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// maxURLLen is the longest webhook URL accepted, as tenant settings allow.
const maxURLLen = 2048

// CheckURL reports whether raw may be a webhook URL: absolute, https (or
// http when allowPrivate, for development), with a host and no user info
// or fragment. A host written as an IP address is checked as the dialer
// would check it. Names are not resolved here: Sender.Check does that,
// and Sender.Send checks again on every connection.
//
// Each error says what is wrong in words a tenant can act on; they are
// shown in the API and the console. None repeats the URL, which may carry
// a secret of the tenant's in its path or query.
func CheckURL(raw string, allowPrivate bool) error {
	if raw == "" {
		return errors.New("webhook URL is empty: give an https:// URL such as https://example.com/pusher/webhook")
	}
	if len(raw) > maxURLLen {
		return fmt.Errorf("webhook URL is longer than %d characters", maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's own message quotes the whole URL; keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook URL is not a valid URL: %v", err)
	}
	switch {
	case u.Scheme == "" || u.Opaque != "":
		return errors.New("webhook URL must be absolute, such as https://example.com/pusher/webhook")
	case u.Scheme == "http" && !allowPrivate:
		return errors.New("webhook URL must use https: plain http is allowed only when the operator sets WEBHOOK_ALLOW_PRIVATE=true, for development")
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("webhook URL must use https, not %q", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return errors.New("webhook URL has no host: give one such as https://example.com/pusher/webhook")
	case u.User != nil:
		return errors.New("webhook URL must not carry a user name or password: every webhook is signed in X-Pusher-Signature, and a secret may go in the path or query instead")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return errors.New("webhook URL must not have a #fragment: it is never sent to the server")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("webhook URL has port %s, which is not between 1 and 65535", p)
		}
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !allowPrivate {
		if reason := internal(ip); reason != "" {
			return &refusedError{verb: "points to", addr: ip, reason: reason}
		}
	}
	return nil
}
