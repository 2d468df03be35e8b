import type { Transport } from './types.js';

/**
 * HybridError is a failure of the client or an error answer of the service.
 * `status` and `code` come from the service's problem+json body, when there
 * was one (e.g. 401 `invalid_token`, 403 `insufficient_scope`).
 */
export class HybridError extends Error {
  readonly status: number | null;
  readonly code: string | null;
  readonly transport: Transport | null;
  /** From a Retry-After header (429, 503): wait at least this long. */
  readonly retryAfterMs: number | null;

  constructor(message: string, opts: { status?: number | null; code?: string | null; transport?: Transport | null; retryAfterMs?: number | null } = {}) {
    super(message);
    this.name = 'HybridError';
    this.status = opts.status ?? null;
    this.code = opts.code ?? null;
    this.transport = opts.transport ?? null;
    this.retryAfterMs = opts.retryAfterMs ?? null;
  }
}

/** toHybridError wraps anything thrown into a HybridError. */
export function toHybridError(err: unknown, transport: Transport | null = null): HybridError {
  if (err instanceof HybridError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new HybridError(message || 'network error', { transport });
}

/** retryAfterMs parses a Retry-After header: seconds, or an HTTP date. */
export function retryAfterMs(header: string | null, now: number): number | null {
  if (!header) return null;
  const secs = Number(header);
  if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}
