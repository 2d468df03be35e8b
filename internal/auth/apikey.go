package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"strings"
)

const (
	keyScheme    = "hrt_"
	lookupLen    = 12
	secretLen    = 43 // 43 base62 characters carry 256 bits
	checkLen     = 6  // 62^6 > 2^32: room for a CRC-32
	apiKeyLength = len(keyScheme) + lookupLen + 1 + secretLen + checkLen
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ErrInvalidKey is returned for an API key that is malformed, unknown or revoked.
// Callers must not tell these apart in responses.
var ErrInvalidKey = errors.New("auth: invalid API key")

// randomString returns n uniformly random base62 characters.
func randomString(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		_, _ = rand.Read(buf) // never fails (crypto/rand docs)
		for _, b := range buf {
			if b >= 248 { // 248 = 4*62: drop the tail so b%62 stays uniform
				continue
			}
			out = append(out, base62[b%62])
			if len(out) == n {
				break
			}
		}
	}
	return string(out)
}

// checksum encodes the CRC-32 of s as checkLen base62 characters.
func checksum(s string) string {
	c := uint64(crc32.ChecksumIEEE([]byte(s)))
	var out [checkLen]byte
	for i := checkLen - 1; i >= 0; i-- {
		out[i] = base62[c%62]
		c /= 62
	}
	return string(out[:])
}

// newAPIKey returns a fresh key, its lookup prefix and the hash to store.
func newAPIKey() (key, lookup string, hash []byte) {
	lookup = randomString(lookupLen)
	secret := randomString(secretLen)
	body := keyScheme + lookup + "_" + secret
	h := sha256.Sum256([]byte(secret))
	return body + checksum(body), lookup, h[:]
}

// parseAPIKey splits key into its lookup prefix and the hash of its secret.
// Any malformed key, including one whose checksum does not match, is
// ErrInvalidKey, found without touching the database.
func parseAPIKey(key string) (lookup string, hash []byte, err error) {
	if !wellFormed(key) {
		return "", nil, ErrInvalidKey
	}
	rest := key[len(keyScheme) : len(key)-checkLen]
	h := sha256.Sum256([]byte(rest[lookupLen+1:]))
	return rest[:lookupLen], h[:], nil
}

// wellFormed reports whether key has an API key's shape and checksum: only
// such a key costs a lookup.
func wellFormed(key string) bool {
	if len(key) != apiKeyLength || !strings.HasPrefix(key, keyScheme) {
		return false
	}
	body, check := key[:len(key)-checkLen], key[len(key)-checkLen:]
	rest := body[len(keyScheme):]
	if rest[lookupLen] != '_' {
		return false
	}
	lookup, secret := rest[:lookupLen], rest[lookupLen+1:]
	return isBase62(lookup) && isBase62(secret) && checksum(body) == check
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// displayPrefix is how a key is shown after creation: enough to recognise it.
func displayPrefix(lookup string) string { return keyScheme + lookup }
