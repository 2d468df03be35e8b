import { createHybridRealtime } from '../src/index.js';
import type { HybridClient, HybridEvent, HybridRealtimeOptions } from '../src/types.js';
import { eventSources, FakeClock, FakeServer, flush, tokenSource } from './helpers.js';

export const URL_ = 'https://rt.example.com';
export const CHANNELS = ['broadcast', 'user:42'];

/**
 * setup makes a client on fakes: no WebSocket unless given (the transports
 * tests begin from SSE, as they did before the WebSocket), no EventSource when es is null, no tabs
 * and no window unless given. Its handler for '*' records every event.
 */
export function setup(over: Partial<HybridRealtimeOptions> = {}, create: (o: HybridRealtimeOptions) => HybridClient = createHybridRealtime) {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  const es = eventSources();
  const tokens = tokenSource(clock);
  const got: HybridEvent[] = [];
  const client = create({
    url: URL_,
    channels: CHANNELS,
    getToken: tokens.getToken,
    eventHandlers: { '*': (e) => got.push(e) },
    eventTypes: ['notification', 'order.shipped'],
    clock,
    fetch: server.fetch,
    EventSource: es.ctor,
    WebSocket: null,
    random: () => 0.5,
    locks: null,
    BroadcastChannel: null,
    window: null,
    ...over,
  });
  const ids = () => got.map((e) => e.id);
  return { clock, server, es, tokens, client, got, ids, settle: flush };
}
