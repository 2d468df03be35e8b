package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestAPIKeyRoundTrip(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		key, lookup, hash := newAPIKey()
		if len(key) != apiKeyLength || !strings.HasPrefix(key, "hrt_"+lookup+"_") {
			t.Fatalf("newAPIKey() = %q, want hrt_%s_… of length %d", key, lookup, apiKeyLength)
		}
		gotLookup, gotHash, err := parseAPIKey(key)
		if err != nil || gotLookup != lookup || !bytes.Equal(gotHash, hash) {
			t.Fatalf("parseAPIKey(%q) = %q, %x, %v; want %q, %x, nil", key, gotLookup, gotHash, err, lookup, hash)
		}
		if seen[lookup] {
			t.Fatalf("lookup prefix %q repeated", lookup)
		}
		seen[lookup] = true
	}
}

func TestParseAPIKeyRefusesMalformed(t *testing.T) {
	t.Parallel()
	good, _, _ := newAPIKey()
	flip := func(i int) string {
		b := []byte(good)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for name, key := range map[string]string{
		"empty":            "",
		"scheme only":      "hrt_",
		"wrong scheme":     "hrx_" + good[4:],
		"short":            good[:len(good)-1],
		"long":             good + "a",
		"secret changed":   flip(30),
		"lookup changed":   flip(6),
		"checksum changed": flip(len(good) - 1),
		"no separator":     good[:16] + "a" + good[17:],
		"non-base62":       good[:20] + "-" + good[21:],
		"unicode":          good[:20] + "é" + good[22:],
		"upper-case":       strings.ToUpper(good),
	} {
		if _, _, err := parseAPIKey(key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("parseAPIKey(%s %q) = %v, want ErrInvalidKey", name, key, err)
		}
	}
}

// TestAuthenticateMalformedTouchesNoDatabase shows that a key with a bad
// checksum is refused before any query: the store here has no pool at all,
// so a query would panic.
func TestAuthenticateMalformedTouchesNoDatabase(t *testing.T) {
	t.Parallel()
	keys := NewKeys(nil)
	good, _, _ := newAPIKey()
	bad := good[:len(good)-1] + string(good[len(good)-1]^1)
	for _, key := range []string{bad, "hrt_short", strings.Repeat(".", 10000)} {
		if _, _, err := keys.Authenticate(context.Background(), key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Authenticate(%.20q) = %v, want ErrInvalidKey", key, err)
		}
	}
}

func FuzzAPIKeyParse(f *testing.F) {
	good, _, _ := newAPIKey()
	for _, s := range []string{good, "", "hrt_", good[:len(good)-1] + "0", strings.Repeat("a", apiKeyLength), "hrt_" + strings.Repeat("_", 62)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lookup, hash, err := parseAPIKey(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("parseAPIKey(%q) = %v, want ErrInvalidKey", s, err)
			}
			return
		}
		// Accepted: the key must be exactly the format, checksum included.
		secret := s[len(keyScheme)+lookupLen+1 : len(s)-checkLen]
		want := sha256.Sum256([]byte(secret))
		if s != keyScheme+lookup+"_"+secret+checksum(keyScheme+lookup+"_"+secret) || !bytes.Equal(hash, want[:]) {
			t.Fatalf("parseAPIKey(%q) accepted a key that does not re-encode to itself", s)
		}
	})
}
