import type { HybridError } from './errors.js';
/** A transport: Server-Sent Events or long-polling. */
export type Transport = 'sse' | 'polling';
/**
 * An event as the service sends it, the same on every transport. `id` is the
 * tenant's sequence number as a decimal string. The client also delivers
 * `type: 'resync'` events of its own making (`channel` is empty and `data` is
 * `{cursor, reason}`): events before `cursor` were lost, so reload your state.
 */
export interface HybridEvent<T = unknown> {
    id: string;
    channel: string;
    type: string;
    data: T;
    time: string;
    /** Who sent a client event (`client-…`): the sender's token's `sub`. Absent on the backend's events. */
    user?: string;
}
/** A handler of one event type, or of every type under the key `'*'`. */
export type EventHandler = (event: HybridEvent) => void;
/** What this tab does when tabs share one connection. */
export type Role = 'solo' | 'leader' | 'follower';
/** A snapshot of the client, given to `subscribe` listeners and `onStateChange`. */
export interface HybridState {
    /** A transport is live: the SSE stream sent `ready`, or the last poll succeeded. */
    isConnected: boolean;
    /** The transport in use or being tried, or null when closed or offline. */
    activeMethod: Transport | null;
    /** The last event handed to the handlers. */
    lastEvent: HybridEvent | null;
    /** The last failure; cleared when a transport connects. */
    error: Error | null;
    /** The position after which events are still to come. */
    cursor: string | null;
    /** `leader` runs the connection for every tab; `follower` gets its events relayed. */
    role: Role;
}
/** Timers and the time, injectable so that tests can drive a fake clock. */
export interface Clock {
    /** Milliseconds since the Unix epoch. */
    now(): number;
    setTimeout(fn: () => void, ms: number): unknown;
    clearTimeout(handle: unknown): void;
}
/** The part of a MessageEvent that EventSource listeners read. */
export interface MessageLike {
    data: string;
    lastEventId?: string;
}
/** The part of the browser's EventSource that the client uses. */
export interface EventSourceLike {
    readonly readyState: number;
    addEventListener(type: string, listener: (event: MessageLike) => void): void;
    close(): void;
}
export type EventSourceFactory = new (url: string) => EventSourceLike;
export type FetchLike = (input: string, init?: {
    method?: string;
    headers?: Record<string, string>;
    signal?: AbortSignal;
}) => Promise<{
    ok: boolean;
    status: number;
    headers: {
        get(name: string): string | null;
    };
    json(): Promise<any>;
    text(): Promise<string>;
}>;
/** The part of `navigator.locks` that tab sharing uses. */
export interface LockManagerLike {
    request(name: string, options: {
        signal?: AbortSignal;
    }, callback: (lock: unknown) => Promise<void> | void): Promise<unknown>;
}
/** The part of a BroadcastChannel that tab sharing uses. */
export interface BroadcastChannelLike {
    postMessage(message: unknown): void;
    close(): void;
    onmessage: ((event: {
        data: any;
    }) => void) | null;
}
export type BroadcastChannelFactory = new (name: string) => BroadcastChannelLike;
/** An object with add/removeEventListener, such as `window` or `document`. */
export interface EventTargetLike {
    addEventListener(type: string, listener: () => void): void;
    removeEventListener(type: string, listener: () => void): void;
}
/** The part of `window` the client watches: online/offline and page visibility. */
export interface WindowLike extends EventTargetLike {
    navigator?: {
        onLine?: boolean;
    };
    document?: EventTargetLike & {
        visibilityState?: string;
    };
}
/** Options of `createHybridRealtime`. */
export interface HybridRealtimeOptions {
    /** The service's origin, e.g. "https://rt.example.com". */
    url: string;
    /** Channels to subscribe to, e.g. ["broadcast", "user:42"]. */
    channels: string[];
    /** Resolves to a subscriber JWT, minted by your backend (POST /v1/tokens). Called again before the token expires. */
    getToken: () => Promise<string>;
    /** Handlers keyed by event type; `'*'` gets every event. */
    eventHandlers?: Record<string, EventHandler>;
    /**
     * More event types to receive over SSE. A browser's EventSource hands over
     * only the named events it listens for, and the client listens for the
     * keys of `eventHandlers`; name here the types a `'*'` handler should get.
     */
    eventTypes?: string[];
    /** Transports the client may use. SSE, when allowed and available, is always tried first. Default ['sse', 'polling']. */
    transports?: Transport[];
    /** Start after this event id, e.g. from GET /v1/head rendered into the page. */
    cursor?: string | null;
    /** Called on every change of state, and on every event. */
    onStateChange?: (state: HybridState) => void;
    /** How long `ready` may take after an SSE connect before the stream counts as buffered. Default 10000. */
    sseOpenTimeoutMs?: number;
    /** SSE attempts that fail in a row before falling back to polling. Default 3. */
    sseFailuresBeforePolling?: number;
    /** While polling, how often to try SSE again. Default 60000. */
    sseRetryIntervalMs?: number;
    /** How long the server may hold a long-poll, in seconds (at most 30). Default 25. */
    pollTimeoutS?: number;
    /** Exponential backoff with full jitter between failed attempts. Default {initialMs: 500, maxMs: 30000}. */
    backoff?: {
        initialMs?: number;
        maxMs?: number;
    };
    /** Share one connection between the tabs of this origin (Web Locks + BroadcastChannel). Default true. */
    shareAcrossTabs?: boolean;
    /** Injectable for tests and other runtimes; default the global ones. */
    clock?: Clock;
    fetch?: FetchLike;
    /** null means "there is no EventSource": SSE is skipped. */
    EventSource?: EventSourceFactory | null;
    locks?: LockManagerLike | null;
    BroadcastChannel?: BroadcastChannelFactory | null;
    window?: WindowLike | null;
    /** A number in [0, 1), for backoff jitter and tab ids. Default Math.random. */
    random?: () => number;
}
/** The object `createHybridRealtime` returns. */
export interface HybridClient {
    readonly isConnected: boolean;
    readonly activeMethod: Transport | null;
    readonly lastEvent: HybridEvent | null;
    readonly error: Error | null;
    readonly cursor: string | null;
    /** The whole state at once. */
    readonly state: HybridState;
    /** Drops the connection and connects again at once, SSE first. */
    reconnect(): void;
    /** Stops for good: closes the connection and every timer. */
    close(): void;
    /** Calls listener on every change of state; returns the function that stops it. */
    subscribe(listener: (state: HybridState) => void): () => void;
}
export type { HybridError };
