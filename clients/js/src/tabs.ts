// Tabs of one origin share one connection, so that many open tabs do not use
// up the browser's six connections per origin on HTTP/1.1.
//
// Every tab asks for one Web Lock; the tab that holds it is the leader and
// runs the transport, relaying each event and each change of state over a
// BroadcastChannel. The others are followers: they hand relayed events to
// their handlers (dropping ids they have seen) and track the cursor, and
// wait in the lock's queue. When the leader's tab closes, the browser
// releases its lock, the next follower gets it and starts the transport from
// the last cursor it saw.
//
// A tab that joins sends `hello` with its cursor; the leader answers with
// `welcome`: the events after that cursor from the ring of recent events it
// keeps (or a resync when the ring does not reach back so far) and its
// state. Until the welcome, a follower holds back relayed messages, so that
// a live event cannot move its cursor past events still to be replayed.

import { compareIds, isAfter } from './ids.js';
import type { PresenceMessage } from './machine.js';
import type { BroadcastChannelFactory, BroadcastChannelLike, HybridEvent, LockManagerLike, Transport } from './types.js';

/** How many recent events every tab keeps to replay to a tab that joins. */
export const RING_SIZE = 1000;

/** The state a leader relays to the followers. */
export interface RelayedState {
  isConnected: boolean;
  activeMethod: Transport | null;
  error: { message: string; status: number | null; code: string | null } | null;
  cursor: string | null;
  connectionId: string | null;
}

type Message =
  | { kind: 'hello'; from: string; cursor: string | null }
  | { kind: 'welcome'; to: string; events: HybridEvent[]; complete: boolean; floor: string | null; state: RelayedState | null; presence?: PresenceMessage[] }
  | { kind: 'event'; event: HybridEvent }
  | { kind: 'presence'; message: PresenceMessage }
  | { kind: 'state'; state: RelayedState }
  | { kind: 'leader'; from: string }
  | { kind: 'reconnect' };

/** What a TabGroup asks of its client. */
export interface TabGroupHooks {
  /** This tab got the lock: start the transport from the cursor. */
  lead(): void;
  /** A relayed event; returns whether it was new to this tab. */
  deliver(event: HybridEvent): boolean;
  /** A presence message of the leader's transport, or of a welcome. */
  presence(message: PresenceMessage): void;
  /** The members this tab knows, for a welcome. */
  presenceSnapshot(): PresenceMessage[];
  /** The leader's state changed. */
  leaderState(state: RelayedState): void;
  /** A follower asked the leader to reconnect. */
  reconnect(): void;
  /** This tab's cursor. */
  cursor(): string | null;
  /** The time, for the resync events a TabGroup makes. */
  now(): number;
}

export interface TabGroupDeps {
  locks: LockManagerLike;
  BroadcastChannel: BroadcastChannelFactory;
  /** The lock's and the channel's name. */
  name: string;
  /** This tab's id, unique among the tabs. */
  id: string;
}

/** lockName names the lock and channel of one subscription. */
export function lockName(url: string, channels: string[]): string {
  return `hybridrt:${url}|${[...channels].sort().join(',')}`;
}

/** TabGroup is this tab's membership in the group of tabs sharing a connection. */
export class TabGroup {
  role: 'leader' | 'follower' = 'follower';

  private bc: BroadcastChannelLike | null = null;
  private readonly abort = new AbortController();
  private release: (() => void) | null = null;
  private welcomed = false;
  private held: Message[] = []; // relayed before our welcome
  private ring: HybridEvent[] = [];
  private floor: string | null; // the ring holds every event of ours after floor
  private lastState: RelayedState | null = null;
  private closed = false;

  constructor(private readonly deps: TabGroupDeps, private readonly hooks: TabGroupHooks) {
    this.floor = hooks.cursor();
  }

  start(): void {
    const bc = new this.deps.BroadcastChannel(this.deps.name);
    bc.onmessage = (ev) => this.receive(ev.data as Message);
    this.bc = bc;
    this.post({ kind: 'hello', from: this.deps.id, cursor: this.hooks.cursor() });
    this.deps.locks
      .request(this.deps.name, { signal: this.abort.signal }, () => {
        if (this.closed) return;
        // Held until close(), or until the tab goes away.
        return new Promise<void>((resolve) => {
          this.release = resolve;
          this.lead();
        });
      })
      .catch(() => {}); // aborted by close() while waiting
  }

  /** close leaves the group; a leader hands the lock to the next tab. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.release?.();
    this.release = null;
    this.bc?.close();
    this.bc = null;
  }

  /** relay sends an event of the leader's transport to the followers. */
  relay(event: HybridEvent): void {
    this.record(event);
    this.post({ kind: 'event', event });
  }

  /** relayPresence sends a presence message of the leader's transport to the followers. */
  relayPresence(message: PresenceMessage): void {
    this.post({ kind: 'presence', message });
  }

  /** relayState sends the leader's state to the followers. */
  relayState(state: RelayedState): void {
    this.lastState = state;
    this.noteCursor(state.cursor);
    this.post({ kind: 'state', state });
  }

  /** requestReconnect asks the leader to reconnect. */
  requestReconnect(): void {
    this.post({ kind: 'reconnect' });
  }

  /** noteCursor tells the group a position from which this tab has seen every event. */
  noteCursor(cursor: string | null): void {
    if (this.floor === null && cursor !== null) this.floor = cursor;
  }

  private lead(): void {
    if (this.closed) return;
    this.role = 'leader';
    if (!this.welcomed) {
      // What the last leader relayed before it went away is real.
      this.welcomed = true;
      const held = this.held;
      this.held = [];
      for (const m of held) this.apply(m);
    }
    this.noteCursor(this.hooks.cursor());
    this.post({ kind: 'leader', from: this.deps.id });
    this.hooks.lead();
  }

  private receive(m: Message): void {
    if (this.closed || !m || typeof m !== 'object') return;
    switch (m.kind) {
      case 'hello':
        if (this.role === 'leader') {
          this.post({ kind: 'welcome', to: m.from, ...this.replay(m.cursor), state: this.lastState, presence: this.hooks.presenceSnapshot() });
        }
        return;
      case 'reconnect':
        if (this.role === 'leader') this.hooks.reconnect();
        return;
      case 'leader':
        // A new leader: ask it for what we missed if the last one never answered.
        if (this.role === 'follower' && !this.welcomed) this.post({ kind: 'hello', from: this.deps.id, cursor: this.hooks.cursor() });
        return;
      case 'welcome':
        if (this.role === 'follower' && !this.welcomed && m.to === this.deps.id) this.welcome(m);
        return;
      case 'event':
      case 'state':
      case 'presence':
        if (this.role === 'leader') return; // the transport is ours now; it gets these itself
        if (!this.welcomed) this.held.push(m);
        else this.apply(m);
        return;
    }
  }

  private welcome(w: Extract<Message, { kind: 'welcome' }>): void {
    this.welcomed = true;
    if (!w.complete && w.floor !== null) {
      this.apply({
        kind: 'event',
        event: {
          id: w.floor, channel: '', type: 'resync',
          data: { cursor: w.floor, reason: 'this tab missed events that the shared connection no longer holds; reload your state' },
          time: new Date(this.hooks.now()).toISOString(),
        },
      });
    }
    for (const event of w.events) this.apply({ kind: 'event', event });
    // Held messages were sent before the welcome, the welcome's state after them.
    const held = this.held;
    this.held = [];
    for (const m of held) this.apply(m);
    if (w.state) this.apply({ kind: 'state', state: w.state });
    for (const message of w.presence ?? []) this.apply({ kind: 'presence', message });
    this.noteCursor(this.hooks.cursor());
  }

  private apply(m: Message): void {
    if (m.kind === 'event') {
      if (this.hooks.deliver(m.event)) this.record(m.event);
    } else if (m.kind === 'state') {
      this.lastState = m.state;
      this.hooks.leaderState(m.state);
    } else if (m.kind === 'presence') {
      this.hooks.presence(m.message);
    }
  }

  /** replay answers a hello: the events after cursor, if the ring reaches back to it. */
  private replay(cursor: string | null): { events: HybridEvent[]; complete: boolean; floor: string | null } {
    if (cursor === null || this.floor === null) return { events: [], complete: true, floor: this.floor };
    if (compareIds(cursor, this.floor) >= 0) {
      return { events: this.ring.filter((e) => isAfter(e.id, cursor)), complete: true, floor: this.floor };
    }
    return { events: this.ring.slice(), complete: false, floor: this.floor };
  }

  private record(event: HybridEvent): void {
    this.ring.push(event);
    if (this.ring.length > RING_SIZE) {
      const gone = this.ring.shift()!;
      if (this.floor === null || isAfter(gone.id, this.floor)) this.floor = gone.id;
    }
  }

  private post(m: Message): void {
    try {
      this.bc?.postMessage(m);
    } catch {
      // a closed channel: the tab is going away
    }
  }
}
