// The transport state machine: one connection to the service, over SSE when
// it works and long-polling when it does not, with one cursor across both.
// It knows nothing of windows, tabs or handlers; everything it touches (the
// clock, fetch, EventSource, randomness) is injected, so tests drive it
// deterministically with a fake clock.
//
// # Modes
//
// `mode` is the transport to use: 'sse' while SSE is wanted, 'polling'
// after SSE failed to open sseFailuresBeforePolling times in a row, or sent
// no `ready` in time (a proxy buffering the stream: no point in retrying at
// once), or went silent past 2.5 heartbeats too often. While polling, an SSE
// "probe" is opened every sseRetryIntervalMs beside the poll loop; when it
// sends `ready` it becomes the stream and only then is the poll in flight
// aborted, so the switch loses nothing.
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
// The server's heartbeats are `: ping` comment lines, which EventSource does
// not surface. A quiet stream therefore looks the same as a dead one, and the
// silence watchdog only acts once the server has shown it sends heartbeats
// as `ping` events; otherwise only the `ready` deadline protects against a
// buffering proxy.

import { Backoff } from './backoff.js';
import { HybridError, retryAfterMs, toHybridError } from './errors.js';
import { before, compareIds, isAfter, isId } from './ids.js';
import { decodeTokenTimes, tokenSchedule } from './jwt.js';
import type { Clock, EventSourceFactory, EventSourceLike, FetchLike, HybridEvent, MessageLike, Transport } from './types.js';

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
/** Default heartbeat when `ready` names none, in seconds. */
export const DEFAULT_HEARTBEAT_S = 15;

const CLOSED = 2; // EventSource.CLOSED
const SYSTEM_TYPES = new Set(['ready', 'resync', 'token_expired', 'ping', '*']);

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
  backoff: { initialMs: number; maxMs: number };
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

interface Token {
  value: string;
  expiresAt: number | null; // local clock; null when the token has no exp
  renewAt: number | null;
}

/** One EventSource and what is known of it. */
interface Stream {
  es: EventSourceLike | null;
  probe: boolean; // opened while polling, to see whether SSE works again
  ready: boolean;
  connectionId: string | null;
  heartbeatMs: number;
  from: string | null; // the cursor it was opened with
  ticketExpiresAt: number | null;
  tokenValue: string | null; // the token the server holds for this stream
  openTimer: unknown;
  watchdog: unknown;
  done: boolean;
}

/** One long-poll request. */
interface Poll {
  controller: AbortController;
  guard: unknown;
  done: boolean;
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
  private retryTimer: unknown = null;
  private probeTimer: unknown = null;
  private renewTimer: unknown = null;

  private token: Token | null = null;
  private tokenPromise: Promise<Token> | null = null;
  private readonly backoff: Backoff;
  private sseFailures = 0;
  private visibleHeartbeats = false; // the server sends `ping` events we can see
  private expiredSinceReady = false;
  private resyncedFrom: string | null | undefined = undefined;
  private pendingResync: string | null = null;

  constructor(private readonly cfg: MachineConfig, private readonly hooks: MachineHooks) {
    this.cursor = cfg.cursor;
    this.backoff = new Backoff(cfg.backoff.initialMs, cfg.backoff.maxMs, cfg.random);
    this.mode = this.preferred();
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

  /** resume connects again after pause, SSE first, with a fresh backoff. */
  resume(): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.resetPreference();
    if (this.token?.renewAt != null) this.scheduleRenewal(this.token.renewAt);
    this.connect();
  }

  /** reconnect drops the connection and connects again at once, SSE first. */
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

  private sseUsable(): boolean {
    return this.cfg.transports.includes('sse') && this.cfg.EventSource !== null;
  }

  private pollUsable(): boolean {
    return this.cfg.transports.includes('polling');
  }

  private preferred(): Transport | null {
    return this.sseUsable() ? 'sse' : this.pollUsable() ? 'polling' : null;
  }

  private resetPreference(): void {
    this.sseFailures = 0;
    this.backoff.reset();
    this.mode = this.preferred();
  }

  private connect(): void {
    this.clear('retryTimer');
    if (!this.running || this.paused || this.closed || this.halted) return;
    if (this.mode === null) {
      this.halt(new HybridError(this.cfg.transports.includes('sse')
        ? 'no transport: EventSource is missing and polling is not allowed'
        : 'no transport: transports is empty'));
      return;
    }
    this.method = this.mode;
    if (this.mode === 'sse') {
      if (!this.stream) void this.openStream(false);
    } else {
      this.startPolling();
    }
    this.changed();
  }

  /** downgrade switches to long-polling from the cursor, and tries SSE again later. */
  private downgrade(): void {
    this.mode = 'polling';
    this.connected = false;
    this.connect();
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

  // --- SSE ---------------------------------------------------------------------

  private async openStream(probe: boolean): Promise<void> {
    const s: Stream = {
      es: null, probe, ready: false, connectionId: null, heartbeatMs: DEFAULT_HEARTBEAT_S * 1000,
      from: null, ticketExpiresAt: null, tokenValue: null, openTimer: null, watchdog: null, done: false,
    };
    if (probe) this.probe = s;
    else this.stream = s;
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

  private armOpenTimer(s: Stream, graceMs = 0): void {
    this.cfg.clock.clearTimeout(s.openTimer);
    s.openTimer = this.cfg.clock.setTimeout(() => this.onOpenTimeout(s), this.cfg.sseOpenTimeoutMs + graceMs);
  }

  private armWatchdog(s: Stream): void {
    this.cfg.clock.clearTimeout(s.watchdog);
    s.watchdog = this.cfg.clock.setTimeout(() => this.onSilence(s), HEARTBEAT_SILENCE_FACTOR * s.heartbeatMs);
  }

  private onReady(s: Stream, m: MessageLike): void {
    if (s.done) return;
    this.cfg.clock.clearTimeout(s.openTimer);
    s.openTimer = null;
    const d = parseJSON(m.data) ?? {};
    s.ready = true;
    s.connectionId = typeof d.connectionId === 'string' ? d.connectionId : null;
    const hb = typeof d.heartbeat === 'number' && d.heartbeat > 0 ? d.heartbeat : DEFAULT_HEARTBEAT_S;
    s.heartbeatMs = hb * 1000;
    // Without a cursor the stream starts at the head; that is our start too.
    if (this.cursor === null && isId(d.cursor)) this.cursor = d.cursor;
    if (s.probe) this.promote(s);
    // Where heartbeats are visible, a stream only proves healthy by living
    // past ready; a proxy may pass the first bytes and buffer the rest.
    if (!this.visibleHeartbeats) this.sseFailures = 0;
    this.expiredSinceReady = false;
    this.backoff.reset();
    this.mode = 'sse';
    this.method = 'sse';
    this.connected = true;
    this.error = null;
    this.armWatchdog(s);
    this.changed();
    // The browser's own reconnect reuses the ticket, and with it the token
    // the ticket was issued for; hand the stream the newer one we have.
    const t = this.usableToken();
    if (t && t.value !== s.tokenValue) void this.renewStream(s, t);
  }

  /** promote makes a probe that sent ready the stream, and only then stops polling. */
  private promote(s: Stream): void {
    this.probe = null;
    s.probe = false;
    this.closeStream(this.stream);
    this.stream = s;
    this.stopPolling();
    this.clear('retryTimer');
    this.clear('probeTimer');
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
    if (this.visibleHeartbeats) this.sseFailures = 0;
  }

  private onResync(s: Stream, m: MessageLike): void {
    if (s.done) return;
    this.alive(s);
    const d = parseJSON(m.data) ?? {};
    const to = isId(d.cursor) ? d.cursor : isId(m.lastEventId) ? m.lastEventId : null;
    if (to !== null) this.resync(s.from, to, typeof d.reason === 'string' ? d.reason : RESYNC_REASON);
  }

  private onTokenExpired(s: Stream): void {
    if (s.done) return;
    this.dropToken();
    this.closeStream(s);
    if (s.probe) {
      this.scheduleProbe();
      return;
    }
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
      this.closeStream(s);
      this.scheduleProbe();
      return;
    }
    this.sseFailures++;
    this.error = new HybridError('the SSE connection failed', { transport: 'sse' });
    if (this.sseFailures >= this.cfg.sseFailuresBeforePolling && this.pollUsable()) {
      this.closeStream(s);
      this.downgrade();
    } else if (closed || ticketDead) {
      this.closeStream(s);
      this.scheduleRetry();
    } else {
      this.armOpenTimer(s, RECONNECT_GRACE_MS); // the browser reconnects after retry:
      this.changed();
    }
  }

  /** streamFailed handles an SSE attempt that failed before its EventSource existed. */
  private streamFailed(s: Stream, err: HybridError): void {
    this.closeStream(s);
    if (s.probe) {
      this.scheduleProbe();
      return;
    }
    this.error = err;
    if (err.status === 401 || err.status === 403) this.dropToken();
    // getToken failing says nothing about SSE; anything else counts against it.
    if (err.code !== TOKEN_UNAVAILABLE) this.sseFailures++;
    if (this.sseFailures >= this.cfg.sseFailuresBeforePolling && this.pollUsable()) this.downgrade();
    else this.scheduleRetry(err.retryAfterMs ?? 0);
  }

  private onOpenTimeout(s: Stream): void {
    if (s.done) return;
    this.closeStream(s);
    if (s.probe) {
      this.scheduleProbe();
      return;
    }
    // No ready in time: a proxy is most likely buffering the stream, and
    // will do so on the next try too. Poll from the same cursor instead.
    this.sseFailures++;
    this.connected = false;
    this.error = new HybridError(`no ready event within ${this.cfg.sseOpenTimeoutMs} ms: a proxy may be buffering the stream`, { transport: 'sse' });
    if (this.pollUsable()) this.downgrade();
    else this.scheduleRetry();
  }

  private onSilence(s: Stream): void {
    if (s.done || !s.ready) return;
    if (!this.visibleHeartbeats) {
      // Comment heartbeats are invisible to EventSource: a quiet stream that
      // stayed open this long is as healthy as can be told.
      this.sseFailures = 0;
      return;
    }
    this.closeStream(s);
    this.connected = false;
    this.sseFailures++;
    this.error = new HybridError(`no heartbeat for ${(HEARTBEAT_SILENCE_FACTOR * s.heartbeatMs) / 1000} s`, { transport: 'sse' });
    if (this.sseFailures >= this.cfg.sseFailuresBeforePolling && this.pollUsable()) this.downgrade();
    else if (this.sseFailures >= this.cfg.sseFailuresBeforePolling) this.scheduleRetry();
    else this.connect();
  }

  private closeStream(s: Stream | null): void {
    if (!s || s.done) return;
    s.done = true;
    this.cfg.clock.clearTimeout(s.openTimer);
    this.cfg.clock.clearTimeout(s.watchdog);
    s.es?.close();
    if (this.stream === s) this.stream = null;
    if (this.probe === s) this.probe = null;
  }

  private scheduleProbe(): void {
    this.clear('probeTimer');
    if (!this.sseUsable() || this.closed || this.paused || this.halted || this.mode !== 'polling') return;
    this.probeTimer = this.cfg.clock.setTimeout(() => {
      this.probeTimer = null;
      if (this.mode === 'polling' && !this.probe && !this.closed && !this.paused) void this.openStream(true);
    }, this.cfg.sseRetryIntervalMs);
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
    if (!this.probe && this.probeTimer === null) this.scheduleProbe();
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
    let path = `/api/realtime/polling?channels=${this.channelParam()}&timeout=${hold}`;
    if (from !== null) path += `&cursor=${from}`;
    return path;
  }

  private pollFailed(err: HybridError): void {
    this.error = err;
    this.connected = false;
    if (err.status === 400 && err.code === 'cursor_ahead') {
      // Our cursor is past the tenant's head (its events were reset): start
      // again from the head, and tell the app to reload its state.
      this.pendingResync = 'the cursor is past the latest event; reload your state';
      this.resyncedFrom = undefined;
      this.cursor = null;
      this.scheduleRetry();
      return;
    }
    if (err.status === 400) {
      this.halt(err); // bad channels: retrying cannot help
      return;
    }
    if (err.status === 401 || err.status === 403) this.dropToken();
    this.scheduleRetry(err.retryAfterMs ?? 0);
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
    if (!isAfter(e.id, this.cursor)) return; // seen already, over the other transport or before a reconnect
    this.cursor = e.id;
    this.hooks.onEvent(e);
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
  private async authorized<T>(fn: (t: Token) => Promise<T>, transport: Transport): Promise<T> {
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
    if (s && s.ready) await this.renewStream(s, token);
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

  private async request(method: string, path: string, token: string, transport: Transport, signal?: AbortSignal): Promise<any> {
    const res = await this.cfg.fetch(this.cfg.url + path, {
      method,
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
      signal,
    });
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

/** isEnvelope reports whether v is an event envelope with a valid id. */
export function isEnvelope(v: unknown): v is HybridEvent {
  const e = v as HybridEvent;
  return typeof e === 'object' && e !== null && isId(e.id) && typeof e.type === 'string' && typeof e.channel === 'string';
}

export { compareIds };
