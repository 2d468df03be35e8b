import type { PresenceMessage } from './machine.js';
import type { BroadcastChannelFactory, HybridEvent, LockManagerLike, Transport } from './types.js';
/** How many recent events every tab keeps to replay to a tab that joins. */
export declare const RING_SIZE = 1000;
/** The state a leader relays to the followers. */
export interface RelayedState {
    isConnected: boolean;
    activeMethod: Transport | null;
    error: {
        message: string;
        status: number | null;
        code: string | null;
    } | null;
    cursor: string | null;
    connectionId: string | null;
}
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
export declare function lockName(url: string, channels: string[]): string;
/** TabGroup is this tab's membership in the group of tabs sharing a connection. */
export declare class TabGroup {
    private readonly deps;
    private readonly hooks;
    role: 'leader' | 'follower';
    private bc;
    private readonly abort;
    private release;
    private welcomed;
    private held;
    private ring;
    private floor;
    private lastState;
    private closed;
    constructor(deps: TabGroupDeps, hooks: TabGroupHooks);
    start(): void;
    /** close leaves the group; a leader hands the lock to the next tab. */
    close(): void;
    /** relay sends an event of the leader's transport to the followers. */
    relay(event: HybridEvent): void;
    /** relayPresence sends a presence message of the leader's transport to the followers. */
    relayPresence(message: PresenceMessage): void;
    /** relayState sends the leader's state to the followers. */
    relayState(state: RelayedState): void;
    /** requestReconnect asks the leader to reconnect. */
    requestReconnect(): void;
    /** noteCursor tells the group a position from which this tab has seen every event. */
    noteCursor(cursor: string | null): void;
    private lead;
    private receive;
    private welcome;
    private apply;
    /** replay answers a hello: the events after cursor, if the ring reaches back to it. */
    private replay;
    private record;
    private post;
}
