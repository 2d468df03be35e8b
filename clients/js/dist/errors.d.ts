import type { Transport } from './types.js';
/**
 * HybridError is a failure of the client or an error answer of the service.
 * `status` and `code` come from the service's problem+json body, when there
 * was one (e.g. 401 `invalid_token`, 403 `insufficient_scope`).
 */
export declare class HybridError extends Error {
    readonly status: number | null;
    readonly code: string | null;
    readonly transport: Transport | null;
    /** From a Retry-After header (429, 503): wait at least this long. */
    readonly retryAfterMs: number | null;
    constructor(message: string, opts?: {
        status?: number | null;
        code?: string | null;
        transport?: Transport | null;
        retryAfterMs?: number | null;
    });
}
/** toHybridError wraps anything thrown into a HybridError. */
export declare function toHybridError(err: unknown, transport?: Transport | null): HybridError;
/** retryAfterMs parses a Retry-After header: seconds, or an HTTP date. */
export declare function retryAfterMs(header: string | null, now: number): number | null;
