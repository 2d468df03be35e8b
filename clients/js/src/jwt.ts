// The client never verifies a token (the service does); it only reads when
// the token was issued and when it expires, to renew it in time.

/** The times in a JWT's claims, in seconds since the epoch. */
export interface TokenTimes {
  exp: number | null;
  iat: number | null;
}

/** decodeTokenTimes reads exp and iat from a JWT's payload, without verifying it. */
export function decodeTokenTimes(token: string): TokenTimes {
  const none = { exp: null, iat: null };
  const part = token.split('.')[1];
  if (!part) return none;
  try {
    let b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    b64 += '='.repeat((4 - (b64.length % 4)) % 4);
    const claims = JSON.parse(decodeBase64(b64));
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    return { exp: num(claims?.exp), iat: num(claims?.iat) };
  } catch {
    return none;
  }
}

function decodeBase64(b64: string): string {
  const bin = atob(b64);
  // The payload is UTF-8; the times are ASCII, but other claims may not be.
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/** How far into a token's lifetime it is renewed. */
export const RENEW_AT = 0.8;

/**
 * tokenSchedule says, on the local clock, when a token obtained at `now`
 * should be renewed and when it expires. The lifetime is taken from iat to
 * exp, so a local clock that is off by minutes does not matter; but when the
 * local clock agrees with iat, a token that was minted a while ago (cached by
 * the backend) is renewed that much sooner.
 */
export function tokenSchedule(times: TokenTimes, now: number): { renewAt: number; expiresAt: number } | null {
  if (times.exp === null) return null;
  const expMs = times.exp * 1000;
  let start = now;
  let lifetime = expMs - now;
  if (times.iat !== null && times.exp > times.iat) {
    lifetime = (times.exp - times.iat) * 1000;
    const age = now - times.iat * 1000;
    if (age >= 0 && age < lifetime) start = times.iat * 1000; // the clocks agree
  }
  if (lifetime <= 0) return { renewAt: now, expiresAt: now };
  return { renewAt: start + RENEW_AT * lifetime, expiresAt: start + lifetime };
}
