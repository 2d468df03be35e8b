/**
 * Backoff is exponential backoff with full jitter: the n-th wait in a row is
 * uniform in [0, min(maxMs, initialMs·2^n)), so that many clients cut off at
 * once do not come back at once. reset() starts over after a success.
 */
export declare class Backoff {
    private readonly initialMs;
    private readonly maxMs;
    private readonly random;
    private attempt;
    constructor(initialMs: number, maxMs: number, random: () => number);
    /** next returns the next wait, at least atLeastMs (a server's Retry-After). */
    next(atLeastMs?: number): number;
    reset(): void;
    /** failures is how many waits were taken since the last reset. */
    get failures(): number;
}
