// Package auth holds the tenant's credentials and checks them.
//
// # API keys
//
// Publishers send an API key as a bearer token. A key reads
//
//	hrt_<lookup>_<secret><check>
//
// with a 12-character lookup prefix that finds the row, a 43-character secret
// (256 random bits, base62) of which only the SHA-256 is stored, and a
// 6-character CRC-32 of the rest, so a mistyped or made-up key is refused
// before any database query. Hashes are compared in constant time.
//
// Verified keys are cached in memory for CacheTTL (2 s), so publishing does
// not cost a key lookup per request. That bounds how long a revoked key keeps
// working on another instance; the revoking instance forgets it at once. The
// last-used time is collected in memory and written in one UPDATE every
// FlushInterval, never once per request.
//
// # Signing keys
//
// Subscriber JWTs are HMAC-signed with a tenant's signing key, named by the
// token's kid header. kids are unique across tenants, so the tenant is found
// from the key that verifies a token, never from a claim in it. The secret
// is shown once and stored sealed with AES-256-GCM under a key derived from
// SECRET_KEY, so a database dump alone does not reveal it. Changing
// SECRET_KEY therefore makes existing signing keys unusable: create new ones.
package auth
