// The transport state machine: one connection to the service, over
// hybridrt's WebSocket protocol, SSE or long-polling, whichever works best
// here, with one cursor across all three. It knows nothing of windows, tabs
// or handlers; everything it touches (the clock, fetch, EventSource,
// WebSocket, randomness) is injected, so tests drive it deterministically
// with a fake clock.
//
// # Modes
//
// `mode` is the transport to use, from the allowed ones in their order
// (websocket, sse, polling by default). It moves to the next one when the
// current one failed to open failuresBeforeFallback times in a row, or
// opened but said nothing in time (a WebSocket accepted by a proxy that
// passes nothing, an SSE stream that a proxy buffers: no point in retrying
// at once), or went silent too often. While on a fallback, a "probe" of the
// best transport is opened every retryIntervalMs beside the current one;
// if it fails, the next better one is probed at once. A probe that comes
// live (a WebSocket's `subscribed`, an SSE `ready`) becomes the connection,
// and only then is the old one closed, so the switch loses nothing.
//
// # Ordering and loss
//
// Each transport delivers, in order and without gaps, every event after the
// position it was started from, and each is started from a position at or
// before the cursor. So dropping every event whose id is not after the cursor
// delivers each event once, in order, whichever transport gets it first.
//
// # Heartbeats
//
// The server's SSE heartbeats are `: ping` comment lines, which EventSource
// does not surface. A quiet stream therefore looks the same as a dead one,
// and the silence watchdog only acts once the server has shown it sends
// heartbeats as `ping` events; otherwise only the `ready` deadline protects
// against a buffering proxy. On the WebSocket the client pings a quiet
// connection itself and every pong counts.

import { Backoff } from './backoff.js';
import { HybridError, retryAfterMs, toHybridError } from './errors.js';
import { before, compareIds, isAfter, isId } from './ids.js';
import { decodeTokenTimes, tokenSchedule } from './jwt.js';
import type {
  Clock, EventSourceFactory, EventSourceLike, FetchLike, HybridEvent, Member, MessageLike, Transport, WebSocketFactory,
  WebSocketLike,
} from './types.js';

/** Silence longer than this many heartbeats means the stream is dead or buffered. */
export const HEARTBEAT_SILENCE_FACTOR = 2.5;
/** A long-poll that has not answered this long after its timeout is aborted. */
export const POLL_GRACE_MS = 10_000;
/** An empty poll answer quicker than this is not polled again at once (a server that does not hold). */
export const POLL_MIN_HOLD_MS = 1_000;
/** A token this close to its expiry is not used for a new request. */
export const TOKEN_EXPIRY_MARGIN_MS = 5_000;
/** Renewals are never closer together than this (a floor against renewal storms). */
export const MIN_RENEW_DELAY_MS = 1_000;
/**
 * After an SSE stream breaks, the browser waits the server's `retry:` before it
 * reconnects: 2 s, or up to 5 s when an instance shuts down. The `ready`
 * deadline of that reconnect starts after this grace, so a plain drop is not
 * mistaken for a buffering proxy.
 */
export const RECONNECT_GRACE_MS = 5_000;
/** Default heartbeat when `ready` names none, in seconds; the WebSocket's ping interval too. */
export const DEFAULT_HEARTBEAT_S = 15;
/** The subprotocol of /api/realtime/ws (docs/protocol.md). */
export const WS_SUBPROTOCOL = 'hybridrt.v1';
/** How long a client event sent over the WebSocket may wait for its `published`. */
export const PUBLISH_TIMEOUT_MS = 10_000;
/** How many ids of its own client events the client remembers, to drop them if they come back. */
const OWN_IDS = 1000;

const CLOSED = 2; // EventSource.CLOSED
const PRESENCE_OPS = new Set(['presence', 'member_added', 'member_removed']);
const SYSTEM_TYPES = new Set(['ready', 'resync', 'token_expired', 'ping', '*', ...PRESENCE_OPS]);
const ORDER: Transport[] = ['websocket', 'sse', 'polling'];

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
  backoff: { initialMs: number; maxMs: number };
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
export type PresenceMessage =
  | { kind: 'presence'; channel: string; members: Member[] }
  | { kind: 'member_added' | 'member_removed'; channel: string; member: Member };

/** What a Machine reports: each new event (deduped, in order), presence, and each change of state. */
export interface MachineHooks {
  onEvent(event: HybridEvent): void;
  onPresence?(message: PresenceMessage): void;
  onChange(): void;
}

interface Token {
  value: string;
  expiresAt: number | null; // local clock; null when the token has no exp
  renewAt: number | null;
}

/** A client event sent over a WebSocket, waiting for its answer. */
interface Pending {
  resolve(id: string): void;
  reject(err: HybridError): void;
  timer: unknown;
}

/** One EventSource or WebSocket and what is known of it. */
interface Stream {
  kind: 'websocket' | 'sse';
  es: EventSourceLike | null;
  ws: WebSocketLike | null;
  probe: boolean; // opened while on a fallback, to see whether a better transport works again
  ready: boolean; // live: SSE sent ready, the WebSocket subscribed
  liveAt: number; // when it came live (local clock)
  connectionId: string | null;
  heartbeatMs: number;
  from: string | null; // the cursor it was opened with
  ticketExpiresAt: number | null;
  tokenValue: string | null; // the token the server holds for this stream
  renewingTo: string | null; // a token sent over the WebSocket, not yet acknowledged
  openTimer: unknown;
  watchdog: unknown;
  pinger: unknown;
  pending: Map<string, Pending>;
  done: boolean;
}

/** One long-poll request. */
interface Poll {
  controller: AbortController;
  guard: unknown;
  done: boolean;
}

/**
 * newPollId makes the connection id a polling client gives the server: random
 * from the platform's CSPRNG where there is one, and never from cfg.random,
 * whose rolls belong to the backoff (tests script them).
 */
function newPollId(): string {
  const words = new Uint32Array(4);
  const c = (globalThis as { crypto?: { getRandomValues?(a: Uint32Array): Uint32Array } }).crypto;
  if (c?.getRandomValues) c.getRandomValues(words);
  else for (let i = 0; i < words.length; i++) words[i] = Math.floor(Math.random() * 0x100000000);
  let id = 'c_poll';
  for (const w of words) id += w.toString(36);
  return id;
}

/** Machine runs one connection; see the file comment. */
export class Machine {
  connected = false;
  method: Transport | null = null;
  error: HybridError | null = null;
  cursor: string | null;

  private mode: Transport | null;
  private running = false;
  private paused = false;
  private closed = false;
  private halted = false; // a 400: retrying cannot help until reconnect()

  private stream: Stream | null = null;
  private probe: Stream | null = null;
  private poll: Poll | null = null;
  private pollWarm = false; // a poll has answered since polling (re)started
  private readonly pollId: string; // the connection id the polls give, for presence and client events
  private retryTimer: unknown = null;
  private probeTimer: unknown = null;
  private renewTimer: unknown = null;

  private token: Token | null = null;
  private tokenPromise: Promise<Token> | null = null;
  private readonly backoff: Backoff;
  private failures = 0; // of the current mode's attempts, in a row
  private visibleHeartbeats = false; // the server sends SSE `ping` events we can see
  private expiredSinceReady = false;
  private resyncedFrom: string | null | undefined = undefined;
  private pendingResync: string | null = null;
  private readonly own = new Set<string>(); // ids of client events this client sent
  private refs = 0;

  constructor(private readonly cfg: MachineConfig, private readonly hooks: MachineHooks) {
    this.cursor = cfg.cursor;
    this.backoff = new Backoff(cfg.backoff.initialMs, cfg.backoff.maxMs, cfg.random);
    this.mode = this.preferred();
    this.pollId = newPollId();
  }

  /** connectionId is the service's id of the live connection, or of the polls while polling. */
  get connectionId(): string | null {
    if (this.stream?.ready) return this.stream.connectionId;
    if (this.method === 'polling' && this.connected) return this.pollId;
    return null;
  }

  /** start connects, unless paused. */
  start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.connect();
  }

  /** close stops for good. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.running = false;
    this.teardown();
    this.clear('renewTimer');
    this.connected = false;
    this.method = null;
    this.changed();
  }

  /** pause drops the connection until resume (the browser went offline). */
  pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.teardown();
    this.clear('renewTimer');
    this.connected = false;
    this.method = null;
    this.changed();
  }

  /** resume connects again after pause, on the best transport first, with a fresh backoff. */
  resume(): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.resetPreference();
    if (this.token?.renewAt != null) this.scheduleRenewal(this.token.renewAt);
    this.connect();
  }

  /** reconnect drops the connection and connects again at once, on the best transport first. */
  reconnect(): void {
    if (this.closed) return;
    this.teardown();
    this.connected = false;
    this.halted = false;
    this.error = null;
    this.resetPreference();
    this.connect();
  }

  /** wake connects now if a retry is waiting (the page became visible). */
  wake(): void {
    if (this.retryTimer !== null && !this.paused && !this.closed) this.connect();
  }

  // --- choosing a transport -------------------------------------------------

  /** usable lists the transports allowed and available here, best first. */
  private usable(): Transport[] {
    const ok = (t: Transport) =>
      (t === 'websocket' && this.cfg.WebSocket !== null) || (t === 'sse' && this.cfg.EventSource !== null) || t === 'polling';
    return [...new Set(this.cfg.transports)].filter((t) => ORDER.includes(t) && ok(t));
  }

  private preferred(): Transport | null {
    return this.usable()[0] ?? null;
  }

  /** after returns the transport to fall back to from t, or null. */
  private after(t: Transport | null): Transport | null {
    const u = this.usable();
    const i = t === null ? -1 : u.indexOf(t);
    return i >= 0 ? (u[i + 1] ?? null) : null;
  }

  /** better reports whether t comes before the current mode. */
  private better(t: Transport): boolean {
    const u = this.usable();
    return this.mode !== null && u.indexOf(t) >= 0 && u.indexOf(t) < u.indexOf(this.mode);
  }

  private resetPreference(): void {
    this.failures = 0;
    this.backoff.reset();
    this.mode = this.preferred();
  }

  private connect(): void {
    this.clear('retryTimer');
    if (!this.running || this.paused || this.closed || this.halted) return;
    if (this.mode === null) {
      this.halt(new HybridError(this.cfg.transports.length === 0
        ? 'no transport: transports is empty'
        : `no transport: none of ${this.cfg.transports.join(', ')} is available here (no WebSocket or EventSource, and polling not allowed)`));
      return;
    }
    this.method = this.mode;
    if (this.mode === 'websocket') {
      if (!this.stream) void this.openSocket(false);
    } else if (this.mode === 'sse') {
      if (!this.stream) void this.openStream(false);
    } else {
      this.startPolling();
    }
    if (!this.probe && this.probeTimer === null) this.scheduleProbe();
    this.changed();
  }

  /** fallBack moves to the next transport from the cursor, and tries the better ones again later. */
  private fallBack(): void {
    const next = this.after(this.mode);
    if (next === null) {
      this.scheduleRetry();
      return;
    }
    this.mode = next;
    this.failures = 0;
    this.connected = false;
    this.connect();
  }

  /** failed counts a failed attempt of the current mode and falls back or retries. */
  private failed(atLeastMs = 0): void {
    this.failures++;
    if (this.failures >= this.cfg.failuresBeforeFallback && this.after(this.mode) !== null) this.fallBack();
    else this.scheduleRetry(atLeastMs);
  }

  /** scheduleRetry connects again after a backoff wait (at least atLeastMs). */
  private scheduleRetry(atLeastMs = 0, keepConnected = false): void {
    if (this.closed || this.paused || this.halted) return;
    this.clear('retryTimer');
    if (!keepConnected) this.connected = false;
    const delay = this.backoff.next(atLeastMs);
    this.retryTimer = this.cfg.clock.setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
    this.changed();
  }

  private halt(err: HybridError): void {
    this.halted = true;
    this.teardown();
    this.connected = false;
    this.error = err;
    this.changed();
  }

  /** teardown closes every transport and pending attempt, but keeps the token. */
  private teardown(): void {
    this.closeStream(this.stream);
    this.closeStream(this.probe);
    this.stopPolling();
    this.clear('retryTimer');
    this.clear('probeTimer');
  }

  /** newStream registers a stream (or probe) about to open. */
  private newStream(kind: Stream['kind'], probe: boolean): Stream {
    const s: Stream = {
      kind, es: null, ws: null, probe, ready: false, liveAt: 0, connectionId: null, heartbeatMs: DEFAULT_HEARTBEAT_S * 1000,
      from: null, ticketExpiresAt: null, tokenValue: null, renewingTo: null, openTimer: null, watchdog: null, pinger: null,
      pending: new Map(), done: false,
    };
    if (probe) this.probe = s;
    else this.stream = s;
    return s;
  }

  /** live marks a stream live: connected, and a probe becomes the stream. */
  private live(s: Stream): void {
    this.cfg.clock.clearTimeout(s.openTimer);
    s.openTimer = null;
    s.ready = true;
    s.liveAt = this.cfg.clock.now();
    if (s.probe) this.promote(s);
    this.expiredSinceReady = false;
    this.backoff.reset();
    this.mode = s.kind;
    this.method = s.kind;
    this.connected = true;
    this.error = null;
    this.armWatchdog(s);
    if (!this.probe && this.probeTimer === null) this.scheduleProbe();
    if (this.pendingResync !== null && this.cursor !== null) {
      // It started over from the head, where the cursor now is.
      const reason = this.pendingResync;
      this.pendingResync = null;
      this.resync(null, this.cursor, reason);
    }
    this.changed();
  }

  /** promote makes a probe that came live the stream, and only then closes the old one. */
  private promote(s: Stream): void {
    this.probe = null;
    s.probe = false;
    this.closeStream(this.stream);
    this.stream = s;
    this.stopPolling();
    this.clear('retryTimer');
    this.clear('probeTimer');
    this.failures = 0;
  }

  private armOpenTimer(s: Stream, graceMs = 0): void {
    this.cfg.clock.clearTimeout(s.openTimer);
    s.openTimer = this.cfg.clock.setTimeout(() => this.onOpenTimeout(s), this.cfg.openTimeoutMs + graceMs);
  }

  private armWatchdog(s: Stream): void {
    this.cfg.clock.clearTimeout(s.watchdog);
    s.watchdog = this.cfg.clock.setTimeout(() => this.onSilence(s), HEARTBEAT_SILENCE_FACTOR * s.heartbeatMs);
    if (s.kind === 'websocket') {
      // Browsers cannot send WebSocket pings; the protocol has its own.
      this.cfg.clock.clearTimeout(s.pinger);
      s.pinger = this.cfg.clock.setTimeout(() => this.send(s, { op: 'ping' }), s.heartbeatMs);
    }
  }

  private onOpenTimeout(s: Stream): void {
    if (s.done) return;
    this.closeStream(s);
    if (s.probe) {
      this.probeFailed(s);
      return;
    }
    // Open but silent: a proxy is most likely buffering the stream (or
    // holding the WebSocket and passing nothing), and will do so on the next
    // try too. Fall back from the same cursor instead.
    this.failures++;
    this.connected = false;
    this.error = new HybridError(s.kind === 'sse'
      ? `no ready event within ${this.cfg.openTimeoutMs} ms: a proxy may be buffering the stream`
      : `the WebSocket did not subscribe within ${this.cfg.openTimeoutMs} ms: a proxy may be holding it`, { transport: s.kind });
    if (this.after(this.mode) !== null) this.fallBack();
    else this.scheduleRetry();
  }

  private onSilence(s: Stream): void {
    if (s.done || !s.ready) return;
    if (s.kind === 'sse' && !this.visibleHeartbeats) {
      // Comment heartbeats are invisible to EventSource: a quiet stream that
      // stayed open this long is as healthy as can be told.
      this.failures = 0;
      return;
    }
    this.closeStream(s);
    this.connected = false;
    this.error = new HybridError(`no heartbeat for ${(HEARTBEAT_SILENCE_FACTOR * s.heartbeatMs) / 1000} s`, { transport: s.kind });
    this.failures++;
    if (this.failures >= this.cfg.failuresBeforeFallback && this.after(this.mode) !== null) this.fallBack();
    else if (this.failures >= this.cfg.failuresBeforeFallback) this.scheduleRetry();
    else this.connect();
  }

  private closeStream(s: Stream | null): void {
    if (!s || s.done) return;
    s.done = true;
    this.cfg.clock.clearTimeout(s.openTimer);
    this.cfg.clock.clearTimeout(s.watchdog);
    this.cfg.clock.clearTimeout(s.pinger);
    s.es?.close();
    if (s.ws) {
      s.ws.onopen = s.ws.onmessage = s.ws.onclose = s.ws.onerror = null;
      try {
        s.ws.close(1000);
      } catch {
        // already closing
      }
    }
    for (const p of s.pending.values()) {
      this.cfg.clock.clearTimeout(p.timer);
      p.reject(new HybridError('the WebSocket closed before the client event was acknowledged; it may or may not have been sent', { transport: 'websocket' }));
    }
    s.pending.clear();
    if (this.stream === s) this.stream = null;
    if (this.probe === s) this.probe = null;
  }

  /** scheduleProbe tries the best transport again after retryIntervalMs, while on a fallback. */
  private scheduleProbe(): void {
    this.clear('probeTimer');
    const best = this.preferred();
    if (best === null || best === 'polling' || !this.better(best)) return;
    if (this.closed || this.paused || this.halted) return;
    this.probeTimer = this.cfg.clock.setTimeout(() => {
      this.probeTimer = null;
      if (!this.probe && !this.closed && !this.paused) this.openProbe(best);
    }, this.cfg.retryIntervalMs);
  }

  private openProbe(t: Transport): void {
    if (!this.better(t)) return;
    if (t === 'websocket') void this.openSocket(true);
    else if (t === 'sse') void this.openStream(true);
  }

  /** probeFailed probes the next better transport at once, or waits for the next round. */
  private probeFailed(s: Stream): void {
    this.closeStream(s);
    const next = this.after(s.kind);
    if (next !== null && next !== 'polling' && this.better(next) && !this.closed && !this.paused && !this.halted) {
      this.openProbe(next);
      return;
    }
    this.scheduleProbe();
  }

  // --- SSE ---------------------------------------------------------------------

  private async openStream(probe: boolean): Promise<void> {
    const s = this.newStream('sse', probe);
    let ticket: string;
    let token: Token;
    try {
      [ticket, token] = await this.authorized(async (t) => {
        const body = await this.request('POST', '/api/realtime/tickets', t.value, 'sse');
        if (typeof body?.ticket !== 'string') throw new HybridError('the tickets endpoint answered without a ticket', { transport: 'sse' });
        return [body.ticket as string, t] as const;
      }, 'sse');
    } catch (err) {
      if (s.done) return;
      this.streamFailed(s, toHybridError(err, 'sse'));
      return;
    }
    if (s.done) return;
    s.from = this.cursor;
    s.ticketExpiresAt = token.expiresAt;
    s.tokenValue = token.value;
    const es = new this.cfg.EventSource!(this.streamURL(ticket, s.from));
    s.es = es;
    es.addEventListener('ready', (m) => this.onReady(s, m));
    es.addEventListener('resync', (m) => this.onResync(s, m));
    es.addEventListener('token_expired', () => this.onTokenExpired(s));
    es.addEventListener('ping', () => this.onPing(s));
    es.addEventListener('error', () => this.onStreamError(s));
    for (const op of PRESENCE_OPS) es.addEventListener(op, (m) => this.onPresence(s, op, parseJSON(m.data)));
    const types = new Set(['message', ...this.cfg.eventTypes]);
    for (const type of types) {
      if (!SYSTEM_TYPES.has(type)) es.addEventListener(type, (m) => this.onMessage(s, m));
    }
    this.armOpenTimer(s);
  }

  private streamURL(ticket: string, from: string | null): string {
    let u = `${this.cfg.url}/api/realtime/sse?channels=${this.channelParam()}&ticket=${encodeURIComponent(ticket)}`;
    if (from !== null) u += `&lastEventId=${from}`;
    return u;
  }

  private channelParam(): string {
    return this.cfg.channels.map(encodeURIComponent).join(',');
  }

  private onReady(s: Stream, m: MessageLike): void {
    if (s.done) return;
    const d = parseJSON(m.data) ?? {};
    s.connectionId = typeof d.connectionId === 'string' ? d.connectionId : null;
    const hb = typeof d.heartbeat === 'number' && d.heartbeat > 0 ? d.heartbeat : DEFAULT_HEARTBEAT_S;
    s.heartbeatMs = hb * 1000;
    // Without a cursor the stream starts at the head; that is our start too.
    if (this.cursor === null && isId(d.cursor)) this.cursor = d.cursor;
    this.live(s);
    // Where heartbeats are visible, a stream only proves healthy by living
    // past ready; a proxy may pass the first bytes and buffer the rest.
    if (!this.visibleHeartbeats) this.failures = 0;
    // The browser's own reconnect reuses the ticket, and with it the token
    // the ticket was issued for; hand the stream the newer one we have.
    const t = this.usableToken();
    if (t && t.value !== s.tokenValue) void this.renewStream(s, t);
  }

  private onMessage(s: Stream, m: MessageLike): void {
    if (s.done) return;
    this.alive(s);
    const env = parseJSON(m.data);
    if (isEnvelope(env)) this.deliver(env);
  }

  private onPing(s: Stream): void {
    if (s.done) return;
    this.visibleHeartbeats = true;
    this.alive(s);
  }

  /** alive notes a sign of life on a stream. */
  private alive(s: Stream): void {
    if (!s.ready) return;
    this.armWatchdog(s);
    if (s.kind === 'sse' && this.visibleHeartbeats) this.failures = 0;
  }

  private onResync(s: Stream, m: MessageLike): void {
    if (s.done) return;
    this.alive(s);
    const d = parseJSON(m.data) ?? {};
    const to = isId(d.cursor) ? d.cursor : isId(m.lastEventId) ? m.lastEventId : null;
    if (to !== null) this.resync(s.from, to, typeof d.reason === 'string' ? d.reason : RESYNC_REASON);
  }

  /** onPresence hands on a presence message of the live stream (a probe's come again once it is live). */
  private onPresence(s: Stream, op: string, d: any): void {
    if (s.done || s.probe) return;
    this.alive(s);
    const m = toPresence(op, d);
    if (m) this.hooks.onPresence?.(m);
  }

  private onTokenExpired(s: Stream): void {
    if (s.done) return;
    this.dropToken();
    if (s.probe) {
      this.probeFailed(s);
      return;
    }
    this.closeStream(s);
    this.connected = false;
    // Get a new token and resume from the cursor at once; but if that
    // happens again before a ready, wait, or a bad getToken spins.
    if (this.expiredSinceReady) {
      this.scheduleRetry();
    } else {
      this.expiredSinceReady = true;
      this.connect();
    }
  }

  private onStreamError(s: Stream): void {
    if (s.done || !s.es) return;
    const closed = s.es.readyState === CLOSED;
    // The browser reconnects by itself (with Last-Event-ID) unless CLOSED,
    // reusing the ticket, which dies with the token it was issued for.
    const ticketDead = s.ticketExpiresAt !== null && this.cfg.clock.now() >= s.ticketExpiresAt - TOKEN_EXPIRY_MARGIN_MS;
    if (s.ready) {
      // A working stream broke: not a failure to open. The backoff was
      // reset at ready, so an own reconnect comes soon.
      s.ready = false;
      s.connectionId = null;
      this.cfg.clock.clearTimeout(s.watchdog);
      this.connected = false;
      if (closed || ticketDead) {
        this.closeStream(s);
        this.scheduleRetry();
      } else {
        this.armOpenTimer(s, RECONNECT_GRACE_MS); // the browser reconnects after retry:
        this.changed();
      }
      return;
    }
    if (s.probe) {
      this.probeFailed(s);
      return;
    }
    this.error = new HybridError('the SSE connection failed', { transport: 'sse' });
    if (closed || ticketDead || this.failures + 1 >= this.cfg.failuresBeforeFallback) {
      this.closeStream(s);
      this.failed();
    } else {
      this.failures++;
      this.armOpenTimer(s, RECONNECT_GRACE_MS); // the browser reconnects after retry:
      this.changed();
    }
  }

  /** streamFailed handles an attempt that failed before its EventSource or WebSocket existed. */
  private streamFailed(s: Stream, err: HybridError): void {
    if (s.probe) {
      this.probeFailed(s);
      return;
    }
    this.closeStream(s);
    this.error = err;
    if (err.status === 401 || err.status === 403) this.dropToken();
    // getToken failing says nothing about the transport; anything else counts against it.
    if (err.code === TOKEN_UNAVAILABLE) this.scheduleRetry(err.retryAfterMs ?? 0);
    else this.failed(err.retryAfterMs ?? 0);
  }

  // --- WebSocket (hybridrt.v1) -----------------------------------------------------

  private async openSocket(probe: boolean): Promise<void> {
    const s = this.newStream('websocket', probe);
    let token: Token;
    try {
      token = this.usableToken() ?? (await this.fetchToken('websocket'));
    } catch (err) {
      if (s.done) return;
      this.streamFailed(s, toHybridError(err, 'websocket'));
      return;
    }
    if (s.done) return;
    s.tokenValue = token.value;
    let ws: WebSocketLike;
    try {
      // The token goes in the first message, never in the URL (URLs end up in logs).
      ws = new this.cfg.WebSocket!(`${this.cfg.url.replace(/^http/, 'ws')}/api/realtime/ws`, [WS_SUBPROTOCOL]);
    } catch (err) {
      this.streamFailed(s, toHybridError(err, 'websocket'));
      return;
    }
    s.ws = ws;
    ws.onopen = () => this.send(s, { op: 'auth', token: token.value });
    ws.onmessage = (m) => this.onSocketMessage(s, m.data);
    ws.onclose = (c) => this.onSocketClose(s, c.code, c.reason);
    ws.onerror = () => {}; // a close follows, with its code
    this.armOpenTimer(s);
  }

  /** send sends a message on a WebSocket; a failure shows as its close. */
  private send(s: Stream, m: Record<string, unknown>): void {
    if (s.done || !s.ws) return;
    try {
      s.ws.send(JSON.stringify(m));
    } catch {
      // closing: onclose follows
    }
    if (m.op === 'ping' && s.ready) {
      this.cfg.clock.clearTimeout(s.pinger);
      s.pinger = null;
    }
  }

  private onSocketMessage(s: Stream, data: unknown): void {
    if (s.done) return;
    const m = parseJSON(data);
    if (!m || typeof m.op !== 'string') return;
    this.alive(s);
    switch (m.op) {
      case 'ready':
        s.connectionId = typeof m.connectionId === 'string' ? m.connectionId : null;
        // Without a cursor the connection starts at the head; that is our start too.
        if (this.cursor === null && isId(m.cursor)) this.cursor = m.cursor;
        s.from = this.cursor;
        this.send(s, { op: 'subscribe', ref: 'subscribe', channels: this.cfg.channels, ...(s.from !== null ? { cursor: s.from } : {}) });
        return;
      case 'event':
        if (isEnvelope(m.event)) this.deliver(m.event);
        return;
      case 'resync':
        if (isId(m.cursor)) this.resync(s.from, m.cursor, RESYNC_REASON);
        return;
      case 'subscribed':
        if (m.ref === 'subscribe' && !s.ready) this.onSocketLive(s);
        return;
      case 'presence':
      case 'member_added':
      case 'member_removed':
        this.onPresence(s, m.op, m);
        return;
      case 'published':
        this.settle(s, m.ref, isId(m.id) ? m.id : null, null);
        return;
      case 'token_renewed':
        if (s.renewingTo !== null) s.tokenValue = s.renewingTo;
        s.renewingTo = null;
        return;
      case 'token_expired':
        this.onTokenExpired(s);
        return;
      case 'ping':
        this.send(s, { op: 'pong' });
        return;
      case 'error':
        this.onSocketError(s, m);
        return;
    }
  }

  private onSocketLive(s: Stream): void {
    this.live(s);
    // The token may have been renewed while this one opened.
    const t = this.usableToken();
    if (t && t.value !== s.tokenValue) this.renewSocket(s, t);
  }

  /** onSocketError takes an `error` answer: to the subscribe, a renewal or a client event. */
  private onSocketError(s: Stream, m: any): void {
    const code = typeof m.code === 'string' ? m.code : null;
    const message = typeof m.message === 'string' ? m.message : 'the service refused the message';
    const err = new HybridError(`WebSocket: ${message}`, { status: statusOf(code), code, transport: 'websocket' });
    if (m.ref === 'subscribe') {
      if (code === 'cursor_ahead') {
        // Our cursor is past the tenant's head (its events were reset): start
        // again from the head, and tell the app to reload its state.
        this.closeStream(s);
        this.startOverFromHead();
        return;
      }
      if (code === 'rate_limited' || code === 'presence_full') {
        this.closeStream(s);
        this.error = err;
        if (s.probe) this.probeFailed(s);
        else this.scheduleRetry();
        return;
      }
      this.halt(err); // channels the token does not allow: retrying cannot help
      return;
    }
    if (m.ref === 'token') {
      s.renewingTo = null;
      this.error = err;
      this.changed();
      // Try again well before the old token ends; token_expired covers the rest.
      this.scheduleRenewal(this.cfg.clock.now() + this.cfg.backoff.initialMs * 4);
      return;
    }
    if (typeof m.ref === 'string') this.settle(s, m.ref, null, err);
  }

  private onSocketClose(s: Stream, code: number, reason: string): void {
    if (s.done) return;
    const wasLive = s.ready;
    const lived = wasLive ? this.cfg.clock.now() - s.liveAt : 0;
    if (code === 4001) {
      this.onTokenExpired(s); // no valid token in time, or it expired or its key was revoked
      return;
    }
    if (s.probe) {
      this.probeFailed(s);
      return;
    }
    this.closeStream(s);
    this.connected = false;
    const why = reason ? `${code} ${reason}` : String(code);
    switch (code) {
      case 4003:
      case 4029:
      case 1011:
      case 1012:
        // The service answered: the transport works. Back off and reconnect
        // (to another instance, after 1012).
        this.error = new HybridError(`the WebSocket was closed: ${why}`, { status: code === 4003 ? 403 : code === 4029 ? 429 : 503, transport: 'websocket' });
        this.scheduleRetry(code === 4003 ? this.cfg.backoff.maxMs : 0);
        return;
    }
    this.error = new HybridError(wasLive ? `the WebSocket broke: ${why}` : `the WebSocket failed to open: ${why}`, { transport: 'websocket' });
    if (wasLive && lived >= this.cfg.openTimeoutMs) {
      // A working connection broke: not a failure of the transport. The
      // backoff was reset when it came live, so a reconnect comes soon.
      this.failures = 0;
      this.scheduleRetry();
      return;
    }
    // Refused, or cut off soon after it opened (a proxy that kills
    // WebSockets): count it, and fall back after enough of them.
    this.failed();
  }

  /** renewSocket hands a live WebSocket a fresh token, in place. */
  private renewSocket(s: Stream, token: Token): void {
    if (s.done || !s.ready || s.tokenValue === token.value || s.renewingTo === token.value) return;
    s.renewingTo = token.value;
    this.send(s, { op: 'token', ref: 'token', token: token.value });
  }

  /** settle answers a client event sent over a WebSocket. */
  private settle(s: Stream, ref: unknown, id: string | null, err: HybridError | null): void {
    if (typeof ref !== 'string') return;
    const p = s.pending.get(ref);
    if (!p) return;
    s.pending.delete(ref);
    this.cfg.clock.clearTimeout(p.timer);
    if (id !== null) {
      this.noteOwn(id);
      p.resolve(id);
    } else {
      p.reject(err ?? new HybridError('the service answered a client event without an id', { transport: 'websocket' }));
    }
  }

  // --- long-polling ------------------------------------------------------------

  private startPolling(): void {
    // The first poll after a (re)start asks with timeout=0, so that the
    // server answers at once and the client shows connected without waiting
    // out a long-poll on a quiet channel.
    if (!this.poll) {
      if (!this.connected) this.pollWarm = false;
      void this.pollOnce();
    }
  }

  private async pollOnce(): Promise<void> {
    const p: Poll = { controller: new AbortController(), guard: null, done: false };
    this.poll = p;
    const from = this.cursor;
    const started = this.cfg.clock.now();
    const hold = this.pollWarm ? this.cfg.pollTimeoutS : 0;
    let body: any;
    try {
      body = await this.authorized(async (t) => {
        if (p.done) throw new HybridError('aborted');
        this.cfg.clock.clearTimeout(p.guard);
        p.guard = this.cfg.clock.setTimeout(() => p.controller.abort(), hold * 1000 + POLL_GRACE_MS);
        return this.request('GET', this.pollPath(from, hold), t.value, 'polling', p.controller.signal);
      }, 'polling');
    } catch (err) {
      if (p.done) return;
      this.endPoll(p);
      this.pollFailed(toHybridError(err, 'polling'));
      return;
    }
    if (p.done) return;
    this.endPoll(p);
    const events: unknown[] = Array.isArray(body?.events) ? body.events : [];
    const cursor = isId(body?.cursor) ? body.cursor : null;
    if (body?.presence && typeof body.presence === 'object' && this.hooks.onPresence) {
      // The members as they were when the poll started: the client's list turns them into joins and leaves.
      for (const [channel, members] of Object.entries(body.presence)) {
        const m = toPresence('presence', { channel, members });
        if (m) this.hooks.onPresence(m);
      }
    }
    if (body?.resync === true || this.pendingResync !== null) {
      const first = events.find(isEnvelope);
      const to = first ? before(first.id) : cursor;
      if (to !== null) this.resync(from, to, this.pendingResync ?? RESYNC_REASON);
      this.pendingResync = null;
    }
    // A handler may close, pause or reconnect the client; then the rest of
    // the batch is left to whatever runs next, from the cursor so far.
    const interrupted = () => this.closed || this.paused || this.poll !== null || this.mode !== 'polling';
    for (const e of events) {
      if (interrupted()) return;
      if (isEnvelope(e)) this.deliver(e);
    }
    if (interrupted()) return;
    if (cursor !== null && isAfter(cursor, this.cursor)) this.cursor = cursor; // it looked through to there
    this.backoff.reset();
    this.pollWarm = true;
    this.connected = true;
    this.method = 'polling';
    this.error = null;
    this.changed();
    if (hold > 0 && events.length === 0 && this.cfg.clock.now() - started < POLL_MIN_HOLD_MS) {
      // The server should have held the request; do not spin against it.
      this.scheduleRetry(POLL_MIN_HOLD_MS, true);
    } else {
      void this.pollOnce();
    }
  }

  private pollPath(from: string | null, hold: number): string {
    // connectionId: the polls make this client a presence member, and leave out its own client events.
    let path = `/api/realtime/polling?channels=${this.channelParam()}&timeout=${hold}&connectionId=${this.pollId}`;
    if (from !== null) path += `&cursor=${from}`;
    return path;
  }

  private pollFailed(err: HybridError): void {
    this.error = err;
    this.connected = false;
    if (err.status === 400 && err.code === 'cursor_ahead') {
      this.startOverFromHead();
      return;
    }
    if (err.status === 400) {
      this.halt(err); // bad channels: retrying cannot help
      return;
    }
    if (err.status === 401 || err.status === 403) this.dropToken();
    this.scheduleRetry(err.retryAfterMs ?? 0);
  }

  /**
   * startOverFromHead handles a cursor past the tenant's head (its events
   * were reset): start again from the head, and tell the app to reload its
   * state with the next answer.
   */
  private startOverFromHead(): void {
    this.pendingResync = 'the cursor is past the latest event; reload your state';
    this.resyncedFrom = undefined;
    this.cursor = null;
    this.scheduleRetry();
  }

  private endPoll(p: Poll): void {
    this.cfg.clock.clearTimeout(p.guard);
    if (this.poll === p) this.poll = null;
  }

  private stopPolling(): void {
    const p = this.poll;
    if (!p) return;
    p.done = true;
    this.cfg.clock.clearTimeout(p.guard);
    p.controller.abort();
    this.poll = null;
  }

  // --- delivery ------------------------------------------------------------------

  /** deliver hands on an event that comes after the cursor, and moves the cursor. */
  private deliver(e: HybridEvent): void {
    if (!isAfter(e.id, this.cursor)) return; // seen already, over another transport or before a reconnect
    this.cursor = e.id;
    if (this.own.delete(e.id)) return; // a client event of ours, come back over a connection that did not send it
    this.hooks.onEvent(e);
  }

  /** noteOwn remembers the id of a client event this client sent. */
  private noteOwn(id: string): void {
    if (!isAfter(id, this.cursor)) return;
    this.own.add(id);
    if (this.own.size > OWN_IDS) this.own.delete(this.own.values().next().value!);
  }

  // --- client events -------------------------------------------------------------

  /**
   * publish sends a client event: over the live WebSocket when there is
   * one, else with POST /api/realtime/publish naming connectionId (this
   * machine's connection when it has one), so that the sender's connection
   * leaves the event out.
   */
  async publish(channel: string, type: string, data: unknown, connectionId: string | null = this.connectionId): Promise<string> {
    if (this.closed) throw new HybridError('the client is closed');
    const s = this.stream;
    if (s && s.kind === 'websocket' && s.ready && s.ws) {
      const ref = `p${++this.refs}`;
      return new Promise<string>((resolve, reject) => {
        const timer = this.cfg.clock.setTimeout(() => {
          s.pending.delete(ref);
          reject(new HybridError(`no answer to the client event within ${PUBLISH_TIMEOUT_MS} ms`, { transport: 'websocket' }));
        }, PUBLISH_TIMEOUT_MS);
        s.pending.set(ref, { resolve, reject, timer });
        this.send(s, { op: 'publish', ref, channel, type, ...(data !== undefined ? { data } : {}) });
      });
    }
    const transport = this.method;
    const body: Record<string, unknown> = { channel, type };
    if (data !== undefined) body.data = data;
    if (connectionId !== null) body.connectionId = connectionId;
    const answer = await this.authorized((t) => this.request('POST', '/api/realtime/publish', t.value, transport, undefined, JSON.stringify(body)), transport);
    const id = Array.isArray(answer?.ids) ? answer.ids[0] : null;
    if (!isId(id)) throw new HybridError('POST /api/realtime/publish answered without an id', { transport });
    this.noteOwn(id);
    return id;
  }

  /**
   * resync tells the app that events between `from` and `to` were lost to
   * retention. Both transports may say so for the same gap; it is said once.
   */
  private resync(from: string | null, to: string, reason: string): void {
    if (this.resyncedFrom !== undefined && this.resyncedFrom === from) return;
    if (this.cursor !== null && !isAfter(to, this.cursor) && from !== null) return;
    this.resyncedFrom = from;
    this.cursor = to;
    this.hooks.onEvent({
      id: to, channel: '', type: 'resync',
      data: { cursor: to, reason },
      time: new Date(this.cfg.clock.now()).toISOString(),
    });
  }

  // --- tokens --------------------------------------------------------------------

  /**
   * authorized runs fn with a token. On a 401 with a token that was cached,
   * it gets a fresh one and runs fn once more.
   */
  private async authorized<T>(fn: (t: Token) => Promise<T>, transport: Transport | null): Promise<T> {
    const cached = this.usableToken();
    const t = cached ?? (await this.fetchToken(transport));
    try {
      return await fn(t);
    } catch (err) {
      if (!(err instanceof HybridError && err.status === 401) || !cached) throw err;
      this.dropToken(t);
      return fn(await this.fetchToken(transport));
    }
  }

  private usableToken(): Token | null {
    const t = this.token;
    if (!t) return null;
    if (t.expiresAt !== null && this.cfg.clock.now() >= t.expiresAt - TOKEN_EXPIRY_MARGIN_MS) return null;
    return t;
  }

  private dropToken(t: Token | null = this.token): void {
    if (t && this.token === t) this.token = null;
  }

  /** fetchToken calls getToken (once for concurrent callers) and schedules the renewal. */
  private fetchToken(transport: Transport | null = null): Promise<Token> {
    if (this.tokenPromise) return this.tokenPromise;
    const p = (async () => {
      let value: unknown;
      try {
        value = await this.cfg.getToken();
      } catch (err) {
        const e = toHybridError(err, transport);
        throw new HybridError(`getToken failed: ${e.message}`, { transport, code: TOKEN_UNAVAILABLE });
      }
      if (typeof value !== 'string' || value === '') {
        throw new HybridError('getToken must resolve to a JWT string', { transport, code: TOKEN_UNAVAILABLE });
      }
      const now = this.cfg.clock.now();
      const when = tokenSchedule(decodeTokenTimes(value), now);
      const token: Token = { value, expiresAt: when?.expiresAt ?? null, renewAt: when?.renewAt ?? null };
      if (when && this.token?.value === value) {
        // The backend handed back the token we have (it caches them): ask
        // again halfway to its expiry, not every few seconds.
        token.renewAt = Math.max(when.renewAt, now + (when.expiresAt - now) / 2);
      }
      if (!this.closed) {
        this.token = token;
        if (token.renewAt !== null) this.scheduleRenewal(token.renewAt);
      }
      return token;
    })();
    this.tokenPromise = p;
    const clear = () => {
      if (this.tokenPromise === p) this.tokenPromise = null;
    };
    p.then(clear, clear);
    return p;
  }

  private scheduleRenewal(at: number): void {
    this.clear('renewTimer');
    if (this.closed || this.paused) return;
    const delay = Math.max(MIN_RENEW_DELAY_MS, at - this.cfg.clock.now());
    this.renewTimer = this.cfg.clock.setTimeout(() => {
      this.renewTimer = null;
      void this.renew();
    }, delay);
  }

  /** renew gets a fresh token before the current one expires and hands it to the live stream. */
  private async renew(): Promise<void> {
    if (this.closed || this.paused) return;
    let token: Token;
    try {
      token = await this.fetchToken();
    } catch (err) {
      if (this.closed) return;
      this.error = toHybridError(err);
      this.changed();
      this.scheduleRenewal(this.cfg.clock.now() + this.backoff.next()); // a stream that expires meanwhile says token_expired
      return;
    }
    // Polling uses the new token on its next request; a stream between
    // connections gets it at its next ready.
    const s = this.stream;
    if (s && s.ready && s.kind === 'websocket') this.renewSocket(s, token);
    else if (s && s.ready) await this.renewStream(s, token);
  }

  /** renewStream re-authorizes a live stream in place with token. */
  private async renewStream(s: Stream, token: Token): Promise<void> {
    if (s.done || !s.ready || s.connectionId === null || s.tokenValue === token.value) return;
    try {
      await this.request('POST', `/api/realtime/connections/${encodeURIComponent(s.connectionId)}/token`, token.value, 'sse');
      s.tokenValue = token.value;
    } catch (err) {
      if (s.done || this.closed) return;
      const e = toHybridError(err, 'sse');
      if (e.status === 404) return; // the connection is gone; the stream reconnects with the new token
      this.error = e;
      this.changed();
      // Try again well before the old token ends; token_expired covers the rest.
      this.scheduleRenewal(this.cfg.clock.now() + Math.max(e.retryAfterMs ?? 0, this.cfg.backoff.initialMs * 4));
    }
  }

  // --- HTTP ----------------------------------------------------------------------

  private async request(method: string, path: string, token: string, transport: Transport | null, signal?: AbortSignal, body?: string): Promise<any> {
    const headers: Record<string, string> = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await this.cfg.fetch(this.cfg.url + path, { method, headers, signal, body });
    if (res.ok) {
      const text = await res.text();
      return text ? JSON.parse(text) : null;
    }
    let problem: any = null;
    try {
      problem = JSON.parse(await res.text());
    } catch {
      // not problem+json: a proxy's page
    }
    const detail = typeof problem?.detail === 'string' && problem.detail ? problem.detail : typeof problem?.title === 'string' ? problem.title : `HTTP ${res.status}`;
    throw new HybridError(`${method} ${path.split('?')[0]}: ${res.status} ${detail}`, {
      status: res.status,
      code: typeof problem?.code === 'string' ? problem.code : null,
      transport,
      retryAfterMs: retryAfterMs(res.headers.get('Retry-After'), this.cfg.clock.now()),
    });
  }

  // --- small things ----------------------------------------------------------------

  private clear(name: 'retryTimer' | 'probeTimer' | 'renewTimer'): void {
    if (this[name] !== null) this.cfg.clock.clearTimeout(this[name]);
    this[name] = null;
  }

  private changed(): void {
    this.hooks.onChange();
  }
}

/** The code of a HybridError when getToken failed or gave no token. */
export const TOKEN_UNAVAILABLE = 'token_unavailable';

const RESYNC_REASON = 'events before the cursor were lost to retention; reload your state';

function parseJSON(s: unknown): any {
  if (typeof s !== 'string') return null;
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}

/** toPresence reads a presence message (op, its JSON), or returns null. */
function toPresence(op: string, d: any): PresenceMessage | null {
  if (!d || typeof d.channel !== 'string' || d.channel === '') return null;
  const member = (v: any): Member | null => {
    if (!v || typeof v.id !== 'string') return null;
    return v.info === undefined ? { id: v.id } : { id: v.id, info: v.info };
  };
  if (op === 'presence') {
    if (!Array.isArray(d.members)) return null;
    return { kind: 'presence', channel: d.channel, members: d.members.map(member).filter((m: Member | null): m is Member => m !== null) };
  }
  if (op === 'member_added' || op === 'member_removed') {
    const m = member(d.member);
    return m ? { kind: op, channel: d.channel, member: m } : null;
  }
  return null;
}

/** statusOf gives an `error` code of the WebSocket protocol the HTTP status it has on POST /api/realtime/publish. */
function statusOf(code: string | null): number {
  switch (code) {
    case 'client_events_disabled':
    case 'insufficient_scope':
    case 'tenant_suspended':
      return 403;
    case 'client_event_rate_limited':
    case 'rate_limited':
    case 'quota_exceeded':
      return 429;
    case 'presence_full':
      return 403;
    default:
      return 400;
  }
}

/** isEnvelope reports whether v is an event envelope with a valid id. */
export function isEnvelope(v: unknown): v is HybridEvent {
  const e = v as HybridEvent;
  return typeof e === 'object' && e !== null && isId(e.id) && typeof e.type === 'string' && typeof e.channel === 'string';
}

export { compareIds };
