// createHybridRealtime: the public client. It wires a Machine (the
// transport) to the handlers and the presence lists, to the browser's
// online/offline and visibility events, and, when tabs share a connection,
// to a TabGroup.

import { HybridError } from './errors.js';
import { isAfter, isId } from './ids.js';
import { Machine, type MachineConfig, type PresenceMessage } from './machine.js';
import { Room } from './presence.js';
import { lockName, TabGroup, type RelayedState } from './tabs.js';
import type {
  BroadcastChannelFactory, Clock, EventHandler, EventSourceFactory, FetchLike, HybridClient, HybridEvent,
  HybridRealtimeOptions, HybridState, LockManagerLike, Presence, Transport, WebSocketFactory, WindowLike,
} from './types.js';

/** Defaults of the tuning options. */
export const DEFAULTS = {
  transports: ['websocket', 'sse', 'polling'] as Transport[],
  openTimeoutMs: 10_000,
  failuresBeforeFallback: 3,
  retryIntervalMs: 60_000,
  pollTimeoutS: 25,
  backoff: { initialMs: 500, maxMs: 30_000 },
  shareAcrossTabs: true,
};

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
};

/**
 * createHybridRealtime connects to the service and calls the handlers with
 * each event of the channels, once and in order, over hybridrt's WebSocket,
 * SSE or long-polling.
 */
export function createHybridRealtime(options: HybridRealtimeOptions): HybridClient {
  const o = checkOptions(options);
  const g = globalThis as any;
  const clock = o.clock ?? realClock;
  const random = o.random ?? Math.random;
  const fetchImpl: FetchLike | undefined = o.fetch ?? (typeof g.fetch === 'function' ? g.fetch.bind(g) : undefined);
  if (!fetchImpl) throw new TypeError('hybridrt: no fetch in this environment; pass options.fetch');
  const EventSourceImpl: EventSourceFactory | null = o.EventSource !== undefined ? o.EventSource : (g.EventSource ?? null);
  const WebSocketImpl: WebSocketFactory | null = o.WebSocket !== undefined ? o.WebSocket : (g.WebSocket ?? null);
  const winOpt: WindowLike | null = o.window !== undefined ? o.window : (g.window ?? null);
  const win = typeof winOpt?.addEventListener === 'function' ? winOpt : null; // React Native has a window without events
  const locks: LockManagerLike | null = o.locks !== undefined ? o.locks : (g.navigator?.locks ?? null);
  const BC: BroadcastChannelFactory | null = o.BroadcastChannel !== undefined ? o.BroadcastChannel : (g.BroadcastChannel ?? null);
  const handlers: Record<string, EventHandler> = { ...o.eventHandlers };

  const config: MachineConfig = {
    url: o.url.replace(/\/+$/, ''),
    channels: [...o.channels],
    getToken: o.getToken,
    transports: o.transports ? [...o.transports] : DEFAULTS.transports,
    cursor: o.cursor ?? null,
    eventTypes: [...new Set([...Object.keys(handlers), ...(o.eventTypes ?? [])])].filter((t) => t !== '*'),
    openTimeoutMs: o.openTimeoutMs ?? o.sseOpenTimeoutMs ?? DEFAULTS.openTimeoutMs,
    failuresBeforeFallback: o.failuresBeforeFallback ?? o.sseFailuresBeforePolling ?? DEFAULTS.failuresBeforeFallback,
    retryIntervalMs: o.retryIntervalMs ?? o.sseRetryIntervalMs ?? DEFAULTS.retryIntervalMs,
    pollTimeoutS: o.pollTimeoutS ?? DEFAULTS.pollTimeoutS,
    backoff: {
      initialMs: o.backoff?.initialMs ?? DEFAULTS.backoff.initialMs,
      maxMs: o.backoff?.maxMs ?? DEFAULTS.backoff.maxMs,
    },
    clock,
    fetch: fetchImpl,
    EventSource: EventSourceImpl,
    WebSocket: WebSocketImpl,
    random,
  };

  let state: HybridState = {
    isConnected: false, activeMethod: null, lastEvent: null, error: null, cursor: config.cursor, role: 'solo', connectionId: null,
  };
  const listeners = new Set<(s: HybridState) => void>();
  let machine: Machine | null = null;
  let sender: Machine | null = null; // a follower's, for client events: never started
  const rooms = new Map<string, Room>();
  let group: TabGroup | null = null;
  let offline = win?.navigator?.onLine === false;
  let closed = false;

  function notify(): void {
    const s = state;
    for (const l of [...listeners]) safely(() => l(s));
    if (o.onStateChange) safely(() => o.onStateChange!(s));
  }

  function set(patch: Partial<HybridState>): void {
    state = { ...state, ...patch };
    notify();
  }

  /** accept hands an event to the handlers unless this tab has seen its id. */
  function accept(e: HybridEvent): boolean {
    if (closed) return false;
    // A resync may move the cursor back (the tenant's events were reset).
    if (e.type !== 'resync' && !isAfter(e.id, state.cursor)) return false;
    state = { ...state, lastEvent: e, cursor: e.id };
    const h = handlers[e.type];
    if (h) safely(() => h(e));
    const all = handlers['*'];
    if (all) safely(() => all(e));
    notify();
    return true;
  }

  function room(channel: string): Room {
    let r = rooms.get(channel);
    if (!r) {
      r = new Room(channel, safely);
      rooms.set(channel, r);
    }
    return r;
  }

  function presence(m: PresenceMessage): void {
    if (!closed && config.channels.includes(m.channel)) room(m.channel).apply(m);
  }

  function startMachine(): void {
    sender?.close();
    sender = null;
    const m = new Machine({ ...config, cursor: state.cursor }, {
      onEvent(e) {
        if (accept(e)) group?.relay(e);
      },
      onPresence(p) {
        presence(p);
        group?.relayPresence(p);
      },
      onChange() {
        if (machine !== m || closed) return;
        set({ isConnected: m.connected, activeMethod: m.method, error: m.error, cursor: m.cursor, connectionId: m.connectionId });
        group?.relayState({
          isConnected: m.connected, activeMethod: m.method, cursor: m.cursor, connectionId: m.connectionId,
          error: m.error && { message: m.error.message, status: m.error.status, code: m.error.code },
        });
      },
    });
    machine = m;
    if (offline) m.pause();
    m.start();
  }

  const share = o.shareAcrossTabs ?? DEFAULTS.shareAcrossTabs;
  if (share && locks && BC) {
    state = { ...state, role: 'follower' };
    group = new TabGroup(
      { locks, BroadcastChannel: BC, name: lockName(config.url, config.channels), id: tabId(random) },
      {
        lead() {
          if (closed) return;
          state = { ...state, role: 'leader' };
          startMachine();
        },
        deliver: accept,
        presence,
        presenceSnapshot: () => [...rooms.values()].map((r) => r.snapshot()).filter((p): p is PresenceMessage => p !== null),
        leaderState(s: RelayedState) {
          const patch: Partial<HybridState> = {
            isConnected: s.isConnected,
            activeMethod: s.activeMethod,
            connectionId: s.connectionId ?? null,
            error: s.error && new HybridError(s.error.message, { status: s.error.status, code: s.error.code }),
          };
          // The leader has looked through to its cursor; nothing of ours is before it unseen.
          if (isId(s.cursor) && isAfter(s.cursor, state.cursor)) patch.cursor = s.cursor;
          set(patch);
        },
        reconnect() {
          machine?.reconnect();
        },
        cursor: () => state.cursor,
        now: () => clock.now(),
      },
    );
    group.start();
  } else {
    startMachine();
  }

  // The browser's own events. Only the tab that runs the transport acts.
  const onOnline = () => {
    offline = false;
    machine?.resume();
  };
  const onOffline = () => {
    offline = true;
    machine?.pause();
  };
  const onVisibility = () => {
    if (win?.document?.visibilityState === 'visible') machine?.wake();
  };
  if (win) {
    win.addEventListener('online', onOnline);
    win.addEventListener('offline', onOffline);
    win.document?.addEventListener('visibilitychange', onVisibility);
  }

  return {
    get isConnected() { return state.isConnected; },
    get activeMethod() { return state.activeMethod; },
    get lastEvent() { return state.lastEvent; },
    get error() { return state.error; },
    get cursor() { return state.cursor; },
    get connectionId() { return state.connectionId; },
    get state() { return state; },
    reconnect() {
      if (closed) return;
      if (machine) machine.reconnect();
      else group?.requestReconnect();
    },
    close() {
      if (closed) return;
      closed = true;
      if (win) {
        win.removeEventListener('online', onOnline);
        win.removeEventListener('offline', onOffline);
        win.document?.removeEventListener('visibilitychange', onVisibility);
      }
      machine?.close(); // before the group lets the next tab lead
      sender?.close();
      group?.close();
      machine = null;
      sender = null;
      state = { ...state, isConnected: false, activeMethod: null };
      notify();
      listeners.clear();
    },
    async publish(channel, type, data) {
      if (closed) throw new HybridError('hybridrt: the client is closed');
      if (typeof channel !== 'string' || channel === '') throw new TypeError('hybridrt: publish needs a channel');
      if (typeof type !== 'string' || !type.startsWith('client-')) {
        throw new TypeError(`hybridrt: a client event's type starts with "client-" (got ${JSON.stringify(type)})`);
      }
      if (machine) return machine.publish(channel, type, data);
      // A follower tab sends over HTTP, naming the shared connection so that it leaves the event out.
      sender ??= new Machine({ ...config }, { onEvent() {}, onChange() {} });
      return sender.publish(channel, type, data, state.connectionId);
    },
    presence<I = unknown>(channel: string): Presence<I> {
      if (!config.channels.includes(channel) || !channel.startsWith('presence-')) {
        throw new TypeError(`hybridrt: presence(${JSON.stringify(channel)}): not a presence- channel of this client (${config.channels.join(', ')})`);
      }
      return room(channel) as unknown as Presence<I>;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
  };
}

function checkOptions(o: HybridRealtimeOptions): HybridRealtimeOptions {
  if (!o || typeof o !== 'object') throw new TypeError('hybridrt: options are required');
  if (typeof o.url !== 'string' || !/^https?:\/\//.test(o.url)) {
    throw new TypeError('hybridrt: options.url must be the service origin, e.g. "https://rt.example.com"');
  }
  if (!Array.isArray(o.channels) || o.channels.length === 0 || !o.channels.every((c) => typeof c === 'string' && c !== '')) {
    throw new TypeError('hybridrt: options.channels must name at least one channel');
  }
  if (typeof o.getToken !== 'function') throw new TypeError('hybridrt: options.getToken must be a function that resolves to a JWT');
  if (o.cursor != null && !isId(o.cursor)) throw new TypeError('hybridrt: options.cursor must be an event id (a decimal string)');
  if (o.transports && (!Array.isArray(o.transports) || !o.transports.every((t) => t === 'websocket' || t === 'sse' || t === 'polling'))) {
    throw new TypeError('hybridrt: options.transports may hold only "websocket", "sse" and "polling"');
  }
  return o;
}

/** safely runs an app's callback; its exception is reported, never thrown into the transport. */
function safely(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    const report = (globalThis as any).reportError;
    if (typeof report === 'function') report(err);
    else console.error(err);
  }
}

function tabId(random: () => number): string {
  let s = '';
  for (let i = 0; i < 4; i++) s += Math.floor(random() * 0x100000000).toString(36);
  return s;
}
