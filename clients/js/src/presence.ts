// The members of each presence channel, as the client last heard them. A
// transport sends the members when it joins a channel (and a long-poll with
// every answer), then each join and leave; a list that comes again after a
// reconnect or a switch of transport is compared with what was known, so a
// join or leave missed in between still reaches onJoin and onLeave, once.

import type { PresenceMessage } from './machine.js';
import type { Member, Presence } from './types.js';

type Listener<T> = (v: T) => void;

/** Room is one presence channel's members and listeners. */
export class Room<I = unknown> implements Presence<I> {
  private known: Map<string, Member<I>> | null = null;
  private sorted: Member<I>[] | null = null;
  private readonly joins = new Set<Listener<Member<I>>>();
  private readonly leaves = new Set<Listener<Member<I>>>();
  private readonly changes = new Set<Listener<Member<I>[]>>();

  constructor(readonly channel: string, private readonly safely: (fn: () => void) => void) {}

  get members(): Member<I>[] | null {
    if (this.known === null) return null;
    this.sorted ??= [...this.known.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return this.sorted;
  }

  onJoin(fn: Listener<Member<I>>): () => void {
    return add(this.joins, fn);
  }

  onLeave(fn: Listener<Member<I>>): () => void {
    return add(this.leaves, fn);
  }

  subscribe(fn: Listener<Member<I>[]>): () => void {
    return add(this.changes, fn);
  }

  /** apply takes in a presence message of this channel. */
  apply(m: PresenceMessage): void {
    const joined: Member<I>[] = [];
    const left: Member<I>[] = [];
    if (m.kind === 'presence') {
      const next = new Map(m.members.map((x) => [x.id, x as Member<I>]));
      if (this.known !== null) {
        for (const [id, x] of next) if (!this.known.has(id)) joined.push(x);
        for (const [id, x] of this.known) if (!next.has(id)) left.push(x);
      }
      const first = this.known === null;
      if (!first && joined.length === 0 && left.length === 0 && sameInfo(this.known!, next)) return;
      this.known = next;
    } else {
      if (this.known === null) return; // before the list: it will include this
      if (m.kind === 'member_added') {
        if (!this.known.has(m.member.id)) joined.push(m.member as Member<I>);
        this.known.set(m.member.id, m.member as Member<I>);
      } else {
        const gone = this.known.get(m.member.id);
        if (!gone) return;
        this.known.delete(m.member.id);
        left.push(gone);
      }
    }
    this.sorted = null;
    for (const x of joined) for (const fn of [...this.joins]) this.safely(() => fn(x));
    for (const x of left) for (const fn of [...this.leaves]) this.safely(() => fn(x));
    const members = this.members!;
    for (const fn of [...this.changes]) this.safely(() => fn(members));
  }

  /** snapshot is the members as a presence message, for a tab that joins; null until known. */
  snapshot(): PresenceMessage | null {
    const members = this.members;
    return members === null ? null : { kind: 'presence', channel: this.channel, members };
  }
}

function add<T>(set: Set<T>, fn: T): () => void {
  set.add(fn);
  return () => {
    set.delete(fn);
  };
}

function sameInfo(a: Map<string, Member>, b: Map<string, Member>): boolean {
  for (const [id, x] of b) if (JSON.stringify(a.get(id)?.info) !== JSON.stringify(x.info)) return false;
  return true;
}
