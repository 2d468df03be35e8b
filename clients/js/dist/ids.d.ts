/** isId reports whether s is an event id: a decimal number without leading zeros. */
export declare function isId(s: unknown): s is string;
/** compareIds returns <0, 0 or >0 as a is before, equal to or after b. */
export declare function compareIds(a: string, b: string): number;
/** isAfter reports whether id comes after cursor; everything is after no cursor. */
export declare function isAfter(id: string, cursor: string | null): boolean;
/** before returns the id just before id ("0" stays "0"). */
export declare function before(id: string): string;
