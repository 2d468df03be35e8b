/**
 * Backoff is exponential backoff with full jitter: the n-th wait in a row is
 * uniform in [0, min(maxMs, initialMs·2^n)), so that many clients cut off at
 * once do not come back at once. reset() starts over after a success.
 */
export class Backoff {
  private attempt = 0;

  constructor(private readonly initialMs: number, private readonly maxMs: number, private readonly random: () => number) {}

  /** next returns the next wait, at least atLeastMs (a server's Retry-After). */
  next(atLeastMs = 0): number {
    const cap = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.max(atLeastMs, Math.floor(this.random() * cap));
  }

  reset(): void {
    this.attempt = 0;
  }

  /** failures is how many waits were taken since the last reset. */
  get failures(): number {
    return this.attempt;
  }
}
