import { HybridError } from './errors.js';
import { compareIds } from './ids.js';
import type { Clock, EventSourceFactory, FetchLike, HybridEvent, Transport } from './types.js';
/** Silence longer than this many heartbeats means the stream is dead or buffered. */
export declare const HEARTBEAT_SILENCE_FACTOR = 2.5;
/** A long-poll that has not answered this long after its timeout is aborted. */
export declare const POLL_GRACE_MS = 10000;
/** An empty poll answer quicker than this is not polled again at once (a server that does not hold). */
export declare const POLL_MIN_HOLD_MS = 1000;
/** A token this close to its expiry is not used for a new request. */
export declare const TOKEN_EXPIRY_MARGIN_MS = 5000;
/** Renewals are never closer together than this (a floor against renewal storms). */
export declare const MIN_RENEW_DELAY_MS = 1000;
/**
 * After an SSE stream breaks, the browser waits the server's `retry:` before it
 * reconnects: 2 s, or up to 5 s when an instance shuts down. The `ready`
 * deadline of that reconnect starts after this grace, so a plain drop is not
 * mistaken for a buffering proxy.
 */
export declare const RECONNECT_GRACE_MS = 5000;
/** Default heartbeat when `ready` names none, in seconds. */
export declare const DEFAULT_HEARTBEAT_S = 15;
/** Settings of a Machine, every default filled in. */
export interface MachineConfig {
    url: string;
    channels: string[];
    getToken: () => Promise<string>;
    transports: Transport[];
    cursor: string | null;
    eventTypes: string[];
    sseOpenTimeoutMs: number;
    sseFailuresBeforePolling: number;
    sseRetryIntervalMs: number;
    pollTimeoutS: number;
    backoff: {
        initialMs: number;
        maxMs: number;
    };
    clock: Clock;
    fetch: FetchLike;
    EventSource: EventSourceFactory | null;
    random: () => number;
}
/** What a Machine reports: each new event (deduped, in order) and each change of state. */
export interface MachineHooks {
    onEvent(event: HybridEvent): void;
    onChange(): void;
}
/** Machine runs one connection; see the file comment. */
export declare class Machine {
    private readonly cfg;
    private readonly hooks;
    connected: boolean;
    method: Transport | null;
    error: HybridError | null;
    cursor: string | null;
    private mode;
    private running;
    private paused;
    private closed;
    private halted;
    private stream;
    private probe;
    private poll;
    private pollWarm;
    private retryTimer;
    private probeTimer;
    private renewTimer;
    private token;
    private tokenPromise;
    private readonly backoff;
    private sseFailures;
    private visibleHeartbeats;
    private expiredSinceReady;
    private resyncedFrom;
    private pendingResync;
    constructor(cfg: MachineConfig, hooks: MachineHooks);
    /** start connects, unless paused. */
    start(): void;
    /** close stops for good. */
    close(): void;
    /** pause drops the connection until resume (the browser went offline). */
    pause(): void;
    /** resume connects again after pause, SSE first, with a fresh backoff. */
    resume(): void;
    /** reconnect drops the connection and connects again at once, SSE first. */
    reconnect(): void;
    /** wake connects now if a retry is waiting (the page became visible). */
    wake(): void;
    private sseUsable;
    private pollUsable;
    private preferred;
    private resetPreference;
    private connect;
    /** downgrade switches to long-polling from the cursor, and tries SSE again later. */
    private downgrade;
    /** scheduleRetry connects again after a backoff wait (at least atLeastMs). */
    private scheduleRetry;
    private halt;
    /** teardown closes every transport and pending attempt, but keeps the token. */
    private teardown;
    private openStream;
    private streamURL;
    private channelParam;
    private armOpenTimer;
    private armWatchdog;
    private onReady;
    /** promote makes a probe that sent ready the stream, and only then stops polling. */
    private promote;
    private onMessage;
    private onPing;
    /** alive notes a sign of life on a stream. */
    private alive;
    private onResync;
    private onTokenExpired;
    private onStreamError;
    /** streamFailed handles an SSE attempt that failed before its EventSource existed. */
    private streamFailed;
    private onOpenTimeout;
    private onSilence;
    private closeStream;
    private scheduleProbe;
    private startPolling;
    private pollOnce;
    private pollPath;
    private pollFailed;
    private endPoll;
    private stopPolling;
    /** deliver hands on an event that comes after the cursor, and moves the cursor. */
    private deliver;
    /**
     * resync tells the app that events between `from` and `to` were lost to
     * retention. Both transports may say so for the same gap; it is said once.
     */
    private resync;
    /**
     * authorized runs fn with a token. On a 401 with a token that was cached,
     * it gets a fresh one and runs fn once more.
     */
    private authorized;
    private usableToken;
    private dropToken;
    /** fetchToken calls getToken (once for concurrent callers) and schedules the renewal. */
    private fetchToken;
    private scheduleRenewal;
    /** renew gets a fresh token before the current one expires and hands it to the live stream. */
    private renew;
    /** renewStream re-authorizes a live stream in place with token. */
    private renewStream;
    private request;
    private clear;
    private changed;
}
/** The code of a HybridError when getToken failed or gave no token. */
export declare const TOKEN_UNAVAILABLE = "token_unavailable";
/** isEnvelope reports whether v is an event envelope with a valid id. */
export declare function isEnvelope(v: unknown): v is HybridEvent;
export { compareIds };
