import type { PresenceMessage } from './machine.js';
import type { Member, Presence } from './types.js';
type Listener<T> = (v: T) => void;
/** Room is one presence channel's members and listeners. */
export declare class Room<I = unknown> implements Presence<I> {
    readonly channel: string;
    private readonly safely;
    private known;
    private sorted;
    private readonly joins;
    private readonly leaves;
    private readonly changes;
    constructor(channel: string, safely: (fn: () => void) => void);
    get members(): Member<I>[] | null;
    onJoin(fn: Listener<Member<I>>): () => void;
    onLeave(fn: Listener<Member<I>>): () => void;
    subscribe(fn: Listener<Member<I>[]>): () => void;
    /** apply takes in a presence message of this channel. */
    apply(m: PresenceMessage): void;
    /** snapshot is the members as a presence message, for a tab that joins; null until known. */
    snapshot(): PresenceMessage | null;
}
export {};
