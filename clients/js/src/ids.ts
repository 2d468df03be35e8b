// Event ids are decimal strings of one per-tenant sequence (up to 2^63-1),
// so they are compared as numbers without converting them: a longer string
// is a larger number, and strings of one length compare character by
// character.

const decimal = /^(0|[1-9][0-9]{0,18})$/;

/** isId reports whether s is an event id: a decimal number without leading zeros. */
export function isId(s: unknown): s is string {
  return typeof s === 'string' && decimal.test(s);
}

/** compareIds returns <0, 0 or >0 as a is before, equal to or after b. */
export function compareIds(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** isAfter reports whether id comes after cursor; everything is after no cursor. */
export function isAfter(id: string, cursor: string | null): boolean {
  return cursor === null || compareIds(id, cursor) > 0;
}

/** before returns the id just before id ("0" stays "0"). */
export function before(id: string): string {
  const n = BigInt(id);
  return (n > 0n ? n - 1n : 0n).toString();
}
