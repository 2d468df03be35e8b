// Public types of @hybridrt/client, and the small interfaces of the browser
// APIs it uses, so that tests (and other runtimes) can inject their own.

import type { HybridError } from './errors.js';

/** A transport: hybridrt's WebSocket protocol, Server-Sent Events or long-polling. */
export type Transport = 'websocket' | 'sse' | 'polling';

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

/** A user in a presence channel: the token's `sub`, with the token's `info` claim. */
export interface Member<I = unknown> {
  id: string;
  info?: I;
}

/**
 * The members of one presence channel (a name starting `presence-`) as this
 * client last heard them. The client is a member itself, over every
 * transport; a user with several connections is one member.
 */
export interface Presence<I = unknown> {
  readonly channel: string;
  /** The members, ordered by id; null until the client has heard them. */
  readonly members: Member<I>[] | null;
  /** Calls fn with each user who joins after the members were first heard. */
  onJoin(fn: (member: Member<I>) => void): () => void;
  /** Calls fn with each user whose last connection left. */
  onLeave(fn: (member: Member<I>) => void): () => void;
  /** Calls fn with the members on every change, the first list included. */
  subscribe(fn: (members: Member<I>[]) => void): () => void;
}

/** A handler of one event type, or of every type under the key `'*'`. */
export type EventHandler = (event: HybridEvent) => void;

/** What this tab does when tabs share one connection. */
export type Role = 'solo' | 'leader' | 'follower';

/** A snapshot of the client, given to `subscribe` listeners and `onStateChange`. */
export interface HybridState {
  /** A transport is live: the WebSocket subscribed, the SSE stream sent `ready`, or the last poll succeeded. */
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
  /** The service's id of the connection (`c_…`), which client events name as their sender's; null between connections. */
  connectionId: string | null;
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

/** The part of the browser's WebSocket that the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = new (url: string, protocols?: string | string[]) => WebSocketLike;

export type FetchLike = (input: string, init?: {
  method?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  body?: string;
}) => Promise<{
  ok: boolean;
  status: number;
  headers: { get(name: string): string | null };
  json(): Promise<any>;
  text(): Promise<string>;
}>;

/** The part of `navigator.locks` that tab sharing uses. */
export interface LockManagerLike {
  request(name: string, options: { signal?: AbortSignal }, callback: (lock: unknown) => Promise<void> | void): Promise<unknown>;
}

/** The part of a BroadcastChannel that tab sharing uses. */
export interface BroadcastChannelLike {
  postMessage(message: unknown): void;
  close(): void;
  onmessage: ((event: { data: any }) => void) | null;
}

export type BroadcastChannelFactory = new (name: string) => BroadcastChannelLike;

/** An object with add/removeEventListener, such as `window` or `document`. */
export interface EventTargetLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

/** The part of `window` the client watches: online/offline and page visibility. */
export interface WindowLike extends EventTargetLike {
  navigator?: { onLine?: boolean };
  document?: EventTargetLike & { visibilityState?: string };
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
  /**
   * Transports the client may use, best first: it starts with the first that
   * is allowed and available, falls back to the next when one fails, and
   * comes back to a better one every `retryIntervalMs`. Default
   * ['websocket', 'sse', 'polling'].
   */
  transports?: Transport[];
  /** Start after this event id, e.g. from GET /v1/head rendered into the page. */
  cursor?: string | null;
  /** Called on every change of state, and on every event. */
  onStateChange?: (state: HybridState) => void;

  /**
   * How long a WebSocket may take to subscribe, or an SSE stream to send
   * `ready`, before it counts as held up by a proxy: the client then falls
   * back to the next transport at once. Default 10000.
   */
  openTimeoutMs?: number;
  /** Attempts of a WebSocket or SSE that fail in a row before falling back to the next transport. Default 3. */
  failuresBeforeFallback?: number;
  /** While on a fallback, how often to try the better transports again. Default 60000. */
  retryIntervalMs?: number;
  /** @deprecated The name of openTimeoutMs before the WebSocket. */
  sseOpenTimeoutMs?: number;
  /** @deprecated The name of failuresBeforeFallback before the WebSocket. */
  sseFailuresBeforePolling?: number;
  /** @deprecated The name of retryIntervalMs before the WebSocket. */
  sseRetryIntervalMs?: number;
  /** How long the server may hold a long-poll, in seconds (at most 30). Default 25. */
  pollTimeoutS?: number;
  /** Exponential backoff with full jitter between failed attempts. Default {initialMs: 500, maxMs: 30000}. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Share one connection between the tabs of this origin (Web Locks + BroadcastChannel). Default true. */
  shareAcrossTabs?: boolean;

  /** Injectable for tests and other runtimes; default the global ones. */
  clock?: Clock;
  fetch?: FetchLike;
  /** null means "there is no EventSource": SSE is skipped. */
  EventSource?: EventSourceFactory | null;
  /** null means "there is no WebSocket": the WebSocket transport is skipped. */
  WebSocket?: WebSocketFactory | null;
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
  readonly connectionId: string | null;
  /** Drops the connection and connects again at once, on the best transport first. */
  reconnect(): void;
  /**
   * publish sends a client event (type `client-…`) to the channel's other
   * subscribers, and resolves to its id. The token's `publish` claim must
   * name the channel and the tenant must allow client events; otherwise it
   * rejects with a HybridError whose `code` says why. This client does not
   * get the event back.
   */
  publish(channel: string, type: string, data?: unknown): Promise<string>;
  /** presence returns the members of a presence channel the client subscribes to. */
  presence<I = unknown>(channel: string): Presence<I>;
  /** Stops for good: closes the connection and every timer. */
  close(): void;
  /** Calls listener on every change of state; returns the function that stops it. */
  subscribe(listener: (state: HybridState) => void): () => void;
}

export type { HybridError };
