import { HybridError } from './errors.js';
import { compareIds } from './ids.js';
import type { Clock, EventSourceFactory, FetchLike, HybridEvent, Member, Transport, WebSocketFactory } from './types.js';
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
/** Default heartbeat when `ready` names none, in seconds; the WebSocket's ping interval too. */
export declare const DEFAULT_HEARTBEAT_S = 15;
/** The subprotocol of /api/realtime/ws (docs/protocol.md). */
export declare const WS_SUBPROTOCOL = "hybridrt.v1";
/** How long a client event sent over the WebSocket may wait for its `published`. */
export declare const PUBLISH_TIMEOUT_MS = 10000;
/** Settings of a Machine, every default filled in. */
export interface MachineConfig {
    url: string;
    channels: string[];
    getToken: () => Promise<string>;
    transports: Transport[];
    cursor: string | null;
    eventTypes: string[];
    openTimeoutMs: number;
    failuresBeforeFallback: number;
    retryIntervalMs: number;
    pollTimeoutS: number;
    backoff: {
        initialMs: number;
        maxMs: number;
    };
    clock: Clock;
    fetch: FetchLike;
    EventSource: EventSourceFactory | null;
    WebSocket: WebSocketFactory | null;
    random: () => number;
}
/**
 * A presence message, from any transport: a channel's members (when the
 * connection joined it; every poll's answer too), or one join or leave.
 */
export type PresenceMessage = {
    kind: 'presence';
    channel: string;
    members: Member[];
} | {
    kind: 'member_added' | 'member_removed';
    channel: string;
    member: Member;
};
/** What a Machine reports: each new event (deduped, in order), presence, and each change of state. */
export interface MachineHooks {
    onEvent(event: HybridEvent): void;
    onPresence?(message: PresenceMessage): void;
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
    private readonly pollId;
    private retryTimer;
    private probeTimer;
    private renewTimer;
    private token;
    private tokenPromise;
    private readonly backoff;
    private failures;
    private visibleHeartbeats;
    private expiredSinceReady;
    private resyncedFrom;
    private pendingResync;
    private readonly own;
    private refs;
    constructor(cfg: MachineConfig, hooks: MachineHooks);
    /** connectionId is the service's id of the live connection, or of the polls while polling. */
    get connectionId(): string | null;
    /** start connects, unless paused. */
    start(): void;
    /** close stops for good. */
    close(): void;
    /** pause drops the connection until resume (the browser went offline). */
    pause(): void;
    /** resume connects again after pause, on the best transport first, with a fresh backoff. */
    resume(): void;
    /** reconnect drops the connection and connects again at once, on the best transport first. */
    reconnect(): void;
    /** wake connects now if a retry is waiting (the page became visible). */
    wake(): void;
    /** usable lists the transports allowed and available here, best first. */
    private usable;
    private preferred;
    /** after returns the transport to fall back to from t, or null. */
    private after;
    /** better reports whether t comes before the current mode. */
    private better;
    private resetPreference;
    private connect;
    /** fallBack moves to the next transport from the cursor, and tries the better ones again later. */
    private fallBack;
    /** failed counts a failed attempt of the current mode and falls back or retries. */
    private failed;
    /** scheduleRetry connects again after a backoff wait (at least atLeastMs). */
    private scheduleRetry;
    private halt;
    /** teardown closes every transport and pending attempt, but keeps the token. */
    private teardown;
    /** newStream registers a stream (or probe) about to open. */
    private newStream;
    /** live marks a stream live: connected, and a probe becomes the stream. */
    private live;
    /** promote makes a probe that came live the stream, and only then closes the old one. */
    private promote;
    private armOpenTimer;
    private armWatchdog;
    private onOpenTimeout;
    private onSilence;
    private closeStream;
    /** scheduleProbe tries the best transport again after retryIntervalMs, while on a fallback. */
    private scheduleProbe;
    private openProbe;
    /** probeFailed probes the next better transport at once, or waits for the next round. */
    private probeFailed;
    private openStream;
    private streamURL;
    private channelParam;
    private onReady;
    private onMessage;
    private onPing;
    /** alive notes a sign of life on a stream. */
    private alive;
    private onResync;
    /** onPresence hands on a presence message of the live stream (a probe's come again once it is live). */
    private onPresence;
    private onTokenExpired;
    private onStreamError;
    /** streamFailed handles an attempt that failed before its EventSource or WebSocket existed. */
    private streamFailed;
    private openSocket;
    /** send sends a message on a WebSocket; a failure shows as its close. */
    private send;
    private onSocketMessage;
    private onSocketLive;
    /** onSocketError takes an `error` answer: to the subscribe, a renewal or a client event. */
    private onSocketError;
    private onSocketClose;
    /** renewSocket hands a live WebSocket a fresh token, in place. */
    private renewSocket;
    /** settle answers a client event sent over a WebSocket. */
    private settle;
    private startPolling;
    private pollOnce;
    private pollPath;
    private pollFailed;
    /**
     * startOverFromHead handles a cursor past the tenant's head (its events
     * were reset): start again from the head, and tell the app to reload its
     * state with the next answer.
     */
    private startOverFromHead;
    private endPoll;
    private stopPolling;
    /** deliver hands on an event that comes after the cursor, and moves the cursor. */
    private deliver;
    /** noteOwn remembers the id of a client event this client sent. */
    private noteOwn;
    /**
     * publish sends a client event: over the live WebSocket when there is
     * one, else with POST /api/realtime/publish naming connectionId (this
     * machine's connection when it has one), so that the sender's connection
     * leaves the event out.
     */
    publish(channel: string, type: string, data: unknown, connectionId?: string | null): Promise<string>;
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
