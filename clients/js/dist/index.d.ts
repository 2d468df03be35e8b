export { createHybridRealtime, DEFAULTS } from './client.js';
export { HybridError } from './errors.js';
export { compareIds } from './ids.js';
export type { BroadcastChannelFactory, BroadcastChannelLike, Clock, EventHandler, EventSourceFactory, EventSourceLike, EventTargetLike, FetchLike, HybridClient, HybridEvent, HybridRealtimeOptions, HybridState, LockManagerLike, Member, MessageLike, Presence, Role, Transport, WebSocketFactory, WebSocketLike, WindowLike, } from './types.js';
