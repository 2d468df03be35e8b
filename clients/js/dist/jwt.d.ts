/** The times in a JWT's claims, in seconds since the epoch. */
export interface TokenTimes {
    exp: number | null;
    iat: number | null;
}
/** decodeTokenTimes reads exp and iat from a JWT's payload, without verifying it. */
export declare function decodeTokenTimes(token: string): TokenTimes;
/** How far into a token's lifetime it is renewed. */
export declare const RENEW_AT = 0.8;
/**
 * tokenSchedule says, on the local clock, when a token obtained at `now`
 * should be renewed and when it expires. The lifetime is taken from iat to
 * exp, so a local clock that is off by minutes does not matter; but when the
 * local clock agrees with iat, a token that was minted a while ago (cached by
 * the backend) is renewed that much sooner.
 */
export declare function tokenSchedule(times: TokenTimes, now: number): {
    renewAt: number;
    expiresAt: number;
} | null;
