// Package channel holds the rules for channel names and who may subscribe to
// them (DESIGN, section Channels). Publishing, subscribing, polling and token
// minting all check names here, so the rules cannot drift apart.
package channel

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxLen is the longest channel name.
const MaxLen = 200

// ErrInvalid is a malformed channel name or pattern.
var ErrInvalid = errors.New("invalid channel")

// Valid reports why name is not a channel name, or nil: 1–200 characters of
// A-Z a-z 0-9 _ - . : @ =. Anything else (spaces, '/', '*', control and format
// characters, non-ASCII) is refused rather than normalised, so two names never
// collide and one is never rewritten into another.
func Valid(name string) error {
	if name == "" || len(name) > MaxLen {
		return fmt.Errorf("%w %s: a channel name is 1 to %d characters", ErrInvalid, quote(name), MaxLen)
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return fmt.Errorf("%w %s: only A-Z a-z 0-9 _ - . : @ = are allowed", ErrInvalid, quote(name))
		}
	}
	return nil
}

// ValidPattern reports why p is not a grant in a token's channels claim: a
// channel name, or a prefix of one followed by '*'.
func ValidPattern(p string) error {
	prefix, wildcard := strings.CutSuffix(p, "*")
	if wildcard && prefix == "" {
		return fmt.Errorf("%w pattern %q: a pattern needs a prefix before '*', such as \"team:*\"", ErrInvalid, p)
	}
	if wildcard {
		for i := 0; i < len(prefix); i++ {
			if !nameByte(prefix[i]) {
				return fmt.Errorf("%w pattern %s: only A-Z a-z 0-9 _ - . : @ = and a final '*' are allowed", ErrInvalid, quote(p))
			}
		}
		if len(prefix) >= MaxLen {
			return fmt.Errorf("%w pattern %s: too long", ErrInvalid, quote(p))
		}
		return nil
	}
	return Valid(p)
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == ':' || c == '@' || c == '='
}

// Allowed reports whether a subscriber with subject sub and the given grants
// may subscribe to name. user:<id> belongs to the user <id> alone, whatever
// the grants say; broadcast and dashboard are open to every subscriber of the
// tenant; any other channel needs a grant naming it or a prefix of it.
func Allowed(sub string, grants []string, name string) bool {
	if id, ok := strings.CutPrefix(name, "user:"); ok {
		return id == sub
	}
	if name == "broadcast" || name == "dashboard" {
		return true
	}
	return Granted(grants, name)
}

// Granted reports whether one of grants (names and prefix* patterns) names
// name: nothing is implied, as for what a client may publish to.
func Granted(grants []string, name string) bool {
	for _, g := range grants {
		if prefix, ok := strings.CutSuffix(g, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if g == name {
			return true
		}
	}
	return false
}

// quote shortens and quotes a bad value for an error message, in ASCII so a
// control or bidi character cannot disguise itself.
func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strconv.QuoteToASCII(s)
}
