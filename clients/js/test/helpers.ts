// Fakes at the edges: a clock, the service (as fetch), EventSource, WebSocket, Web
// Locks, BroadcastChannel and window. Everything runs on the fake clock;
// flush() lets pending promise chains settle.

import type { Clock, EventSourceLike, FetchLike, HybridEvent, LockManagerLike, MessageLike, WebSocketLike } from '../src/types.js';

/** flush lets every pending promise chain and fake message delivery settle. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

/** FakeClock runs timers only when told to, in order of due time. */
export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, Timer>();

  constructor(start = Date.UTC(2026, 10, 27, 8, 0, 0)) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), seq: id, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** delays lists the pending timers as milliseconds from now, soonest first. */
  delays(): number[] {
    return [...this.timers.values()].map((t) => t.at - this.t).sort((a, b) => a - b);
  }

  get pending(): number {
    return this.timers.size;
  }

  /** tick moves time forward by ms, running each timer that falls due, and settling after each. */
  async tick(ms: number): Promise<void> {
    const end = this.t + ms;
    await flush();
    for (;;) {
      let next: Timer | null = null;
      let nextId = 0;
      for (const [id, t] of this.timers) {
        if (t.at <= end && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) {
          next = t;
          nextId = id;
        }
      }
      if (!next) break;
      this.timers.delete(nextId);
      this.t = next.at;
      next.fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

// --- JWTs -----------------------------------------------------------------------

function b64url(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

/** makeJwt makes an unsigned-looking HS256 JWT with the given claims (the client never verifies). */
export function makeJwt(claims: Record<string, unknown>): string {
  return `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'sk_test' }))}.${b64url(JSON.stringify(claims))}.c2ln`;
}

/** tokenSource returns a getToken that mints a new token, valid ttlS seconds, on every call. */
export function tokenSource(clock: FakeClock, ttlS = 3600) {
  const issued: string[] = [];
  const getToken = async () => {
    const iat = Math.floor(clock.now() / 1000);
    const t = makeJwt({ sub: '42', iat, exp: iat + ttlS, n: issued.length + 1 });
    issued.push(t);
    return t;
  };
  return { getToken, issued };
}

// --- the service, as fetch --------------------------------------------------------

export interface FakeRequest {
  method: string;
  url: string;
  path: string;
  query: URLSearchParams;
  token: string | null;
  signal: AbortSignal | undefined;
  aborted: boolean;
  body: any; // the JSON body, parsed
}

export interface FakeResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** A long-poll the test answers when it wants to. */
export interface PendingPoll {
  req: FakeRequest;
  respond(body: { events: HybridEvent[]; cursor: string; resync?: boolean }): void;
  fail(res: FakeResponse): void;
}

export function problem(status: number, code: string, headers?: Record<string, string>): FakeResponse {
  return { status, body: { type: `urn:hybridrt:problem:${code}`, title: 'error', status, detail: code, code }, headers };
}

/**
 * FakeServer answers tickets and renewals at once, and holds long-polls until
 * the test answers them. `route` overrides an answer for a method and path.
 */
export class FakeServer {
  requests: FakeRequest[] = [];
  polls: PendingPoll[] = [];
  private tickets = 0;
  private routes = new Map<string, (req: FakeRequest) => FakeResponse | null>();

  constructor(private readonly clock: FakeClock) {}

  route(method: string, path: string, fn: (req: FakeRequest) => FakeResponse | null): void {
    this.routes.set(`${method} ${path}`, fn);
  }

  /** requestsTo lists the requests to a path, e.g. "/api/realtime/polling". */
  requestsTo(path: string): FakeRequest[] {
    return this.requests.filter((r) => r.path === path || r.path.startsWith(path));
  }

  get lastPoll(): PendingPoll {
    const p = this.polls[this.polls.length - 1];
    if (!p) throw new Error('no poll yet');
    return p;
  }

  fetch: FetchLike = (input, init = {}) => {
    const u = new URL(input);
    const auth = init.headers?.Authorization ?? null;
    const req: FakeRequest = {
      method: init.method ?? 'GET',
      url: input,
      path: u.pathname,
      query: u.searchParams,
      token: auth && auth.startsWith('Bearer ') ? auth.slice(7) : null,
      signal: init.signal,
      aborted: false,
      body: init.body ? JSON.parse(init.body) : null,
    };
    this.requests.push(req);
    const override = this.routes.get(`${req.method} ${req.path}`);
    const res = override?.(req);
    if (res) return Promise.resolve(respond(res));
    if (req.method === 'POST' && req.path === '/api/realtime/tickets') {
      this.tickets++;
      return Promise.resolve(respond({ status: 201, body: { ticket: `tk_${this.tickets}`, expiresAt: new Date(this.clock.now() + 3600_000).toISOString() } }));
    }
    if (req.method === 'POST' && /^\/api\/realtime\/connections\/[^/]+\/token$/.test(req.path)) {
      return Promise.resolve(respond({ status: 200, body: { connectionId: req.path.split('/')[4], expiresAt: '' } }));
    }
    if (req.method === 'GET' && req.path === '/api/realtime/polling') {
      return new Promise((resolve, reject) => {
        let settled = false;
        const settle = (fn: () => void) => {
          if (!settled) {
            settled = true;
            fn();
          }
        };
        req.signal?.addEventListener('abort', () => {
          req.aborted = true;
          settle(() => reject(new DOMException('The operation was aborted.', 'AbortError')));
        });
        this.polls.push({
          req,
          respond: (body) => settle(() => resolve(respond({ status: 200, body }))),
          fail: (r) => settle(() => resolve(respond(r))),
        });
      });
    }
    return Promise.resolve(respond(problem(404, 'not_found')));
  };
}

function respond(r: FakeResponse) {
  const text = r.body === undefined ? '' : JSON.stringify(r.body);
  const headers = new Map(Object.entries(r.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    ok: r.status >= 200 && r.status < 300,
    status: r.status,
    headers: { get: (name: string) => headers.get(name.toLowerCase()) ?? null },
    json: async () => JSON.parse(text),
    text: async () => text,
  };
}

// --- EventSource -----------------------------------------------------------------

/** FakeEventSource behaves like the browser's: named events reach only their listeners. */
export class FakeEventSource implements EventSourceLike {
  readyState = 0;
  lastEventId = '';
  private listeners = new Map<string, Array<(m: MessageLike) => void>>();

  constructor(readonly url: string) {}

  get closed(): boolean {
    return this.readyState === 2;
  }

  get query(): URLSearchParams {
    return new URL(this.url).searchParams;
  }

  addEventListener(type: string, fn: (m: MessageLike) => void): void {
    const l = this.listeners.get(type) ?? [];
    l.push(fn);
    this.listeners.set(type, l);
  }

  close(): void {
    this.readyState = 2;
  }

  private dispatch(type: string, data: string): void {
    for (const fn of this.listeners.get(type) ?? []) fn({ data, lastEventId: this.lastEventId });
  }

  /** emit sends one event, as the server's frame `id:`/`event:`/`data:` would. */
  emit(type: string, data: unknown, id?: string): void {
    if (this.closed) throw new Error('emit on a closed EventSource');
    this.readyState = 1;
    if (id !== undefined) this.lastEventId = id;
    this.dispatch(type, typeof data === 'string' ? data : JSON.stringify(data));
  }

  ready(cursor: string, connectionId = 'c_0123456789abcdef01234567', heartbeat = 15): void {
    this.readyState = 1;
    this.dispatch('open', '');
    this.emit('ready', { connectionId, cursor, heartbeat }, cursor);
  }

  event(e: HybridEvent): void {
    this.emit(e.type, e, e.id);
  }

  /** fail reports a connection error: CLOSED (a 401, 5xx, wrong type) or CONNECTING (the browser retries). */
  fail(closed: boolean): void {
    this.readyState = closed ? 2 : 0;
    this.dispatch('error', '');
  }
}

/** eventSources returns an EventSource constructor that records what it made. */
export function eventSources() {
  const made: FakeEventSource[] = [];
  class ES extends FakeEventSource {
    constructor(url: string) {
      super(url);
      made.push(this);
    }
  }
  return {
    ctor: ES,
    made,
    get last(): FakeEventSource {
      const es = made[made.length - 1];
      if (!es) throw new Error('no EventSource yet');
      return es;
    },
  };
}

/** ev makes an event envelope. */
export function ev(id: number | string, type = 'notification', channel = 'user:42', data: unknown = { n: Number(id) }): HybridEvent {
  return { id: String(id), channel, type, data, time: '2026-11-27T08:00:00.000Z' };
}

// --- tabs ------------------------------------------------------------------------

/** FakeLocks grants each named lock to one holder at a time, in request order. */
export class FakeLocks implements LockManagerLike {
  private held = new Set<string>();
  private queues = new Map<string, Array<{ cb: (l: unknown) => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void; granted: boolean }>>();

  request(name: string, options: { signal?: AbortSignal }, cb: (lock: unknown) => Promise<void> | void): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const entry = { cb, resolve, reject, granted: false };
      const signal = options.signal;
      if (signal?.aborted) {
        reject(new DOMException('aborted', 'AbortError'));
        return;
      }
      signal?.addEventListener('abort', () => {
        if (entry.granted) return;
        const q = this.queues.get(name) ?? [];
        const i = q.indexOf(entry);
        if (i >= 0) q.splice(i, 1);
        reject(new DOMException('aborted', 'AbortError'));
      });
      const q = this.queues.get(name) ?? [];
      q.push(entry);
      this.queues.set(name, q);
      this.pump(name);
    });
  }

  private pump(name: string): void {
    if (this.held.has(name)) return;
    const next = this.queues.get(name)?.shift();
    if (!next) return;
    this.held.add(name);
    next.granted = true;
    const done = () => {
      this.held.delete(name);
      this.pump(name);
    };
    Promise.resolve()
      .then(() => next.cb({ name }))
      .then(
        (v) => {
          done();
          next.resolve(v);
        },
        (e) => {
          done();
          next.reject(e);
        },
      );
  }
}

/** broadcastChannels returns a BroadcastChannel constructor whose instances talk to each other. */
export function broadcastChannels() {
  const byName = new Map<string, Set<FakeBC>>();
  class FakeBC {
    onmessage: ((e: { data: any }) => void) | null = null;
    closed = false;
    constructor(readonly name: string) {
      const set = byName.get(name) ?? new Set();
      set.add(this);
      byName.set(name, set);
    }
    postMessage(m: unknown): void {
      if (this.closed) throw new DOMException('closed', 'InvalidStateError');
      const data = structuredClone(m);
      for (const other of byName.get(this.name) ?? []) {
        if (other !== this) setImmediate(() => !other.closed && other.onmessage?.({ data }));
      }
    }
    close(): void {
      this.closed = true;
      byName.get(this.name)?.delete(this);
    }
  }
  return FakeBC;
}

// --- window ----------------------------------------------------------------------

class Target {
  private listeners = new Map<string, Set<() => void>>();
  addEventListener(type: string, fn: () => void): void {
    const s = this.listeners.get(type) ?? new Set();
    s.add(fn);
    this.listeners.set(type, s);
  }
  removeEventListener(type: string, fn: () => void): void {
    this.listeners.get(type)?.delete(fn);
  }
  dispatch(type: string): void {
    for (const fn of [...(this.listeners.get(type) ?? [])]) fn();
  }
  count(): number {
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }
}

/** FakeWindow has online/offline events and a document with visibility. */
export class FakeWindow extends Target {
  navigator = { onLine: true };
  document = Object.assign(new Target(), { visibilityState: 'visible' });

  goOffline(): void {
    this.navigator.onLine = false;
    this.dispatch('offline');
  }

  goOnline(): void {
    this.navigator.onLine = true;
    this.dispatch('online');
  }

  setVisible(visible: boolean): void {
    this.document.visibilityState = visible ? 'visible' : 'hidden';
    this.document.dispatch('visibilitychange');
  }
}

// --- WebSocket -------------------------------------------------------------------

/** FakeWebSocket is a browser WebSocket the test plays the server of (hybridrt.v1). */
export class FakeWebSocket implements WebSocketLike {
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: any[] = [];
  closedWith: number | null = null;

  constructor(readonly url: string, readonly protocols?: string | string[]) {}

  get closed(): boolean {
    return this.readyState === 3;
  }

  /** autoPong answers the client's pings, as a live server does. */
  autoPong = true;

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a WebSocket that is not open');
    const m = JSON.parse(data);
    this.sent.push(m);
    if (m.op === 'ping' && this.autoPong) queueMicrotask(() => this.readyState === 1 && this.msg({ op: 'pong', ref: m.ref }));
  }

  close(code = 1000): void {
    if (this.readyState === 3) return;
    this.closedWith = code;
    this.readyState = 3; // the client asked: no onclose of ours to follow in these tests
  }

  /** ops lists the ops the client sent. */
  ops(): string[] {
    return this.sent.map((m) => m.op);
  }

  /** sentOf returns the last message of op the client sent. */
  sentOf(op: string): any {
    const m = [...this.sent].reverse().find((x) => x.op === op);
    if (!m) throw new Error(`the client sent no ${op}; it sent ${this.ops().join(', ')}`);
    return m;
  }

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  msg(m: Record<string, unknown>): void {
    if (this.readyState !== 1) throw new Error(`message ${String(m.op)} on a WebSocket that is not open`);
    this.onmessage?.({ data: JSON.stringify(m) });
  }

  /** live opens, answers auth with ready and the subscribe with subscribed. */
  live(cursor: string, connectionId = 'c_ws0123456789abcdef0123456'): void {
    this.open();
    this.msg({ op: 'ready', connectionId, cursor });
    this.msg({ op: 'subscribed', ref: this.sentOf('subscribe').ref });
  }

  event(e: HybridEvent): void {
    this.msg({ op: 'event', event: e });
  }

  /** fail ends the connection from the server's side, or as a refused upgrade (1006). */
  fail(code = 1006, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

/** webSockets returns a WebSocket constructor that records what it made. */
export function webSockets() {
  const made: FakeWebSocket[] = [];
  class WS extends FakeWebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      made.push(this);
    }
  }
  return {
    ctor: WS,
    made,
    get last(): FakeWebSocket {
      const ws = made[made.length - 1];
      if (!ws) throw new Error('no WebSocket yet');
      return ws;
    },
  };
}
